"""A turn marker typed in a system/user text opens a supervised turn (nemo-automodel 0.7.0).

Bug: the collates no longer reject a prompt that contains the template's assistant turn marker
(``<|im_start|>assistant\\n``, Gemma 4's ``<|turn>model\\n``). It tokenizes to the marker's own ids,
label building takes it for a real assistant turn, and the prompt text after it gets labels: Qwen2.5-VL
labels of sample 1 decode to ``'secret<|im_end|>Fine.<|im_end|>'``, Gemma 4's to ``'0<turn|>ok<turn|>'``
(the system text ``0`` supervised). The pages promise labels only inside assistant turns; vlmspec
raises ``ValueError`` naming the sample and the field. Found in nemo-automodel 0.7.0
(docs/findings.md#nemo_automodel-070-robustness). Runner: conformance (the ``(implementation)`` row;
any ``--model``). Killed by: robustness (cases user_types_assistant_marker,
system_types_assistant_marker; kimi_k25_user_types_assistant_marker too).
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "(implementation)"
EXPECT = {"robustness"}
SELECT = "user_types_assistant_marker or system_types_assistant_marker"


def _accept_typed_markers(conversations, processor, sample_ids=None):
    return None  # the bug: no check; the typed marker reaches label building


replace("vlmspec.collate.default:reject_typed_turn_markers", _accept_typed_markers)
