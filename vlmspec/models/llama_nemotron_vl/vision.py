"""Vision-side tensor helpers: pixel shuffle, image-flag filtering, placeholder replacement."""

from __future__ import annotations

import torch

__all__ = ["_filter_vision_embeddings_by_image_flags", "_replace_image_token_embeddings", "pixel_shuffle"]


def pixel_shuffle(x: torch.Tensor, scale_factor: float = 0.5) -> torch.Tensor:
    """Rescale a patch grid, trading spatial size for channels: ``[N, A, B, C] -> [N, A*s, B*s, C/s**2]``.

    ``s = scale_factor`` is ``1/k`` or ``k`` for a positive integer ``k``:

    - ``s = 1/k`` (downsample, what the model uses): each ``k x k`` block is folded into the channels,
      ``out[n, i, j, (a*k + b)*C + c] == x[n, i*k + a, j*k + b, c]`` — the InternVL ("v2") channel order
      that projector weights of this model family expect. ``A`` and ``B`` must be divisible by ``k``.
    - ``s = k`` (upsample): the exact inverse, ``out[n, i*k + a, j*k + b, c] == x[n, i, j, (a*k + b)*C' + c]``
      with ``C' = C / k**2`` (``C`` must be divisible by ``k**2``).

    So ``pixel_shuffle(pixel_shuffle(x, 1/k), k) == x`` and ``pixel_shuffle(pixel_shuffle(x, k), 1/k) == x``
    exactly (pure data movement). Returns a new contiguous tensor (``x`` itself for ``scale_factor=1``);
    ``x`` is not modified.
    """
    if x.dim() != 4:
        raise ValueError(f"pixel_shuffle expects [N, A, B, C], got shape {tuple(x.shape)}")
    if not scale_factor > 0:
        raise ValueError(f"scale_factor must be 1/k or k for a positive integer k, got {scale_factor}")
    up = scale_factor > 1
    k = round(scale_factor if up else 1 / scale_factor)
    if abs((scale_factor if up else 1 / scale_factor) - k) > 1e-6:
        raise ValueError(f"scale_factor must be 1/k or k for a positive integer k, got {scale_factor}")
    if k == 1:
        return x
    n, a, b, c = x.shape
    if up:
        if c % (k * k):
            raise ValueError(f"channels {c} are not divisible by scale_factor**2 = {k * k}")
        c_out = c // (k * k)
        # channel index (a_off*k + b_off)*C' + c  ->  grid offsets (a_off, b_off)
        x = x.reshape(n, a, b, k, k, c_out).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(n, a * k, b * k, c_out).contiguous()
    if a % k or b % k:
        raise ValueError(f"patch grid {a}x{b} is not divisible by 1/scale_factor = {k}")
    x = x.reshape(n, a // k, k, b // k, k, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, a // k, b // k, k * k * c).contiguous()


def _filter_vision_embeddings_by_image_flags(
    vit_embeds: torch.Tensor, image_flags: torch.Tensor | None
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
        raise ValueError(f"image_flags has {flags.shape[0]} entries but there are {vit_embeds.shape[0]} vision tiles")
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
        raise ValueError(f"vision embeddings have hidden size {vit_embeds.shape[-1]} but text embeddings have {hidden}")
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
