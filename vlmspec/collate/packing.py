"""Collates for already tokenized data: pre-tokenized samples and neat-packed sequences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .batching import media_placeholder_ids, pad_token_id, stack_samples
from .default import finalize_media, shift_for_next_token
from .labels import IGNORE_INDEX
from .media import check_max_length

_COUNT_SOURCES = (("n_images_per_sample", "image_grid_thw"), ("n_videos_per_sample", "video_grid_thw"))
_ATTN_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3", "sdpa", "eager")


def _check_sequences(examples: Any, required: Sequence[str], what: str) -> None:
    if not isinstance(examples, Sequence) or isinstance(examples, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of dicts, got {type(examples).__name__}")
    if not examples:
        raise ValueError(f"empty batch: no {what}")
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise TypeError(f"sample {i}: expected a dict of tensors, got {type(ex).__name__}")
        n = None
        for key in required:
            value = ex.get(key)
            if not isinstance(value, torch.Tensor) or value.dim() != 1:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"sample {i}: field {key!r} must be a 1-D tensor, got {shape}")
            if n is not None and value.shape[0] != n:
                raise ValueError(f"sample {i}: field {key!r} has {value.shape[0]} positions, input_ids has {n}")
            n = value.shape[0]


def _media_counts(examples: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Per-sample image/video counts: an explicit count entry, else the rows of its grid tensor."""
    out = {}
    for count_key, grid_key in _COUNT_SOURCES:
        counts = []
        for ex in examples:
            if isinstance(ex.get(count_key), torch.Tensor):
                counts.append(int(ex[count_key].sum()))
            elif isinstance(ex.get(count_key), int):
                counts.append(ex[count_key])
            elif isinstance(ex.get(grid_key), torch.Tensor):
                counts.append(ex[grid_key].shape[0] if ex[grid_key].dim() > 1 else 1)
            else:
                counts.append(0)
        if any(counts):
            out[count_key] = torch.tensor(counts, dtype=torch.long)
    return out


def _tensors_only(example: dict) -> dict:
    return {k: v for k, v in example.items() if isinstance(v, torch.Tensor) and k not in dict(_COUNT_SOURCES)}


def _trim(example: dict, length: int, sample: int, media_ids: set[int]) -> dict:
    """Cut one pre-tokenized sample to *length*, refusing cuts that lose all supervision or split media."""
    ids, labels = example["input_ids"], example["labels"]
    n = ids.shape[0]
    if n <= length:
        return example
    sup = (labels != IGNORE_INDEX).nonzero().flatten()
    if sup.numel() and int(sup[0]) >= length:
        raise ValueError(
            f"sample {sample}: the prompt is {int(sup[0])} tokens (before the first supervised label) "
            f"but max_length={length}; nothing would be supervised"
        )
    if media_ids:
        hits = torch.isin(ids, torch.tensor(sorted(media_ids), dtype=ids.dtype))
        cut = int(hits[length:].sum())
        if cut:
            raise ValueError(
                f"sample {sample}: truncating {n} tokens to max_length={length} would cut {cut} of its "
                f"{int(hits.sum())} media placeholder tokens"
            )
    return {
        k: (v[:length] if isinstance(v, torch.Tensor) and v.dim() == 1 and v.shape[0] == n else v)
        for k, v in example.items()
    }


def pad_collate_fn(
    examples: Sequence[dict[str, Any]],
    processor: Any,
    max_length: int | None = None,
) -> dict[str, torch.Tensor]:
    """Collate for pre-tokenized samples (e.g. a ``PreTokenizedDatasetWrapper``).

    Each example carries ``input_ids``, ``attention_mask``, ``labels`` (1-D, unshifted, aligned) and
    optional media tensors (``pixel_values``, ``image_grid_thw``, ``pixel_values_videos``,
    ``video_grid_thw``...). Fake-image masking already happened per sample, so this only:

    1. pads every 1-D sequence tensor to *max_length* (or the longest sample): ``input_ids`` with the
       tokenizer's pad id, ``labels`` with -100, the rest with 0; a longer sample is cut
       (``ValueError`` naming it when the cut leaves no supervised label or splits media tokens);
    2. concatenates media tensors along dim 0 (pixels in bf16);
    3. shifts: ``labels = labels[:, 1:]`` and every ``[B, L]`` tensor drops its last position.

    Returns ``input_ids, attention_mask, labels: [B, L-1]``, media, and ``n_images_per_sample`` /
    ``n_videos_per_sample: [B]`` (from each sample's grid rows) when present.
    """
    _check_sequences(examples, ("input_ids", "attention_mask", "labels"), "examples")
    check_max_length(max_length)
    counts = _media_counts(examples)
    samples = [_tensors_only(ex) for ex in examples]
    if max_length is not None:
        media_ids = media_placeholder_ids(processor)
        samples = [_trim(s, max_length, i, media_ids) for i, s in enumerate(samples)]
    batch = stack_samples(samples, pad_token_id(processor), max_length)
    labels = batch.pop("labels")
    batch = finalize_media(shift_for_next_token(batch, labels), [])
    batch.update(counts)
    return batch


def _block_causal_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """``[B, 1, S, S]`` bool: query i sees key j iff same document, j <= i, and i is not padding (0)."""
    s = doc_ids.shape[1]
    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    real = (doc_ids > 0)[:, :, None]
    causal = torch.ones((s, s), dtype=torch.bool, device=doc_ids.device).tril()
    return (same & real & causal).unsqueeze(1)


def neat_packed_vlm_collater(
    batch: list[dict],
    padding_idx: int = 0,
    max_length: int | None = None,
    attn_implementation: str = "sdpa",
) -> dict:
    """Collater for neat-packed VLM sequences (packs of variable length, no pre-padding).

    Each pack holds ``input_ids``, ``labels`` (already shifted during packing) and an indexed
    ``attention_mask`` (1, 2, ... per document, 0 for padding), 1-D, plus optional sequence tensors
    (``position_ids``...) and media tensors. This:

    1. pads text tensors to *max_length* (fixed shapes for torch.compile) or the longest pack:
       ``input_ids`` with *padding_idx*, ``labels`` with -100, the rest with 0; a pack longer than
       *max_length* is a ``ValueError``;
    2. ``flash_attention_2``/``3``: keeps the indexed ``[B, S]`` mask (turned into cu_seqlens later);
       ``sdpa`` / ``eager``: a ``[B, 1, S, S]`` bool block-causal mask, True = attend, where no
       document sees another and padding queries see nothing;
    3. concatenates media along dim 0 (pixels bf16) and adds ``n_images_per_sample`` /
       ``n_videos_per_sample: [B]`` per pack when present.

    No autoregressive shift.
    """
    if attn_implementation not in _ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation must be one of {_ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}")
    _check_sequences(batch, ("input_ids", "labels", "attention_mask"), "packs")
    lengths = [p["input_ids"].shape[0] for p in batch]
    if max_length is not None:
        over = [i for i, n in enumerate(lengths) if n > max_length]
        if over:
            raise ValueError(f"sample {over[0]}: pack of {lengths[over[0]]} tokens exceeds max_length={max_length}")
    for i, p in enumerate(batch):
        if bool((p["attention_mask"] < 0).any()):
            raise ValueError(f"sample {i}: field 'attention_mask' must hold document indices >= 0")
    counts = _media_counts(batch)
    out = stack_samples([_tensors_only(p) for p in batch], padding_idx, max_length)
    out["attention_mask"] = out["attention_mask"].long()
    if not attn_implementation.startswith("flash_attention"):
        out["attention_mask"] = _block_causal_mask(out["attention_mask"])
    out = finalize_media(out, [])
    out.update(counts)
    return out
