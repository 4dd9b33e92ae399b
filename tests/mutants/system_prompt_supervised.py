"""The system prompt is supervised like an assistant turn.

Bug: the label builder treats every non-``user`` role as a reply (``role != "user"``), so the
``system`` turn's text and its closing token get labels too. Runner: conformance (Qwen2.5-VL).
Killed by: labels, golden.
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"labels", "golden"}
SELECT = "single_turn_text or system_prompt_custom or multi_turn_text"


def _with_system(input_ids_batch, conversations, processor):
    import vlmspec.collate.labels as lab

    labels = _original(input_ids_batch, conversations, processor)
    markers = lab.resolve_turn_markers(processor)
    if markers is None:
        return labels
    marker, stop = markers
    tok = lab._tokenizer_of(processor)
    role = lab._encode(tok, "assistant\n")
    system = lab._encode(tok, "system\n")
    if len(marker) < len(role) or marker[-len(role) :] != role:
        return labels
    system_marker = marker[: len(marker) - len(role)] + system
    extra = lab._build_labels_from_markers(input_ids_batch, system_marker, stop)
    return torch.where(extra != -100, extra, labels)


_original = replace("vlmspec.collate.labels:build_labels_from_template", _with_system)
