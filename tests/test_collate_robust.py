"""make_robust_collate: whole-batch re-sampling, bounded retries, last error chained."""

from __future__ import annotations

import random

import pytest

from vlmspec.collate_fns import make_robust_collate


def test_success_needs_no_resample():
    calls = []
    robust = make_robust_collate(list(range(10)), lambda b: calls.append(list(b)) or sum(b))
    assert robust([1, 2, 3]) == 6 and calls == [[1, 2, 3]]


def test_failure_resamples_whole_batch():
    dataset = [f"x{i}" for i in range(50)]
    seen = []

    def collate(batch):
        seen.append(list(batch))
        if "bad" in batch:
            raise ValueError("corrupt sample")
        return batch

    robust = make_robust_collate(dataset, collate, max_retries=3, rng=random.Random(0))
    out = robust(["bad", "x1", "x2"])
    assert seen[0] == ["bad", "x1", "x2"] and len(seen) == 2
    assert len(out) == 3 and len(set(out)) == 3 and set(out) <= set(dataset)


def test_gives_up_after_max_retries_with_last_error_chained():
    attempts = []

    def collate(batch):
        attempts.append(batch)
        raise KeyError(f"attempt {len(attempts)}")

    robust = make_robust_collate(list(range(3)), collate, max_retries=4, rng=random.Random(1))
    with pytest.raises(RuntimeError, match="5 batches") as info:
        robust([0, 1, 2, 0, 1])  # larger than the dataset: re-sampled with replacement
    assert len(attempts) == 5
    assert isinstance(info.value.__cause__, KeyError) and "attempt 5" in str(info.value.__cause__)
    assert all(len(b) == 5 for b in attempts)


def test_zero_retries_and_bad_arguments():
    robust = make_robust_collate([1], lambda b: 1 / 0, max_retries=0)
    with pytest.raises(RuntimeError) as info:
        robust([1])
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(ValueError):
        make_robust_collate([1], lambda b: b, max_retries=-1)
    with pytest.raises(TypeError):
        make_robust_collate([1], None)
