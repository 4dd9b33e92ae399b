"""The legacy BPE pattern matcher labels batches whose template has usable turn markers.

Bug: marker resolution fails for every processor (e.g. a typo in the fast-path processor set and an
exception swallowed in the general path), so ``build_labels_from_template`` falls back to
``build_labels``, which matches an answer that repeats the user's words inside the user turn.
Runner: conformance (Qwen2.5-VL). Killed by: labels.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"labels"}
SELECT = "answer_repeats or whitespace or multi_turn"

replace("vlmspec.collate.labels:resolve_turn_markers", lambda processor: None)
