"""`hmas bench index`: our PDQ index beside python-threatexchange's PDQIndex and faiss's binary
indices, on the same codes and queries, one core each.

Each index is built and queried in its own process, so that its resident memory is its own.
Queries are half planted near-duplicates (distance 0-31 from a banked code), half random codes.
Two distributions of banked codes: "uniform" (random codes) and "clustered", shaped like real
banks: half the codes in near-duplicate clusters of 100-3,000 codes within distance 12 of their
centre, centres drawn around a few hundred prototypes (bits correlated across the bank), and the
planted queries landing inside clusters.
faiss IndexBinaryFlat is exact and serves as the brute force every result is checked against.
"""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

BATCH = 1000


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


DISTRIBUTIONS = ("uniform", "clustered")
CLUSTERED_SHARE = 0.5
CLUSTER_SIZES = (100, 3000)
CLUSTER_RADIUS = 12
PROTOTYPES = 300
PROTOTYPE_SPREAD = 48  # centres differ from their prototype by up to this many bits


def flipped(rng: np.random.Generator, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each code with counts[i] distinct random bits flipped."""
    keys = rng.random((len(codes), 256))
    ranks = np.argsort(keys, axis=1).argsort(axis=1)  # a random permutation per row
    mask = np.packbits(ranks < counts[:, None], axis=1)
    return codes ^ mask


def clustered_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    clustered = int(n * CLUSTERED_SHARE)
    sizes = []
    while sum(sizes) < clustered:
        sizes.append(int(rng.integers(*CLUSTER_SIZES)))
    sizes[-1] -= sum(sizes) - clustered
    prototypes = rng.integers(0, 256, (PROTOTYPES, 32), dtype=np.uint8)
    centres = flipped(rng, prototypes[rng.integers(0, PROTOTYPES, len(sizes))],
                      rng.integers(0, PROTOTYPE_SPREAD + 1, len(sizes)))
    parts = [rng.integers(0, 256, (n - clustered, 32), dtype=np.uint8)]
    for start in range(0, len(sizes), 64):  # members in chunks, to bound the temporaries
        chunk = sizes[start:start + 64]
        members = np.repeat(centres[start:start + 64], chunk, axis=0)
        parts.append(flipped(rng, members, rng.integers(0, CLUSTER_RADIUS + 1, len(members))))
    codes = np.concatenate(parts)
    return codes[rng.permutation(n)]


def make_data(n: int, queries: int, seed: int = 7, distribution: str = "uniform") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if distribution == "clustered":
        codes = clustered_codes(rng, n)
    else:
        codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    planted = codes[rng.integers(0, n, queries // 2)].copy()
    planted = flipped(rng, planted, np.arange(len(planted)) % 32)
    random = rng.integers(0, 256, (queries - len(planted), 32), dtype=np.uint8)
    return codes, np.concatenate([planted, random])


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (this one by default), MB."""
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _single_thread() -> None:
    import faiss

    faiss.omp_set_num_threads(1)


Search = Callable[[np.ndarray, int], Any]  # queries, max distance -> the index's own result
ToDicts = Callable[[Any], list[dict[int, int]]]  # that result -> {id: distance} per query


def _batches_to_dicts(batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[dict[int, int]]:
    """(lims, ids, distances) per batch, as our index and faiss's range_search return them."""
    out = []
    for lims, ids, dist in batches:
        out += [dict(zip(ids[lims[i]:lims[i + 1]].tolist(), dist[lims[i]:lims[i + 1]].tolist()))
                for i in range(len(lims) - 1)]
    return out


def _ours(codes: np.ndarray) -> tuple[Any, Search, ToDicts]:
    from pipeline.index.mih import MihPdqIndex

    index = MihPdqIndex(codes, np.arange(len(codes), dtype=np.int64), background_merge=False)
    index.search(codes[:2], 31)  # compile before timing

    def search(qs: np.ndarray, d: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return [index.search(qs[start : start + BATCH], d) for start in range(0, len(qs), BATCH)]
    return index, search, _batches_to_dicts


def _faiss(codes: np.ndarray, kind: str) -> tuple[Any, Search, ToDicts]:
    import faiss

    if kind == "faiss-flat":
        index = faiss.IndexBinaryFlat(256)
    elif kind == "faiss-multihash-16":
        index = faiss.IndexBinaryMultiHash(256, 16, 16)
        index.nflip = 1  # exact up to distance 31 with 16 substrings, as python-threatexchange sets it
    else:
        index = faiss.IndexBinaryMultiHash(256, 11, 23)
        index.nflip = 2  # exact up to distance 32 with 11 substrings, as ours
    index.add(codes)

    def search(qs: np.ndarray, d: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for start in range(0, len(qs), BATCH):
            lims, dist, ids = index.range_search(qs[start : start + BATCH], d + 1)  # faiss's radius is strict
            out.append((lims, ids, dist))
        return out
    return index, search, _batches_to_dicts


def _threatexchange(codes: np.ndarray) -> tuple[Any, Search, ToDicts]:
    from threatexchange.signal_type.pdq.pdq_index import PDQIndex

    hexes = [c.tobytes().hex() for c in codes]
    index = PDQIndex(zip(hexes, range(len(hexes))))
    del hexes

    def search(qs: np.ndarray, d: int) -> list[tuple[int, list[Any]]]:
        return [(d, index.query(q.tobytes().hex())) for q in qs]

    def to_dicts(results: list[tuple[int, list[Any]]]) -> list[dict[int, int]]:
        return [{m.metadata: m.similarity_info.distance for m in matches if m.similarity_info.distance <= d}
                for d, matches in results]
    return index, search, to_dicts


def _run_peer(name: str, data_dir: str, query_limit: int, distances: list[int], result_path: str) -> None:
    """In a child process: build, measure, query; writes a JSON result."""
    _single_thread()
    queries = np.load(Path(data_dir) / "queries.npy")[:query_limit]
    before = rss_mb()  # before the codes: an index that keeps the caller's array counts it as its own
    codes = np.load(Path(data_dir) / "codes.npy")
    start = time.perf_counter()
    builder = {"hma-streams": _ours, "threatexchange": _threatexchange}.get(name)
    index, search, to_dicts = builder(codes) if builder else _faiss(codes, name)
    build_s = time.perf_counter() - start
    del codes  # an index that copied the codes no longer needs these
    gc.collect()
    memory = rss_mb() - before
    start = time.perf_counter()
    found = search(queries, 31)  # timed: the index's own API and result, as a caller gets it
    elapsed = time.perf_counter() - start
    by_distance = {31: to_dicts(found)}
    for d in distances:
        if d != 31:
            by_distance[d] = to_dicts(search(queries, d))
    result = {
        "name": name, "build_s": build_s, "memory_mb": memory, "queries": len(queries),
        "lookups_per_s": len(queries) / elapsed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "hits": {str(d): [sorted(h.items()) for h in v] for d, v in by_distance.items()},
    }
    Path(result_path).write_text(json.dumps(result))


def run_peer(name: str, data_dir: Path, query_limit: int, distances: list[int]) -> dict[str, Any]:
    result_path = data_dir / f"{name}.json"
    proc = mp.get_context("spawn").Process(target=_run_peer, args=(name, str(data_dir), query_limit, distances, str(result_path)))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{name} failed with exit code {proc.exitcode}")
    return json.loads(result_path.read_text())


def _accuracy(result: dict[str, Any], truth: dict[str, Any]) -> tuple[float, float, bool]:
    """Recall and precision at distance 31, and whether every distance checked matched exactly."""
    found = tp = expected = 0
    for mine, right in zip(result["hits"]["31"], truth["hits"]["31"]):
        mine_set, right_set = {i for i, _ in mine}, {i for i, _ in right}
        found += len(mine_set)
        expected += len(right_set)
        tp += len(mine_set & right_set)
    identical = True
    for d, per_query in result["hits"].items():
        for mine, right in zip(per_query, truth["hits"]["31"]):
            identical &= sorted(map(tuple, mine)) == sorted((i, dd) for i, dd in right if dd <= int(d))
    return tp / max(expected, 1), tp / max(found, 1), identical


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def run_index_bench(n: int, queries: int, peers: list[str], slow_peer_queries: int = 200,
                    distribution: str = "uniform") -> dict[str, Any]:
    log(f"{n:,} {distribution} codes, {queries:,} queries (half planted near-duplicates)")
    codes, qs = make_data(n, queries, distribution=distribution)
    with tempfile.TemporaryDirectory(prefix="hmas-bench-") as tmp:
        data_dir = Path(tmp)
        np.save(data_dir / "codes.npy", codes)
        np.save(data_dir / "queries.npy", qs)
        del codes
        results = {}
        slow = {"threatexchange": slow_peer_queries, "faiss-flat": slow_peer_queries}
        for name in ["faiss-flat"] + [p for p in peers if p != "faiss-flat"]:
            limit = min(queries, slow.get(name, queries))
            log(f"{name}: building and querying ({limit:,} queries) ...")
            distances = list(range(32)) if name == "hma-streams" else [31]
            results[name] = run_peer(name, data_dir, limit, distances)
            r = results[name]
            log(f"{name}: build {r['build_s']:.1f}s, {r['memory_mb']:.0f} MB, {r['lookups_per_s']:,.0f} lookups/s")
    truth = results["faiss-flat"]
    rows = []
    base = results.get("threatexchange")
    for name, r in results.items():
        n_check = min(len(r["hits"]["31"]), len(truth["hits"]["31"]))
        r_cut = {**r, "hits": {d: v[:n_check] for d, v in r["hits"].items()}}
        recall, precision, identical = _accuracy(r_cut, {"hits": {"31": truth["hits"]["31"][:n_check]}})
        rows.append({
            "index": name, "build_s": round(r["build_s"], 1), "memory_mb": round(r["memory_mb"]),
            "lookups_per_s": round(r["lookups_per_s"]), "queries_timed": r["queries"],
            "recall": round(recall, 4), "precision": round(precision, 4),
            "identical_to_brute_force_at_every_distance_checked": identical, "distances_checked": len(r["hits"]),
            "speed_vs_threatexchange": round(r["lookups_per_s"] / base["lookups_per_s"], 1) if base else None,
            "memory_vs_threatexchange": round(r["memory_mb"] / base["memory_mb"], 2) if base and base["memory_mb"] > 0 else None,
        })
    return {"n": n, "queries": queries, "distribution": distribution, "machine": machine(), "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    cols = ["index", "build_s", "memory_mb", "lookups_per_s", "queries_timed", "recall", "precision",
            "distances_checked", "identical_to_brute_force_at_every_distance_checked", "speed_vs_threatexchange",
            "memory_vs_threatexchange"]
    lines = [f"N = {report['n']:,}, {report.get('distribution', 'uniform')} codes; machine: {report['machine']}", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(row[c]) for c in cols) + " |" for row in report["rows"]]
    return "\n".join(lines)
