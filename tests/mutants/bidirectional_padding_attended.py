"""The bidirectional Llama encoder drops the padding mask: real tokens attend to padding.

Bug: ``_create_bidirectional_mask`` builds the mask without ``attention_mask`` ("no causal triangle,
so no mask needed"), so an embedding changes with the amount of padding in its batch. Runner:
tests/test_llama_nemotron_vl_conformance.py. Killed by: test_padding_never_changes_real_token_states.
"""

from tests.mutants import VLMSPEC_TABLE, MutantDoesNotApply
from vlmspec.models.llama_nemotron_vl import bidirectional

VLMSPEC_IMPL = VLMSPEC_TABLE
RUNNER = "tests/test_llama_nemotron_vl_conformance.py"
EXPECT = {"test_padding_never_changes_real_token_states"}
SELECT = "padding"

_cls = bidirectional.LlamaBidirectionalModel
if "_create_bidirectional_mask" not in vars(_cls):
    raise MutantDoesNotApply("LlamaBidirectionalModel._create_bidirectional_mask is gone: update this mutant")
_original = _cls._create_bidirectional_mask


def _ignore_padding(self, input_embeds, attention_mask):
    return _original(self, input_embeds, None)


_cls._create_bidirectional_mask = _ignore_padding
