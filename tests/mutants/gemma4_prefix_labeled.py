"""Gemma 4's injected thinking prefix (``<|channel>thought\\n<channel|>``) is supervised.

Bug: the prefix is inserted right after ``<|turn>model\\n``, i.e. inside the span the marker scan
labels, and the collate forgets to mask the injected positions afterwards: the model is trained to
emit an empty thinking channel. Runner: tests/test_collate_gemma4.py (the family record does not run
``gemma4_prefix_collate_fn`` in conformance yet). Killed by:
test_prefix_collate_supervises_what_default_does.
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
RUNNER = "tests/test_collate_gemma4.py"
EXPECT = {"test_prefix_collate_supervises_what_default_does"}
SELECT = "prefix_collate"


def _injected_not_reported(batch, tokenizer):
    out, injected = _original(batch, tokenizer)
    return out, torch.zeros_like(injected)


_original = replace("vlmspec.collate.gemma4:_inject", _injected_not_reported)
