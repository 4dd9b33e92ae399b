"""``pixel_values`` keep the processor's float32 instead of the documented bfloat16.

Bug: the collate's dtype cast is dropped; the batch doubles its memory and the vision tower runs in a
different precision than documented. Runner: conformance (Qwen2.5-VL). Killed by: golden (tensor
dtypes are part of every image fixture's golden).
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"golden"}
SELECT = "image"


def _no_cast(batch, conversations):
    kept = {k: batch[k] for k in ("pixel_values", "pixel_values_videos") if isinstance(batch.get(k), torch.Tensor)}
    out = _original(batch, conversations)
    out.update(kept)
    return out


_original = replace("vlmspec.collate.default:finalize_media", _no_cast)
