"""Padding, media concatenation and length control shared by the family collates.

Every helper returns new tensors; nothing it is given is written to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .default import collate_tokenized, prepare_conversations, tokenize_conversations
from .labels import IGNORE_INDEX, _build_labels_from_markers, resolve_turn_markers
from .media import _count_media_per_sample, check_max_length

# Attributes under which processors / tokenizers name the placeholder tokens that carry media
# features: cutting one of these off in truncation desynchronizes tokens and features.
_MEDIA_PLACEHOLDER_ATTRS = (
    "image_token_id",
    "video_token_id",
    "audio_token_id",
    "image_token_index",
    "video_token_index",
    "audio_token_index",
    "media_placeholder_token_id",
)


def media_placeholder_ids(processor: Any) -> set[int]:
    """Token ids that stand for media features (image/video/audio placeholders) of *processor*."""
    ids: set[int] = set()
    for source in (processor, getattr(processor, "tokenizer", None)):
        for name in _MEDIA_PLACEHOLDER_ATTRS:
            value = getattr(source, name, None) if source is not None else None
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                ids.add(value)
    return ids


def pad_token_id(processor: Any, default: int = 0) -> int:
    tok = getattr(processor, "tokenizer", processor)
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tok, name, None)
        if isinstance(value, int) and value >= 0:
            return value
    return default


def pad_to_length(rows: Sequence[torch.Tensor], length: int, value: int | float | bool) -> torch.Tensor:
    """Right-pad 1-D tensors to ``[len(rows), length]`` with *value* (rows longer than length are an error)."""
    first = rows[0]
    out = torch.full((len(rows), length), value, dtype=first.dtype, device=first.device)
    for r, row in enumerate(rows):
        if row.shape[0] > length:
            raise ValueError(f"sample {r}: sequence of {row.shape[0]} tokens does not fit length {length}")
        out[r, : row.shape[0]] = row
    return out


def concat_media(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-sample media tensors along dim 0; trailing dims that differ are zero-padded.

    Audio features of different clip lengths (``[n, T_i, F]``) and their masks batch this way.
    0-d tensors are stacked.
    """
    values = [v for v in values if v is not None]
    if all(v.dim() == 0 for v in values):
        return torch.stack(values)
    values = [v.unsqueeze(0) if v.dim() == 0 else v for v in values]
    ndim = values[0].dim()
    if any(v.dim() != ndim for v in values):
        raise ValueError(f"cannot batch media tensors of different ranks: {[tuple(v.shape) for v in values]}")
    tail = [max(v.shape[d] for v in values) for d in range(1, ndim)]
    padded = []
    for v in values:
        if list(v.shape[1:]) != tail:
            grown = torch.zeros((v.shape[0], *tail), dtype=v.dtype, device=v.device)
            grown[(slice(None), *(slice(0, s) for s in v.shape[1:]))] = v
            v = grown
        padded.append(v)
    return torch.cat(padded, dim=0)


# Media tensors can match a sample's [1, L] by coincidence (an audio mask with L frames); their names tell.
_MEDIA_KEY_PARTS = ("pixel", "feature", "grid", "audio", "image", "video", "sizes")


def _is_media_key(key: str) -> bool:
    return any(part in key for part in _MEDIA_KEY_PARTS)


def stack_samples(
    samples: Sequence[Mapping[str, Any]],
    pad_id: int,
    length: int | None = None,
    pad_values: Mapping[str, int | float] | None = None,
) -> dict[str, Any]:
    """Pad and stack per-sample outputs into one batch.

    A key is a sequence key when its tensor is shaped like that sample's ``input_ids`` (``[L_i]`` or
    ``[1, L_i]``) and its name is not a media name (pixel/feature/grid/audio/image/video/sizes); those
    are right-padded to *length* (default: longest): ``input_ids`` with *pad_id*,
    ``labels`` with -100, everything else (``attention_mask``, ``mm_token_type_ids``...) with 0.
    Every other tensor is media and is concatenated along dim 0 (see :func:`concat_media`).
    """
    pad_values = {"input_ids": pad_id, "labels": IGNORE_INDEX, **(pad_values or {})}
    seq_keys: list[str] = []
    rows: list[dict[str, torch.Tensor]] = []
    for s, sample in enumerate(samples):
        ids = sample.get("input_ids")
        if not isinstance(ids, torch.Tensor) or ids.dim() not in (1, 2) or (ids.dim() == 2 and ids.shape[0] != 1):
            raise ValueError(
                f"sample {s}: field 'input_ids' must be a 1-D tensor (or [1, L]), got "
                f"{type(ids).__name__ if not isinstance(ids, torch.Tensor) else tuple(ids.shape)}"
            )
        n = ids.shape[-1]
        row = {}
        for key, value in sample.items():
            if isinstance(value, torch.Tensor) and value.shape == ids.shape and not _is_media_key(key):
                row[key] = value.reshape(n)
                if key not in seq_keys:
                    seq_keys.append(key)
        rows.append(row)
    longest = max(r["input_ids"].shape[0] for r in rows)
    length = longest if length is None else length
    batch: dict[str, Any] = {}
    for key in seq_keys:
        missing = [s for s, r in enumerate(rows) if key not in r]
        if missing:
            raise ValueError(f"sample {missing[0]}: field {key!r} is missing or not shaped like input_ids")
        batch[key] = pad_to_length([r[key] for r in rows], length, pad_values.get(key, 0))
    media_keys = [k for s in samples for k in s if k not in seq_keys]
    for key in dict.fromkeys(media_keys):
        values = [s.get(key) for s in samples]
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        if tensors and len(tensors) == sum(v is not None for v in values):
            batch[key] = concat_media(tensors)
        else:
            batch[key] = values
    return batch


def first_supervised(
    input_ids: torch.Tensor,
    processor: Any,
    attention_mask: torch.Tensor | None = None,
    unsupervised: torch.Tensor | None = None,
) -> list[int | None]:
    """Per row, the index of the first token the chat-template markers supervise (None if none).

    unsupervised: optional bool ``[B, L]`` of positions that will be masked anyway (not counted).
    """
    markers = resolve_turn_markers(processor)
    if markers is None:
        return [None] * input_ids.shape[0]
    labels = _build_labels_from_markers(input_ids, *markers)
    sup = labels != IGNORE_INDEX
    if attention_mask is not None:
        sup &= attention_mask != 0
    if unsupervised is not None:
        sup &= ~unsupervised
    return [int(r.nonzero()[0]) if bool(r.any()) else None for r in sup]


def _to_right_padding(batch: dict[str, Any]) -> dict[str, Any]:
    """Roll left-padded rows so that padding sits on the right (every [B, L] tensor alike)."""
    mask = batch.get("attention_mask")
    ids = batch["input_ids"]
    if not isinstance(mask, torch.Tensor) or mask.shape != ids.shape:
        return batch
    lead = (mask != 0).int().argmax(1)  # index of the first real token
    if not bool((lead > 0).any()):
        return batch
    out = dict(batch)
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.shape == ids.shape:
            out[key] = torch.stack([torch.roll(value[r], -int(lead[r])) for r in range(ids.shape[0])])
    return out


def truncate_batch(
    batch: dict[str, Any],
    max_length: int,
    processor: Any,
    sample_ids: Sequence[int] | None = None,
    unsupervised_key: str | None = None,
) -> dict[str, Any]:
    """Cut every ``[B, L]`` tensor to *max_length* tokens after checking that this is harmless.

    Raises ``ValueError`` naming the sample and the numbers when a row's prompt (the tokens before its
    first supervised token) does not fit, so nothing of it would be supervised, or when the cut would
    remove media placeholder tokens (their features would no longer match the tokens). Left-padded
    rows are first rolled to right padding. unsupervised_key: a bool ``[B, L]`` entry of *batch*
    marking positions the caller masks from the labels (they do not end a prompt).
    """
    check_max_length(max_length)
    ids = batch["input_ids"]
    if ids.shape[1] <= max_length:
        return batch
    batch = _to_right_padding(batch)
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    real = (
        (mask != 0).sum(1)
        if isinstance(mask, torch.Tensor) and mask.shape == ids.shape
        else torch.full((ids.shape[0],), ids.shape[1])
    )
    sample_ids = list(sample_ids) if sample_ids is not None else list(range(ids.shape[0]))
    over = [r for r in range(ids.shape[0]) if int(real[r]) > max_length]
    if over:
        starts = first_supervised(
            ids,
            processor,
            mask if isinstance(mask, torch.Tensor) and mask.shape == ids.shape else None,
            batch.get(unsupervised_key) if unsupervised_key else None,
        )
        media = media_placeholder_ids(processor)
        media_hits = torch.isin(ids, torch.tensor(sorted(media), dtype=ids.dtype)) if media else None
        for r in over:
            if starts[r] is not None and starts[r] >= max_length:
                raise ValueError(
                    f"sample {sample_ids[r]}: the prompt is {starts[r]} tokens (everything before the first "
                    f"supervised token) but max_length={max_length}; the sample ({int(real[r])} tokens) would "
                    "have no supervised token. Raise max_length or drop the sample."
                )
            if media_hits is not None:
                cut, total = int(media_hits[r, max_length:].sum()), int(media_hits[r].sum())
                if cut:
                    raise ValueError(
                        f"sample {sample_ids[r]}: truncating {int(real[r])} tokens to max_length={max_length} "
                        f"would cut {cut} of its {total} media placeholder tokens. Raise max_length or drop the sample."
                    )
    out = dict(batch)
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.shape == ids.shape:
            out[key] = value[:, :max_length]
    return out


_VIDEO_LAYOUT_KEYS = ("video_grid_thw", "num_frames_per_video", "video_grid_hw")


def frames_per_video(samples: Sequence[Mapping[str, Any]], n_videos: Sequence[int]) -> torch.Tensor | None:
    """``num_frames_per_video: [n_videos]`` (int64) for per-sample outputs whose ``pixel_values_videos`` are
    stacked frames ``[frames, C, H, W]`` and that say nothing else about their layout (Nemotron omni).

    Each sample's frames belong to its one video, so the count is exact; None where it is not known: no
    such frames, a layout key already present, or a sample with two or more videos (the processor's
    output does not say where one video ends), or frames in a sample without a video.
    """
    stacked = [s.get("pixel_values_videos") for s in samples]
    if not any(isinstance(p, torch.Tensor) and p.ndim >= 4 for p in stacked):
        return None
    if any(key in s for s in samples for key in _VIDEO_LAYOUT_KEYS):
        return None
    counts = []
    for pixels, videos in zip(stacked, n_videos):
        rows = 0 if pixels is None else int(pixels.shape[0])
        if videos > 1 or (videos == 0) != (rows == 0):
            return None
        counts += [rows] if videos else []
    return torch.tensor(counts, dtype=torch.long)


def chat_template_collate(
    examples: Sequence[dict[str, Any]],
    processor: Any,
    *,
    max_length: int | None = None,
    per_sample: bool = False,
    prepare: Any = None,
    **proc_kwargs: Any,
) -> dict[str, torch.Tensor]:
    """The chat-template pipeline with exact post-tokenization truncation.

    prepare: ``conversations -> list[dict]`` of per-sample processor kwargs (audio clips, ...), run on
    the validated copies. per_sample: run the processor once per sample and pad (for processors that
    cannot batch some media, e.g. video). Labels, fake-image masking, shift and media finishing are
    :func:`~vlmspec.collate.default.collate_tokenized`'s.
    """
    conversations, fake = prepare_conversations(examples)
    extras = prepare(conversations) if prepare is not None else [{} for _ in conversations]
    if per_sample:
        outputs = [
            tokenize_conversations([conv], processor, sample_offset=i, **extra, **proc_kwargs)
            for i, (conv, extra) in enumerate(zip(conversations, extras))
        ]
        batch = stack_samples(outputs, pad_token_id(processor))
        frames = frames_per_video(outputs, _count_media_per_sample(conversations)[1])
        if frames is not None:
            batch["num_frames_per_video"] = frames
    else:
        merged: dict[str, list] = {}
        for extra in extras:
            for key, value in extra.items():
                merged.setdefault(key, []).extend(value)
        merged = {key: value for key, value in merged.items() if value}
        try:
            batch = tokenize_conversations(conversations, processor, **merged, **proc_kwargs)
        except ValueError:
            for i, (conv, extra) in enumerate(zip(conversations, extras)):  # name the sample that fails alone
                tokenize_conversations([conv], processor, sample_offset=i, **extra, **proc_kwargs)
            raise
    if max_length is not None:
        batch = truncate_batch(batch, max_length, processor)
    return collate_tokenized(batch, conversations, processor, fake)
