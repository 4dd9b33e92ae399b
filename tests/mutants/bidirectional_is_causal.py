"""The "bidirectional" Llama encoder stays causal.

Bug: the subclass swaps the mask but forgets to set ``is_causal = False`` on the attention modules,
so SDPA applies its causal kernel whenever no padding mask is needed: earlier tokens never see later
ones. Runner: tests/test_llama_nemotron_vl_conformance.py. Killed by:
test_later_token_reaches_earlier_states_iff_bidirectional.
"""

from tests.mutants import VLMSPEC_TABLE
from vlmspec.models.llama_nemotron_vl import bidirectional

VLMSPEC_IMPL = VLMSPEC_TABLE
RUNNER = "tests/test_llama_nemotron_vl_conformance.py"
EXPECT = {"test_later_token_reaches_earlier_states_iff_bidirectional"}
SELECT = "later_token"

_cls = bidirectional.LlamaBidirectionalModel
_original_init = _cls.__init__


def _causal_init(self, config):
    _original_init(self, config)
    for layer in self.layers:
        layer.self_attn.is_causal = True


_cls.__init__ = _causal_init
