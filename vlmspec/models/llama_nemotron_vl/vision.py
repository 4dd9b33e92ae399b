"""Vision-side tensor helpers: pixel shuffle, image-flag filtering, placeholder replacement."""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["_filter_vision_embeddings_by_image_flags", "_replace_image_token_embeddings", "pixel_shuffle"]


def pixel_shuffle(x: torch.Tensor, scale_factor: float = 0.5) -> torch.Tensor:
    """Fold each ``k x k`` block of a patch grid into the channels, ``k = 1 / scale_factor``.

    x: ``[N, A, B, C]`` (a grid of ``A x B`` patch states). Returns ``[N, A/k, B/k, C*k*k]`` with
    ``out[n, i, j, (a*k + b)*C + c] == x[n, i*k + a, j*k + b, c]`` — the InternVL ("v2") channel order
    that projector weights of this model family expect. ``scale_factor=1`` returns ``x`` unchanged.
    """
    if x.dim() != 4:
        raise ValueError(f"pixel_shuffle expects [N, A, B, C], got shape {tuple(x.shape)}")
    k = round(1 / scale_factor)
    if k < 1 or abs(k * scale_factor - 1) > 1e-6:
        raise ValueError(f"scale_factor must be 1/k for a positive integer k, got {scale_factor}")
    n, a, b, c = x.shape
    if a % k or b % k:
        raise ValueError(f"patch grid {a}x{b} is not divisible by 1/scale_factor = {k}")
    x = x.reshape(n, a, b // k, c * k)  # fold k neighbours along B into channels
    x = x.permute(0, 2, 1, 3).reshape(n, b // k, a // k, c * k * k)  # then k neighbours along A
    return x.permute(0, 2, 1, 3).contiguous()


def _filter_vision_embeddings_by_image_flags(
    vit_embeds: torch.Tensor, image_flags: Optional[torch.Tensor]
) -> torch.Tensor:
    """Keep only vision embeddings marked as real images.

    vit_embeds: ``[N_tiles, T, H]``; image_flags: ``[N_tiles]`` or ``[N_tiles, 1]``, 1 = real tile,
    0 = placeholder tile (e.g. a dummy tile of a text-only sample). ``None`` keeps every tile.
    Returns ``[N_real, T, H]`` (a new tensor; the input is not modified).
    """
    if image_flags is None:
        return vit_embeds
    flags = image_flags.reshape(-1)
    if flags.shape[0] != vit_embeds.shape[0]:
        raise ValueError(
            f"image_flags has {flags.shape[0]} entries but there are {vit_embeds.shape[0]} vision tiles"
        )
    return vit_embeds[flags.to(vit_embeds.device) == 1]


def _replace_image_token_embeddings(
    input_embeds: torch.Tensor, input_ids: torch.Tensor, vit_embeds: torch.Tensor, img_context_token_id: int
) -> torch.Tensor:
    """Replace image placeholder token embeddings with vision embeddings.

    input_embeds: ``[B, L, H]``; input_ids: ``[B, L]``; vit_embeds: ``[N_tiles, T, H]`` or ``[M, H]``.
    The placeholders (``input_ids == img_context_token_id``) are filled in row-major order (sample 0
    first, left to right) with the vision vectors in order (tile 0 token 0 first). Returns a new
    ``[B, L, H]`` tensor in ``input_embeds.dtype``; gradients flow to both inputs.

    Raises ValueError when the number of placeholders differs from the number of vision vectors
    (the message gives both), or when hidden sizes differ.
    """
    hidden = input_embeds.shape[-1]
    if vit_embeds.shape[-1] != hidden:
        raise ValueError(
            f"vision embeddings have hidden size {vit_embeds.shape[-1]} but text embeddings have {hidden}"
        )
    flat = vit_embeds.reshape(-1, hidden).to(device=input_embeds.device, dtype=input_embeds.dtype)
    selected = input_ids.to(input_embeds.device) == img_context_token_id
    n_tokens = int(selected.sum())
    if n_tokens != flat.shape[0]:
        raise ValueError(
            f"image token count mismatch: input_ids contain {n_tokens} image context tokens "
            f"(id {img_context_token_id}) but the vision tower produced {flat.shape[0]} embeddings "
            f"(vit_embeds shape {tuple(vit_embeds.shape)}); the processor's tokens per tile or tile count "
            "does not match the model's"
        )
    if n_tokens == 0:
        return input_embeds
    return input_embeds.masked_scatter(selected.unsqueeze(-1).expand_as(input_embeds), flat)
