"""Fake-image masking hides the vision tokens of every sample in the batch, not only flagged ones.

Bug: ``mask_fake_vision_tokens_batch`` ignores ``sample_indices``; a real image batched next to a
fake-image sample becomes invisible too. Runner: tests/test_fake_image.py (the conformance check for
mixed batches is a recorded xfail on every registered family, so it cannot tell). Killed by:
test_batch_mask_hits_exactly_vision_tokens_of_selected_rows.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
RUNNER = "tests/test_fake_image.py"
EXPECT = {"test_batch_mask_hits_exactly_vision_tokens_of_selected_rows"}
SELECT = "batch_mask"


def _all_rows(batch, processor, sample_indices):
    rows = list(sample_indices)
    if rows:
        rows = range(batch["input_ids"].shape[0])
    return _original(batch, processor, rows)


_original = replace("vlmspec.fake_image:mask_fake_vision_tokens_batch", _all_rows)
