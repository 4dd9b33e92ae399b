"""Overlong-sample handling: estimate expanded media tokens and drop samples over max_length.

Tokenizing a conversation's rendered template counts one placeholder per image; the processor later
expands it to the image's real token count. The estimate adds that difference without running the
image processor: the processor's own ``_get_num_multimodal_tokens`` when it has one, otherwise the
patch / merge / pixel-budget arithmetic of :func:`_extract_image_config`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from PIL import Image as PILImage

from .media import _is_image, _is_video, _iter_items

logger = logging.getLogger("vlmspec.collate_fns")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, dict):  # {"height": p, "width": p}
        return _as_int(value.get("height"))
    if isinstance(value, (tuple, list)) and value:
        return _as_int(value[0])
    return None


def _size_field(size: Any, name: str) -> int | None:
    if size is None:
        return None
    value = size.get(name) if isinstance(size, dict) else getattr(size, name, None)
    return _as_int(value)


def _extract_image_config(processor):
    """Image-token arithmetic of *processor*: a dict, or None when it has no image processor.

    Keys: ``patch_size``, ``merge_size`` (spatial merge per side; ``round(1/downsample_ratio)`` for
    pixel-shuffle towers), ``min_pixels`` / ``max_pixels`` (Qwen-style budget; ``size.shortest_edge`` /
    ``size.longest_edge`` carry them in transformers 5), ``temporal_patch_size``, and
    ``tokens_per_image`` for fixed-size towers (Gemma 3: 256). Missing values are None.
    """
    ip = getattr(processor, "image_processor", None)
    if ip is None:
        return None
    merge = (
        _as_int(getattr(ip, "merge_size", None))
        or _as_int(getattr(ip, "spatial_merge_size", None))
        or _as_int(getattr(processor, "spatial_merge_size", None))
        or _as_int(getattr(ip, "merge_kernel_size", None))
    )
    ratio = getattr(ip, "downsample_ratio", None)
    if merge is None and isinstance(ratio, (int, float)) and 0 < ratio < 1:
        merge = round(1 / ratio)
    size = getattr(ip, "size", None)
    min_pixels = _as_int(getattr(ip, "min_pixels", None)) or _size_field(size, "min_pixels")
    max_pixels = _as_int(getattr(ip, "max_pixels", None)) or _size_field(size, "max_pixels")
    if merge is not None and min_pixels is None and max_pixels is None:
        # Qwen2-VL style processors keep the pixel budget in shortest_edge / longest_edge
        min_pixels, max_pixels = _size_field(size, "shortest_edge"), _size_field(size, "longest_edge")
    fixed = _as_int(getattr(processor, "image_seq_length", None)) or _as_int(getattr(ip, "image_seq_length", None))
    if fixed is not None and merge is not None:
        fixed = None  # a dynamic-resolution tower; image_seq_length is only a cap there
    return {
        "patch_size": _as_int(getattr(ip, "patch_size", None)) or _as_int(getattr(processor, "patch_size", None)),
        "merge_size": merge,
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "temporal_patch_size": _as_int(getattr(ip, "temporal_patch_size", None)),
        "tokens_per_image": fixed,
    }


def _tokens_from_config(height: int, width: int, cfg: dict) -> int | None:
    if cfg.get("tokens_per_image"):
        return cfg["tokens_per_image"]
    patch = cfg.get("patch_size")
    if not patch:
        return None
    merge = cfg.get("merge_size") or 1
    factor = patch * merge
    # smart resize: multiples of patch*merge, inside [min_pixels, max_pixels]
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    max_pixels, min_pixels = cfg.get("max_pixels"), cfg.get("min_pixels")
    if max_pixels and h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif min_pixels and h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return (h // patch) * (w // patch) // (merge * merge)


def _image_size(value: Any) -> tuple[int, int] | None:
    """(height, width) of a PIL image or a local image file (header only), else None."""
    if isinstance(value, PILImage.Image):
        return value.height, value.width
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        path = path[len("file://") :] if path.startswith("file://") else path
        if "://" in path or not os.path.exists(path):
            return None
        try:
            with PILImage.open(path) as img:
                return img.height, img.width
        except Exception:
            return None
    return None


def _processor_image_tokens(processor: Any, sizes: list[tuple[int, int]]) -> list[int] | None:
    fn = getattr(processor, "_get_num_multimodal_tokens", None)
    if not callable(fn) or not sizes:
        return None
    try:
        data = fn(image_sizes=[list(s) for s in sizes])
        counts = data["num_image_tokens"] if not hasattr(data, "num_image_tokens") else data.num_image_tokens
        counts = [int(c) for c in counts]
    except Exception:
        return None
    return counts if len(counts) == len(sizes) else None


def _estimate_media_tokens(conversation, processor):
    """Extra tokens the processor's media expansion adds to *conversation*'s tokenized template.

    Returns the total beyond one placeholder per media item (the placeholder is already counted by
    tokenizing the rendered template). Images with known dimensions (PIL images, readable local
    paths) are estimated; video given as a list of frames counts ``ceil(frames / temporal_patch)``
    frame grids; anything else (URLs, video files) contributes 0.
    """
    cfg = _extract_image_config(processor)
    sizes: list[tuple[int, int]] = []
    video_frames: list[tuple[int, tuple[int, int]]] = []
    for item in _iter_items(conversation):
        if _is_image(item):
            size = _image_size(item.get("image"))
            if size is not None:
                sizes.append(size)
        elif _is_video(item):
            frames = item.get("video")
            if isinstance(frames, (list, tuple)) and frames:
                size = _image_size(frames[0])
                if size is not None:
                    video_frames.append((len(frames), size))
    extra = 0
    if sizes:
        counts = _processor_image_tokens(processor, sizes)
        if counts is None and cfg is not None:
            counts = [_tokens_from_config(h, w, cfg) or 1 for h, w in sizes]
        extra += sum(max(0, c - 1) for c in counts or [])
    if video_frames and cfg is not None:
        temporal = cfg.get("temporal_patch_size") or 1
        for n_frames, (h, w) in video_frames:
            per_grid = _tokens_from_config(h, w, cfg) or 1
            extra += max(0, per_grid * math.ceil(n_frames / temporal) - 1)
    return extra


def _count_text_tokens(conversation: list, processor: Any) -> int:
    tok = getattr(processor, "tokenizer", processor)
    renderer = processor if getattr(processor, "chat_template", None) is not None else tok
    text = renderer.apply_chat_template(conversation, tokenize=False)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def _drop_overlong_samples(conversations, processor, max_length):
    """Drop conversations whose estimated token count exceeds *max_length*.

    Estimated count = tokens of the rendered template + :func:`_estimate_media_tokens`. Returns
    ``(filtered_conversations, kept_indices)`` with the original positions that survived (the
    conversations themselves are not copied or changed). Raises ``ValueError`` when every sample is
    dropped (``make_robust_collate`` then re-samples the batch).
    """
    if max_length is None:
        return list(conversations), list(range(len(conversations)))
    kept, kept_indices, lengths = [], [], []
    for i, conversation in enumerate(conversations):
        n = _count_text_tokens(conversation, processor) + _estimate_media_tokens(conversation, processor)
        lengths.append(n)
        if n <= max_length:
            kept.append(conversation)
            kept_indices.append(i)
        else:
            logger.warning("dropping sample %d: estimated %d tokens > max_length=%d", i, n, max_length)
    if not kept:
        raise ValueError(
            f"every sample exceeds max_length={max_length}: estimated lengths {lengths}; nothing left to collate"
        )
    return kept, kept_indices
