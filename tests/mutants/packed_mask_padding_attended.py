"""Padding is attended in the block-causal mask of a packed batch.

Bug: the mask is ``same document & causal`` without the ``not padding`` term; padding positions all
carry document index 0, so they form one more "document" that attends to itself (and its hidden
states are computed from garbage). Runner: tests/test_collate_packing.py. Killed by:
test_block_causal_mask_property.
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
RUNNER = "tests/test_collate_packing.py"
EXPECT = {"test_block_causal_mask_property"}
SELECT = "block_causal"


def _no_padding_term(doc_ids):
    s = doc_ids.shape[1]
    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    causal = torch.ones((s, s), dtype=torch.bool, device=doc_ids.device).tril()
    return (same & causal).unsqueeze(1)


replace("vlmspec.collate.packing:_block_causal_mask", _no_padding_term)
