"""The assistant marker is derived with the final turn's scaffold, so history turns get no labels (nemo-automodel 0.7.0).

Bug: ``_derive_turn_markers`` renders a one-turn dummy conversation; Step-3.7's template opens the
*final* assistant turn with ``<think>\\n\\n</think>\\n``, which becomes part of the marker. Earlier
turns lack it, so in a multi-turn sample only the last reply is supervised. Found in
nemo-automodel 0.7.0 (docs/findings.md#step-37-history-turns-get-no-labels). Runner: conformance
(stepfun-ai/Step-3.7-Flash). Killed by: labels, label_consistency.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "stepfun-ai/Step-3.7-Flash"
EXPECT = {"labels", "label_consistency"}
SELECT = "multi_turn_text"


def _marker_with_scaffold(processor):
    from vlmspec.collate.labels import resolve_turn_scaffold

    markers = _original(processor)
    if markers is None:
        return None
    marker, stop = markers
    return list(marker) + list(resolve_turn_scaffold(processor)), stop


_original = replace("vlmspec.collate.labels:resolve_turn_markers", _marker_with_scaffold)
