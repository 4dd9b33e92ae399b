"""Only the first vision token of the fake image is masked.

Bug: the vision-token mask is built with a first-match search (``argmax``) instead of ``isin`` over
the row, so ``<|vision_start|>`` is hidden but the image pads and ``<|vision_end|>`` stay attended.
Runner: conformance (Qwen2.5-VL). Killed by: fake_image.
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"fake_image"}
SELECT = "single_turn_text or multi_turn_text"


def _first_only(input_ids, vision_ids):
    full = _original(input_ids, vision_ids)
    first = torch.zeros_like(full)
    rows = full.any(dim=-1)
    idx = full.to(torch.int8).argmax(dim=-1)
    first[rows, idx[rows]] = True
    return first


_original = replace("vlmspec.fake_image:_vision_mask", _first_only)
