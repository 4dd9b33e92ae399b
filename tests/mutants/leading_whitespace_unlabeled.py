"""An answer that starts with whitespace gets no labels: the marker's ``\\n`` fused with it (nemo-automodel 0.7.0).

Bug: the marker scan looks for ``<|im_start|>assistant\\n`` token for token; BPE fuses the marker's
``\\n`` with a reply that starts with whitespace (``assistant\\n`` + ``"   \\n  hi"`` -> ``'\\n   \\n'``), the
exact marker never occurs and the sample ends with zero supervised tokens. Found in nemo-automodel 0.7.0
(docs/findings.md#an-answer-with-leading-whitespace-gets-no-labels). Runner: conformance (Qwen2.5-VL).
Killed by: labels, golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"labels", "golden"}
SELECT = "leading_whitespace_answer"


def _exact_marker_only(labels, input_ids, marker, stop, tokenizer):
    return labels


replace("vlmspec.collate.labels:_label_straddled_turns", _exact_marker_only)
