"""Nemotron omni labels come from the legacy pattern matcher (nemo-automodel 0.7.0).

Bug: ``nemotron_omni_collate_fn`` builds labels with ``build_labels`` (re-tokenize each reply and
search for it) instead of the template markers: an empty reply is skipped, so its closing
``<|im_end|>`` is never supervised, and a reply that starts with whitespace is not found. Found in
nemo-automodel 0.7.0 (docs/findings.md#legacy-build_labels-skips-empty-and-indented-replies).
Runner: conformance (nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16). Killed by: labels.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16"
EXPECT = {"labels"}
SELECT = "empty_assistant_turn or leading_whitespace_answer"


def _legacy_for_nemotron_omni(input_ids_batch, conversations, processor):
    if type(processor).__name__ == "NemotronH_Omni_Reasoning_V3Processor":
        from vlmspec.collate.labels import build_labels

        return build_labels(input_ids_batch, conversations, processor)
    return _original(input_ids_batch, conversations, processor)


_original = replace("vlmspec.collate.labels:build_labels_from_template", _legacy_for_nemotron_omni)
