"""Only the first assistant turn of a multi-turn conversation is labeled.

Bug: the marker search returns the first occurrence (``list.index``-style) instead of scanning the
whole row, so later answers are silently dropped from training. Runner: conformance (Qwen2.5-VL).
Killed by: labels, golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"labels", "golden"}
SELECT = "multi_turn"


def _first_turn(input_ids_batch, assistant_marker, stop_id):
    labels = _original(input_ids_batch, assistant_marker, stop_id).clone()
    sup = labels != -100
    for row in range(labels.shape[0]):
        pos = sup[row].nonzero().flatten().tolist()
        for a, b in zip(pos, pos[1:]):
            if b != a + 1:  # the second run starts at b
                labels[row, b:] = -100
                break
    return labels


_original = replace("vlmspec.collate.labels:_build_labels_from_markers", _first_turn)
