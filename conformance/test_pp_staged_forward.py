"""Staged forward: the family's tiny model split into K in {2, 3} stages with the PP forward patches,
run stage after stage on every ``torch.tensor_split`` microbatch with its media staged to stage 0,
gives the unsplit HF model's logits and loss within fp32 round-off (atol 1e-5), for every B in 1..5
and n <= min(B, 4). M-RoPE families must feed each microbatch's 3-D positions to every stage's rotary
embedding (and the batch must be one where 1-D positions would change the logits).
"""

import pytest

from conformance.pp.staged import check_staged_forward

CHECK = "pp_staged_forward"
# slow: the full B x n x K grid with full-vocabulary logits on every family, plus a media batch (about a
# sixth of `./dev test`'s CPU time); `./dev test` leaves it to CI's `./dev slow` step, a plain
# `pytest conformance` (and `./dev impl-nemo`) runs it.
pytestmark = pytest.mark.slow


def test_pp_staged_forward(family):
    check_staged_forward(family)
