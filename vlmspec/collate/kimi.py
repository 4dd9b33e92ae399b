"""Kimi-VL and Kimi-K2.5 collates; image-placeholder pre-expansion for pipeline parallelism.

Kimi templates wrap each image as ``<|media_start|>image<|media_content|><|media_pad|><|media_end|>``
(K2.5: ``<|media_begin|>``) and supervise ``<|im_assistant|>assistant<|im_middle|>`` ... ``<|im_end|>``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from .batching import chat_template_collate, first_supervised, pad_to_length, pad_token_id
from .default import collate_tokenized, prepare_conversations
from .labels import _token_id
from .media import _count_media_per_sample, _extract_media_from_conversations, check_max_length

logger = logging.getLogger("vlmspec.collate_fns")

_DEFAULT_MERGE_KERNEL: tuple[int, int] = (2, 2)
_GRID_KEYS = ("grid_thws", "image_grid_thw", "image_grid_hws")


def _expand_image_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    grid_thws: torch.Tensor,
    media_token_id: int,
    merge_kernel_size: tuple[int, int] = _DEFAULT_MERGE_KERNEL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand each image placeholder to its patch count so sequence length is fixed before forward.

    input_ids, attention_mask: ``[seq_len]`` with one *media_token_id* per image. grid_thws:
    ``[N, 3]`` rows ``[t, h, w]`` (``[N, 2]`` rows ``[h, w]`` also accepted), one per placeholder in
    order. Placeholder *i* becomes ``(h_i // merge_h) * (w_i // merge_w)`` copies of itself; its
    attention value is repeated with it. Returns new ``(input_ids, attention_mask)``.

    Raises ``ValueError`` when the placeholder count differs from ``grid_thws.shape[0]`` or a grid is
    smaller than the merge kernel.
    """
    if input_ids.dim() != 1:
        raise ValueError(f"input_ids must be 1-D [seq_len], got shape {tuple(input_ids.shape)}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids {tuple(input_ids.shape)}"
        )
    grid = torch.as_tensor(grid_thws)
    if grid.dim() != 2 or grid.shape[1] not in (2, 3):
        raise ValueError(f"grid_thws must be [N, 3] (t, h, w), got shape {tuple(grid.shape)}")
    positions = (input_ids == media_token_id).nonzero().flatten()
    if positions.numel() != grid.shape[0]:
        raise ValueError(
            f"{positions.numel()} image placeholder tokens (id {media_token_id}) in input_ids but grid_thws has "
            f"{grid.shape[0]} rows; they must match one to one"
        )
    merge_h, merge_w = merge_kernel_size
    counts = (grid[:, -2] // merge_h) * (grid[:, -1] // merge_w)
    small = (counts < 1).nonzero().flatten()
    if small.numel():
        i = int(small[0])
        raise ValueError(
            f"image {i}: grid {grid[i].tolist()} is smaller than the merge kernel {tuple(merge_kernel_size)}"
        )
    repeats = torch.ones_like(input_ids, dtype=torch.long)
    repeats[positions] = counts.to(torch.long)
    return input_ids.repeat_interleave(repeats), attention_mask.repeat_interleave(repeats)


def kimi_vl_collate_fn(
    examples: Sequence[dict[str, Any]],
    processor: Any,
    max_length: int | None = None,
) -> dict[str, torch.Tensor]:
    """Collate for Kimi-VL processors (the processor expands ``<|media_pad|>`` itself).

    Returns ``input_ids, attention_mask, labels: [B, L-1]`` (labels -100 = ignore, already shifted),
    ``pixel_values`` (bf16), the processor's grid tensor (``image_grid_hws``) and
    ``n_images_per_sample: [B]``. max_length: rows longer than it are cut after tokenization;
    ``ValueError`` (naming the sample and the numbers) when the cut would leave no supervised token or
    would split an image's tokens.
    """
    return chat_template_collate(examples, processor, max_length=max_length)


def _merge_kernel(processor: Any) -> tuple[int, int]:
    ip = getattr(processor, "image_processor", None)
    for name in ("merge_kernel_size", "merge_size"):
        value = getattr(ip, name, None)
        if isinstance(value, int) and value > 0:
            return (value, value)
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return (int(value[0]), int(value[1]))
    return _DEFAULT_MERGE_KERNEL


def _media_token_id(processor: Any) -> int:
    for source in (processor, getattr(processor, "tokenizer", None)):
        for name in ("media_placeholder_token_id", "image_token_id"):
            value = getattr(source, name, None)
            if isinstance(value, int) and value >= 0:
                return value
    tid = _token_id(getattr(processor, "tokenizer", processor), "<|media_pad|>")
    if tid is None:
        raise ValueError(
            f"{type(processor).__name__} names no image placeholder token (image_token_id / <|media_pad|>)"
        )
    return tid


def _process_images(processor: Any, images: list) -> tuple[dict[str, torch.Tensor], str, torch.Tensor]:
    ip = getattr(processor, "image_processor", None)
    out = dict(
        ip(images=images, return_tensors="pt") if ip is not None else processor(images=images, return_tensors="pt")
    )
    key = next((k for k in _GRID_KEYS if k in out), None)
    if key is None:
        raise ValueError(f"the image processor returned no grid ({' / '.join(_GRID_KEYS)}); got keys {sorted(out)}")
    return out, key, out[key]


def _image_spans(ids_before: torch.Tensor, media_id: int, counts: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each image's expanded run, from the placeholder positions before expansion."""
    positions = (ids_before == media_id).nonzero().flatten().tolist()
    spans, shift = [], 0
    for pos, n in zip(positions, counts.tolist()):
        spans.append((pos + shift, pos + shift + int(n)))
        shift += int(n) - 1
    return spans


def kimi_k25_vl_collate_fn(
    examples: Sequence[dict[str, Any]],
    processor: Any,
    max_length: int | None = None,
    drop_overlong: bool = False,
) -> dict[str, torch.Tensor]:
    """Collate for Kimi-K2.5 VL with image tokens pre-expanded (fixed sequence length for PP).

    1. Each sample's rendered template is tokenized with one ``<|media_pad|>`` per image and its
       images run through the image processor (``grid_thws``).
    2. :func:`_expand_image_tokens` expands each placeholder to ``(h//merge_h) * (w//merge_w)`` tokens.
    3. Every row is padded to *max_length* (to the longest row when None), so the model never changes
       sequence length.

    A row longer than *max_length* is dropped with ``drop_overlong=True`` (``ValueError`` when every
    row is), otherwise truncated: an image whose tokens would be cut is removed whole (its tokens, its
    pixel rows and grid row), and ``n_images_per_sample`` counts only the images that remain.
    ``ValueError`` names the sample and numbers when its prompt does not fit in *max_length*.

    Returns ``input_ids, attention_mask, labels: [B, max_length-1]`` (labels -100 = ignore, already
    shifted), ``pixel_values`` (bf16), the grid tensor, ``n_images_per_sample: [B]``.
    """
    check_max_length(max_length)
    conversations, fake = prepare_conversations(examples)
    n_videos = _count_media_per_sample(conversations)[1]
    if any(n_videos):
        i = next(i for i, n in enumerate(n_videos) if n)
        raise ValueError(f"sample {i}: kimi_k25_vl_collate_fn pre-expands images only; got {n_videos[i]} video item(s)")
    tok = getattr(processor, "tokenizer", processor)
    media_id = _media_token_id(processor)
    merge = _merge_kernel(processor)
    renderer = processor if getattr(processor, "chat_template", None) is not None else tok
    rows: list[dict[str, Any]] = []
    grid_key = "image_grid_thw"
    for i, conversation in enumerate(conversations):
        text = renderer.apply_chat_template(conversation, tokenize=False)
        enc = tok(text, add_special_tokens=False, return_tensors="pt")
        ids, mask = enc["input_ids"][0], enc["attention_mask"][0]
        images = _extract_media_from_conversations([conversation])[0] or []
        media, grid = {}, torch.zeros((0, 3), dtype=torch.long)
        if images:
            media, grid_key, grid = _process_images(processor, images)
        try:
            expanded, expanded_mask = _expand_image_tokens(ids, mask, grid, media_id, merge)
        except ValueError as exc:
            raise ValueError(f"sample {i}: {exc}") from exc
        counts = (grid[:, -2] // merge[0]) * (grid[:, -1] // merge[1])
        rows.append(
            {
                "sample": i,
                "ids": expanded,
                "mask": expanded_mask,
                "grid": grid,
                "media": media,
                "spans": _image_spans(ids, media_id, counts),
            }
        )
    if max_length is not None:
        rows = _fit_rows(rows, processor, max_length, drop_overlong)
    kept = [r["sample"] for r in rows]
    conversations = [conversations[i] for i in kept]
    fake = [new for new, old in enumerate(kept) if old in set(fake)]
    length = max_length if max_length is not None else max(r["ids"].shape[0] for r in rows)
    batch: dict[str, Any] = {
        "input_ids": pad_to_length([r["ids"] for r in rows], length, pad_token_id(processor)),
        "attention_mask": pad_to_length([r["mask"] for r in rows], length, 0),
    }
    with_images = [r for r in rows if r["grid"].shape[0]]
    if with_images:
        batch["pixel_values"] = torch.cat([r["media"]["pixel_values"] for r in with_images])
        batch[grid_key] = torch.cat([r["grid"] for r in with_images])
    out = collate_tokenized(batch, conversations, processor, fake, kept)
    n_images = [r["grid"].shape[0] for r in rows]
    out.pop("n_images_per_sample", None)
    if any(n_images):
        out["n_images_per_sample"] = torch.tensor(n_images, dtype=torch.long)
    return out


def _pixel_rows(media: dict[str, torch.Tensor], grid: torch.Tensor) -> list[int]:
    """Rows of ``pixel_values`` that belong to each image (patch rows t*h*w, or one row per image)."""
    pixels = media["pixel_values"]
    patches = grid.prod(-1).tolist()
    if sum(patches) == pixels.shape[0]:
        return [int(p) for p in patches]
    if pixels.shape[0] == grid.shape[0]:
        return [1] * grid.shape[0]
    raise ValueError(f"cannot attribute {pixels.shape[0]} pixel rows to {grid.shape[0]} images")


def _fit_rows(rows: list[dict[str, Any]], processor: Any, max_length: int, drop_overlong: bool) -> list[dict[str, Any]]:
    fitted = []
    for row in rows:
        n = row["ids"].shape[0]
        if n <= max_length:
            fitted.append(row)
            continue
        if drop_overlong:
            logger.warning(
                "dropping sample %d: %d tokens after image expansion > max_length=%d", row["sample"], n, max_length
            )
            continue
        first = first_supervised(row["ids"][None], processor, row["mask"][None])[0]
        if first is not None and first >= max_length:
            raise ValueError(
                f"sample {row['sample']}: the prompt is {first} tokens after image expansion (everything before the "
                f"first supervised token) but max_length={max_length}; nothing would be supervised. Raise max_length "
                "or pass drop_overlong=True."
            )
        keep = sum(1 for _, end in row["spans"] if end <= max_length)
        cut = max_length if keep == len(row["spans"]) else min(max_length, row["spans"][keep][0])
        if first is not None and first >= cut:
            raise ValueError(
                f"sample {row['sample']}: truncating to max_length={max_length} removes image {keep} "
                f"(tokens {row['spans'][keep][0]}..{row['spans'][keep][1]}) and with it every supervised token"
            )
        if keep < len(row["spans"]):
            logger.warning(
                "sample %d: truncation to max_length=%d drops %d of %d images",
                row["sample"],
                max_length,
                len(row["spans"]) - keep,
                len(row["spans"]),
            )
            n_rows = sum(_pixel_rows(row["media"], row["grid"])[:keep])
            media = dict(row["media"])
            media["pixel_values"] = media["pixel_values"][:n_rows]
            row = {**row, "grid": row["grid"][:keep], "media": media, "spans": row["spans"][:keep]}
        fitted.append({**row, "ids": row["ids"][:cut], "mask": row["mask"][:cut]})
    if not fitted:
        raise ValueError(
            f"every sample exceeds max_length={max_length} after image expansion "
            f"(lengths {[r['ids'].shape[0] for r in rows]}); nothing left to collate"
        )
    return fitted
