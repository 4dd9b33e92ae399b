"""Labels are not shifted for next-token prediction (``labels[:, :-1]`` instead of ``labels[:, 1:]``).

Bug: the collate trims the last position of every tensor but keeps labels aligned to ``input_ids``,
so the model is trained to copy its input. Runner: conformance (Qwen2.5-VL). Killed by: labels
(shift contract), golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"labels", "golden"}


def _shift(batch, labels):
    out = _original(batch, labels)
    out["labels"] = labels[:, :-1]
    return out


_original = replace("vlmspec.collate.default:shift_for_next_token", _shift)
