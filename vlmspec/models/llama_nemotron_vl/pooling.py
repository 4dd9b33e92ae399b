"""Pool token states into embeddings; correct under left padding, right padding, or any 0/1 mask."""

from __future__ import annotations

import torch

from .config import POOLING_TYPES

__all__ = ["POOLING_TYPES", "first_token_index", "last_token_index", "pool"]


def _check(last_hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    if last_hidden_states.dim() != 3:
        raise ValueError(f"last_hidden_states must be [B, L, H], got shape {tuple(last_hidden_states.shape)}")
    if tuple(attention_mask.shape) != tuple(last_hidden_states.shape[:2]):
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match last_hidden_states "
            f"[B, L] = {tuple(last_hidden_states.shape[:2])}"
        )
    real = attention_mask.to(device=last_hidden_states.device) != 0
    empty = (~real.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"attention_mask has no real token in sample(s) {empty}: cannot pool them")
    return real


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real (non-zero mask) position of every row: ``[B, L] -> [B]`` (long).

    Works for right padding, left padding and any mixture; an all-padding row gives 0.
    """
    length = attention_mask.shape[1]
    positions = torch.arange(length, device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask != 0, positions, torch.zeros_like(positions)).amax(dim=1)


def first_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real position of every row: ``[B, L] -> [B]`` (long)."""
    length = attention_mask.shape[1]
    positions = torch.arange(length, device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask != 0, positions, torch.full_like(positions, length - 1)).amin(dim=1)


def pool(last_hidden_states: torch.Tensor, attention_mask: torch.Tensor, pool_type: str) -> torch.Tensor:
    """Pool ``last_hidden_states`` ``[B, L, H]`` with ``attention_mask`` ``[B, L]`` (1 = real, 0 = padding).

    pool_type:

    - ``"avg"``: mean over real tokens -> ``[B, H]``.
    - ``"weighted_avg"``: position-weighted mean over real tokens (the k-th real token, counting from 1,
      has weight k; SGPT-style, so later tokens — which have seen more context in causal models — count
      more) -> ``[B, H]``. Weights are ranks among real tokens, so padding side does not matter.
    - ``"cls"``: state of the first real token -> ``[B, H]``.
    - ``"last"``: state of the last real token, found per row -> ``[B, H]`` (left or right padding).
    - ``"cls_last"``: ``cat([cls, last], dim=-1)`` -> ``[B, 2H]``.
    - ``"colbert"``: every token state with padding positions zeroed -> ``[B, L, H]``.

    Sums are accumulated in float32; the result has the dtype of ``last_hidden_states``. Inputs are not
    modified. Raises ValueError for an unknown pool type or a row with no real token.
    """
    if pool_type not in POOLING_TYPES:
        raise ValueError(f"unknown pool_type {pool_type!r}; supported: {', '.join(POOLING_TYPES)}")
    real = _check(last_hidden_states, attention_mask)
    dtype = last_hidden_states.dtype
    batch = torch.arange(last_hidden_states.shape[0], device=last_hidden_states.device)

    if pool_type in ("avg", "weighted_avg"):
        weights = real.to(torch.float32)
        if pool_type == "weighted_avg":
            weights = weights.cumsum(dim=1) * weights
        # [B, 1, L] @ [B, L, H]: one batched matmul, no [B, L, H] temporary.
        summed = torch.bmm(weights[:, None, :], last_hidden_states.to(torch.float32)).squeeze(1)
        return (summed / weights.sum(dim=1, keepdim=True)).to(dtype)
    if pool_type == "cls":
        return last_hidden_states[batch, first_token_index(real)]
    if pool_type == "last":
        return last_hidden_states[batch, last_token_index(real)]
    if pool_type == "cls_last":
        first = last_hidden_states[batch, first_token_index(real)]
        last = last_hidden_states[batch, last_token_index(real)]
        return torch.cat([first, last], dim=-1)
    # colbert
    return last_hidden_states.masked_fill(~real[..., None], 0.0)
