"""Batch-level retry: re-sample the whole batch when its collate fails."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger("vlmspec.collate_fns")


def make_robust_collate(dataset, collate_fn, max_retries=10, rng: random.Random | None = None):
    """Wrap *collate_fn* so that on failure the entire batch is re-sampled from *dataset*.

    The wrapper calls ``collate_fn(examples)``; when it raises, it draws ``len(examples)`` fresh
    examples (distinct indices while the dataset is large enough) and tries again, up to
    *max_retries* re-samples. After that it raises ``RuntimeError`` with the last error chained.
    rng: the random source (default: a private ``random.Random()``), for reproducible re-sampling.
    """
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if not callable(collate_fn):
        raise TypeError(f"collate_fn must be callable, got {type(collate_fn).__name__}")
    rng = rng or random.Random()

    def resample(k: int) -> list:
        n = len(dataset)
        if n == 0:
            raise ValueError("cannot re-sample a failed batch from an empty dataset")
        indices = rng.sample(range(n), k) if k <= n else [rng.randrange(n) for _ in range(k)]
        return [dataset[i] for i in indices]

    def robust_collate(examples: Sequence[Any]) -> Any:
        batch, last_error = examples, None
        for attempt in range(max_retries + 1):
            if attempt:
                batch = resample(len(examples))
            try:
                return collate_fn(batch)
            except Exception as exc:  # any failure of a batch is worth one re-sample
                last_error = exc
                logger.warning(
                    "collate failed (attempt %d of %d): %s: %s", attempt + 1, max_retries + 1, type(exc).__name__, exc
                )
        raise RuntimeError(
            f"collate failed on {max_retries + 1} batches ({max_retries} re-samples); "
            f"last error: {type(last_error).__name__}: {last_error}"
        ) from last_error

    robust_collate.__wrapped__ = collate_fn  # type: ignore[attr-defined]
    return robust_collate
