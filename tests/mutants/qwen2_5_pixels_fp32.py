"""``qwen2_5_collate_fn`` returns ``pixel_values`` in float32 (nemo-automodel 0.7.0).

Bug: the Qwen2.5-VL collate passes the processor's float32 pixels through instead of the bfloat16 of
the data contract (``default_collate_fn`` casts, the family collate does not). Found in
nemo-automodel 0.7.0 (docs/findings.md#pixel-values-stay-float32-in-three-family-collates). Runner:
conformance (Qwen2.5-VL, its own collate). Killed by: golden.
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"golden"}
SELECT = "single_turn_image"


def _fp32(examples, processor):
    out = _original(examples, processor)
    for key in ("pixel_values", "pixel_values_videos"):
        if isinstance(out.get(key), torch.Tensor):
            out[key] = out[key].to(torch.float32)
    return out


_original = replace("vlmspec.collate.default:qwen2_5_collate_fn", _fp32)
