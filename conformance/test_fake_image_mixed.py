"""A fake-image sample batched with a real-media sample: a real image of a different grid size, and a
real video where the family's record declares video.

Neither row's real-token logits may change compared with collating it alone.
"""

from conformance.checks import CheckFailure
from conformance.corpus import load_corpus
from conformance.fake_checks import check_fake_image_mixed_batch

CHECK = "fake_image_mixed_batch"


def test_fake_image_mixed_batch(family):
    corpus = {c.id: c for c in load_corpus()}
    neighbours = ["wide_image"] + (["video_short_clip"] if "video" in family.media else [])
    failures = []
    for neighbour in neighbours:  # every neighbour is judged, the first failure does not hide the next
        try:
            check_fake_image_mixed_batch(family, corpus["single_turn_text"], corpus[neighbour])
        except CheckFailure as exc:
            failures.append(str(exc))
    if failures:
        raise CheckFailure("\n".join(failures))
