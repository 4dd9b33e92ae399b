"""A fake-image sample batched with a real-image sample of a different grid size.

Neither row's real-token logits may change compared with collating it alone.
"""

from conformance.corpus import load_corpus
from conformance.fake_checks import check_fake_image_mixed_batch

CHECK = "fake_image_mixed_batch"


def test_fake_image_mixed_batch(family):
    corpus = {c.id: c for c in load_corpus()}
    check_fake_image_mixed_batch(family, corpus["single_turn_text"], corpus["wide_image"])
