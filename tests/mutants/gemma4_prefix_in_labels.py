"""Gemma 4's injected thinking prefix is labelled by ``gemma4_prefix_collate_fn`` (nemo-automodel 0.7.0).

Bug: the collate inserts ``<|channel>thought\\n<channel|>`` after every ``<|turn>model\\n`` before the
labels are built, and the marker scan then supervises everything from the marker on, prefix included;
the page says the injected tokens are masked to -100. Found in nemo-automodel 0.7.0
(docs/findings.md#gemma-4-thinking-prefix-is-supervised). Runner: conformance (google/gemma-4-E2B-it,
its own collate). Killed by: labels, golden.
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "google/gemma-4-E2B-it"
EXPECT = {"labels", "golden"}
SELECT = "single_turn_text"


def _injected_not_masked(batch, tokenizer):
    out, injected = _original(batch, tokenizer)
    return out, torch.zeros_like(injected)


_original = replace("vlmspec.collate.gemma4:_inject", _injected_not_masked)
