"""`hmas bench hash`: photos hashed per core by our PDQ hasher (exact and fast modes) beside
python-threatexchange's, on the same images in the same run, one thread.

Time is CPU time (time.process_time) of the hashing of each photo from its bytes, summed over
rounds: on a shared machine wall time measures the neighbours, CPU time measures the work.
Where the time goes is split into decode, luma + downsampling, and PDQ's DCT and median.
The fast mode's hashes are compared with the exact ones (Hamming distance), and so are its match
decisions at PDQ's default threshold over edited copies of the bridge photo (the shipped edits and
copies made here: resized, re-encoded, cropped), paired with every other photo of the sets.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ops.bench.index_bench import log, machine
from pipeline.config import Settings
from pipeline.hashing import pdq_luma, pdq_native
from pipeline.hashing.photo import PdqHasher, decode_image, pixel_array

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "tests" / "media"
BRIDGE = "pdq/data/bridge-mods/aaa-orig.jpg"
THRESHOLD = 31  # PDQ's default match distance
MAX_PIXELS = 50_000_000
MIN_QUALITY = Settings().pdq_min_quality  # hashes below it are not matched on


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes


def media_sets() -> list[tuple[str, Path]]:
    sets = [("shipped", SHIPPED)]
    reference = os.environ.get("HMAS_REFERENCE_MEDIA", "")
    if reference and (Path(reference) / "PDQ_EXPECTED.csv").is_file():
        sets.append(("reference", Path(reference)))
    return sets


def load_photos(root: Path) -> list[Photo]:
    with open(root / "PDQ_EXPECTED.csv", newline="") as fh:
        return [Photo(row["path"], (root / row["path"]).read_bytes()) for row in csv.DictReader(fh)]


def edited_copies(original: bytes) -> list[Photo]:
    """Copies of a photo as uploads alter it: resized, re-encoded, cropped."""
    image = Image.open(io.BytesIO(original)).convert("RGB")
    w, h = image.size
    edits = {
        "resized-50%": image.resize((w // 2, h // 2), Image.LANCZOS),
        "resized-25%": image.resize((w // 4, h // 4), Image.LANCZOS),
        "resized-1024": image.resize((1024, 1024 * h // w), Image.BILINEAR),
        "cropped-5%": image.crop((w // 40, h // 40, w - w // 40, h - h // 40)),
        "cropped-10%": image.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
    }
    out = []
    for name, edited in edits.items():
        buf = io.BytesIO()
        edited.save(buf, "JPEG", quality=85)
        out.append(Photo(f"bench/{name}.jpg", buf.getvalue()))
    for quality in (30, 60, 90):
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality)
        out.append(Photo(f"bench/re-encoded-q{quality}.jpg", buf.getvalue()))
    return out


def threatexchange_hasher() -> Callable[[bytes], tuple[str, int]]:
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

    return pdq_from_bytes


def ours(mode: str) -> Callable[[bytes], tuple[str, int]]:
    hasher = PdqHasher(MAX_PIXELS, mode)

    def hash_bytes(data: bytes) -> tuple[str, int]:
        value = hasher.hash_bytes(data)
        return value.value, value.quality
    return hash_bytes


def cpu_seconds(hasher: Callable[[bytes], Any], photos: list[Photo], rounds: int) -> float:
    total = 0.0
    for _ in range(rounds):
        for photo in photos:
            start = time.process_time()
            hasher(photo.data)
            total += time.process_time() - start
    return total


def stages(photos: list[Photo], rounds: int) -> dict[str, float]:
    """CPU seconds per stage of the reference path (pdqhash.compute) and of ours."""
    import pdqhash

    spent = dict.fromkeys(("decode", "pixels_to_array", "pdqhash_compute", "our_luma_and_downsample", "our_dct_and_median"), 0.0)
    for _ in range(rounds):
        for photo in photos:
            t0 = time.process_time()
            image = decode_image(photo.data, MAX_PIXELS)
            t1 = time.process_time()
            array = pixel_array(image)
            t2 = time.process_time()
            if array.dtype != np.uint8:
                continue
            pdqhash.compute(array if array.ndim == 3 else np.repeat(array[..., None], 3, axis=2))
            t3 = time.process_time()
            plane = pdq_luma.luma(array)
            if min(plane.shape) >= 5 and plane.shape != (64, 64):
                plane = pdq_luma.downsample_64(plane)
            t4 = time.process_time()
            pdq_native.hash_luma(plane)
            t5 = time.process_time()
            for key, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                spent[key] += dt
    return spent


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def match_decisions(edits: list[Photo], others: list[Photo], exact: Callable, fast: Callable) -> dict[str, Any]:
    """Pairs (edit, any other photo) decided at THRESHOLD with both modes' hashes; the fast mode
    hashes both sides (uploads and bank alike)."""
    photos = edits + [p for p in others if p.name not in {e.name for e in edits}]
    exact_hashes = [exact(p.data)[0] for p in photos]
    fast_hashes = [fast(p.data)[0] for p in photos]
    pairs = changed = matches_exact = matches_fast = 0
    changes = []
    for i in range(len(edits)):
        for j in range(len(photos)):
            if i == j:
                continue
            pairs += 1
            de, df = hamming(exact_hashes[i], exact_hashes[j]), hamming(fast_hashes[i], fast_hashes[j])
            me, mf = de <= THRESHOLD, df <= THRESHOLD
            matches_exact += me
            matches_fast += mf
            if me != mf:
                changed += 1
                changes.append(f"{photos[i].name} ~ {photos[j].name}: {de} exact, {df} fast")
    return {"edited_copies": len(edits), "pairs": pairs, "matches_exact": matches_exact, "matches_fast": matches_fast,
            "decisions_changed": changed, "changes": changes}


def _spread(distances: list[int]) -> dict[str, Any]:
    return {"photos": len(distances), "max": max(distances, default=0), "mean": float(np.mean(distances)) if distances else 0.0,
            "zero": sum(d == 0 for d in distances)}


def run_hash_bench(rounds: int = 3) -> dict[str, Any]:
    peers = {"threatexchange": threatexchange_hasher(), "hma-streams-exact": ours("exact"), "hma-streams-fast": ours("fast")}
    for hasher in peers.values():
        hasher(load_photos(SHIPPED)[0].data)  # compile and load before timing
    report: dict[str, Any] = {"machine": machine(), "rounds": rounds, "sets": {}}
    all_photos: list[Photo] = []
    for set_name, root in media_sets():
        photos = load_photos(root)
        all_photos += photos
        log(f"{set_name}: {len(photos)} photos, {rounds} rounds")
        rows = {}
        for name, hasher in peers.items():  # one after the other, in the same run
            seconds = cpu_seconds(hasher, photos, rounds)
            rows[name] = {"cpu_s_per_photo": seconds / (rounds * len(photos)), "photos_per_s_per_core": rounds * len(photos) / seconds}
            log(f"{set_name} {name}: {rows[name]['photos_per_s_per_core']:.1f} photos/s per core")
        base = rows["threatexchange"]["photos_per_s_per_core"]
        for row in rows.values():
            row["speed_vs_threatexchange"] = row["photos_per_s_per_core"] / base
        reference, exact, fast = (peers[k] for k in ("threatexchange", "hma-streams-exact", "hma-streams-fast"))
        identical = 0
        fast_distances, matchable = [], []
        for photo in photos:
            want, got, quick = reference(photo.data), exact(photo.data), fast(photo.data)
            identical += (want[0], int(want[1])) == (got[0], got[1])
            fast_distances.append(hamming(quick[0], got[0]))
            if got[1] >= MIN_QUALITY:
                matchable.append(fast_distances[-1])
        pixels = [Image.open(io.BytesIO(p.data)).size for p in photos]
        report["sets"][set_name] = {
            "photos": len(photos), "mean_megapixels": float(np.mean([w * h for w, h in pixels])) / 1e6,
            "rows": rows, "exact_identical_to_threatexchange": f"{identical}/{len(photos)}",
            "fast_distance_to_exact": _spread(fast_distances),
            "fast_distance_to_exact_at_min_quality": _spread(matchable),
            "stages_cpu_s_per_photo": {k: v / (rounds * len(photos)) for k, v in stages(photos, rounds).items()},
        }
    original = next(p for p in load_photos(SHIPPED) if p.name == BRIDGE)
    bridge_edits = [p for p in load_photos(SHIPPED) if p.name.startswith("pdq/data/bridge-mods/")] + edited_copies(original.data)
    report["match_decisions"] = match_decisions(bridge_edits, all_photos, peers["hma-streams-exact"], peers["hma-streams-fast"])
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [f"machine: {report['machine']}; CPU time, one thread, {report['rounds']} rounds", ""]
    for set_name, s in report["sets"].items():
        lines += [f"{set_name} set: {s['photos']} photos, mean {s['mean_megapixels']:.2f} MP; exact identical to "
                  f"python-threatexchange: {s['exact_identical_to_threatexchange']}; fast vs exact distance: "
                  f"max {s['fast_distance_to_exact']['max']}, mean {s['fast_distance_to_exact']['mean']:.2f}, "
                  f"{s['fast_distance_to_exact']['zero']} identical; of the {s['fast_distance_to_exact_at_min_quality']['photos']} "
                  f"at quality >= {MIN_QUALITY} (what the pipeline matches on): max "
                  f"{s['fast_distance_to_exact_at_min_quality']['max']}, mean {s['fast_distance_to_exact_at_min_quality']['mean']:.2f}", "",
                  "| hasher | ms CPU per photo | photos/s per core | vs python-threatexchange |", "|---|---|---|---|"]
        lines += [f"| {name} | {r['cpu_s_per_photo'] * 1000:.1f} | {r['photos_per_s_per_core']:.1f} | {r['speed_vs_threatexchange']:.2f}x |"
                  for name, r in s["rows"].items()]
        lines += ["", "| stage | ms CPU per photo |", "|---|---|"]
        lines += [f"| {k} | {v * 1000:.1f} |" for k, v in s["stages_cpu_s_per_photo"].items()]
        lines.append("")
    m = report["match_decisions"]
    lines.append(f"match decisions at distance <= {THRESHOLD}: {m['edited_copies']} edited copies of the bridge photo x every "
                 f"other photo = {m['pairs']} pairs; matches exact {m['matches_exact']}, fast {m['matches_fast']}; "
                 f"decisions changed: {m['decisions_changed']}")
    lines += [f"- {c}" for c in m["changes"]]
    return "\n".join(lines)
