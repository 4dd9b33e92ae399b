"""Labels are shifted twice: the collate shifts, and so does a helper that assumed unshifted labels.

Bug: ``labels[:, 2:]`` (re-padded with -100), so every target is two tokens ahead. Runner:
conformance (Qwen2.5-VL). Killed by: labels (shift contract), golden.
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"labels", "golden"}


def _shift(batch, labels):
    out = _original(batch, labels)
    once = out["labels"]
    pad = torch.full_like(once[:, :1], -100)
    out["labels"] = torch.cat([once[:, 1:], pad], dim=1)
    return out


_original = replace("vlmspec.collate.default:shift_for_next_token", _shift)
