"""The demo's generated photos: edits stay near their original, unrelated photos stay far."""

from pipeline.hashing import hash_content
from pipeline.hashing.samples import generate_demo_images
from tests.pipeline_env import hamming


def test_demo_images_are_near_and_far_as_the_demo_says(tmp_path):
    paths = generate_demo_images(tmp_path)
    pdq = {p: hash_content("photo", p.read_bytes())["pdq"] for role in paths.values() for p in role}
    assert all(sv.quality >= 50 for sv in pdq.values())
    originals = {p.stem: pdq[p].value for p in paths["originals"]}
    for edit in paths["edits"]:
        source = edit.stem.rsplit("-", 1)[0]
        assert hamming(pdq[edit].value, originals[source]) <= 31, edit.name
    for other in paths["unrelated"]:
        assert min(hamming(pdq[other].value, o) for o in originals.values()) > 31, other.name
