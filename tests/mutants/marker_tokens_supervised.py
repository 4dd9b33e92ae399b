"""The assistant-turn marker (``<|im_start|>assistant\\n``) is supervised along with the reply.

Bug: each supervised span starts at the marker's first token instead of right after it, so the
model is trained to emit the template's role header. Runner: conformance (Qwen2.5-VL). Killed by:
labels, golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"labels", "golden"}
SELECT = "single_turn_text or multi_turn_text"


def _from_marker(input_ids_batch, assistant_marker, stop_id):
    labels = _original(input_ids_batch, assistant_marker, stop_id).clone()
    m = len(assistant_marker)
    sup = labels != -100
    for row in range(labels.shape[0]):
        for p in sup[row].nonzero().flatten().tolist():
            if (p == 0 or not bool(sup[row, p - 1])) and p >= m:
                labels[row, p - m : p] = input_ids_batch[row, p - m : p]
    return labels


_original = replace("vlmspec.collate.labels:_build_labels_from_markers", _from_marker)
