"""The token that closes an assistant turn (``<|im_end|>``) is left unlabeled.

Bug: the marker scan stops *before* the stop token instead of including it, so the model never
learns to end its turn. Runner: conformance (Qwen2.5-VL). Killed by: labels, golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"labels", "golden"}


def _without_stop(input_ids_batch, assistant_marker, stop_id):
    labels = _original(input_ids_batch, assistant_marker, stop_id)
    return labels.masked_fill(input_ids_batch == stop_id, -100)


_original = replace("vlmspec.collate.labels:_build_labels_from_markers", _without_stop)
