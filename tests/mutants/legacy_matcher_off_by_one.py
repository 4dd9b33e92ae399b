"""The legacy pattern matcher's span starts one token early.

Bug: ``_find_pattern_indices`` returns ``(i - 1, i + m)`` (an off-by-one introduced while handling
``allow_first_token_mismatch``), so ``build_labels`` supervises the newline that ends the assistant
marker. The template path is unaffected. Runner: conformance (Qwen2.5-VL). Killed by:
label_consistency.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"label_consistency"}
SELECT = "single_turn_text or multi_turn_text"


def _early(template, pattern, search_start_index=0, allow_first_token_mismatch=False):
    start, end = _original(template, pattern, search_start_index, allow_first_token_mismatch)
    return (start - 1, end) if start > 0 else (start, end)


_original = replace("vlmspec.collate.labels:_find_pattern_indices", _early)
