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
    failures, unjudged = [], []
    for neighbour in neighbours:  # every neighbour is judged: one failure or crash does not hide the next
        try:
            check_fake_image_mixed_batch(family, corpus["single_turn_text"], corpus[neighbour])
        except CheckFailure as exc:
            failures.append(str(exc))
        except Exception as exc:  # e.g. a missing video decoder: that neighbour is not judged
            unjudged.append((neighbour, exc))
    if failures:
        notes = [f"(next to {n}: not judged: {type(e).__name__}: {e})" for n, e in unjudged]
        raise CheckFailure("\n".join(failures + notes))
    if unjudged:
        raise unjudged[0][1]  # the plugin classifies it (environment problem or crash)
