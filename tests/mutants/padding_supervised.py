"""Padding is supervised: padded label positions get the pad token id instead of -100.

Bug: the pad collate pads ``labels`` with the same value as ``input_ids`` (the pad token id), so
every padded position adds a "predict <pad>" term to the loss. Runner: tests/test_collate_packing.py
(single-sample conformance fixtures have no padding). Killed by:
test_pad_collate_pads_shifts_and_concatenates.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
RUNNER = "tests/test_collate_packing.py"
EXPECT = {"test_pad_collate_pads_shifts_and_concatenates"}
SELECT = "pad_collate"


def _pad_labels_with_pad_id(samples, pad_id, length=None, pad_values=None):
    return _original(samples, pad_id, length, {**(pad_values or {}), "labels": pad_id})


_original = replace("vlmspec.collate.batching:stack_samples", _pad_labels_with_pad_id)
