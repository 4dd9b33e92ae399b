"""``last`` pooling assumes right padding (``attention_mask.sum(1) - 1``).

Bug: under left padding the index points into the middle of the sequence (or at padding), so the
embedding is not the last real token's state. Runner: tests/test_llama_nemotron_vl.py (the
Llama-Nemotron checks live in tests/, not conformance). Killed by:
test_pool_last_is_padding_side_independent.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
RUNNER = "tests/test_llama_nemotron_vl.py"
EXPECT = {"test_pool_last_is_padding_side_independent"}
SELECT = "pool or last_token"


def _right_padding_only(attention_mask):
    return ((attention_mask != 0).sum(dim=1) - 1).clamp(min=0).long()


replace("vlmspec.models.llama_nemotron_vl.pooling:last_token_index", _right_padding_only)
