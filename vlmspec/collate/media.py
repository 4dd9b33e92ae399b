"""Conversation validation and media extraction shared by every collate."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
_ITEM_TYPES = frozenset({"text", "image", "video", "audio", "image_url", "video_url", "audio_url"})


def _fail(exc_type: type[Exception], sample: int, field: str, why: str) -> Exception:
    return exc_type(f"sample {sample}: field {field!r}: {why}")


def check_max_length(max_length: Any) -> None:
    """``max_length`` must be ``None`` or an int >= 2 (one input and one shifted target)."""
    if max_length is None:
        return
    if not isinstance(max_length, int) or isinstance(max_length, bool):
        raise TypeError(f"max_length must be an int or None, got {type(max_length).__name__}")
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 (one input and one shifted target), got {max_length}")


def check_token_batch(batch: Any, ndim: int | None, what: str = "batch") -> torch.Tensor:
    """Return ``batch["input_ids"]`` after checking it is a tensor (``ndim``-D unless ``ndim`` is None)
    and that ``attention_mask`` (when present) has the same shape; raises naming the field."""
    if not isinstance(batch, Mapping):
        raise TypeError(f"{what} must be a dict of tensors, got {type(batch).__name__}")
    ids = batch.get("input_ids")
    if ids is None:
        raise ValueError(f"{what}: field 'input_ids' is missing")
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{what}: field 'input_ids' must be a torch.Tensor, got {type(ids).__name__}")
    if ndim is not None and ids.ndim != ndim:
        raise ValueError(f"{what}: field 'input_ids' must be {ndim}-D, got shape {tuple(ids.shape)}")
    mask = batch.get("attention_mask")
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != ids.shape):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{what}: field 'attention_mask' has shape {shape} but input_ids has {tuple(ids.shape)}")
    return ids


def _check_text(text: str, sample: int, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: tokenizers reject them with an opaque TypeError
        raise _fail(
            ValueError, sample, where, f"text is not valid Unicode ({exc.reason} at position {exc.start})"
        ) from None


def validate_examples(examples: Any, *, need_conversation: bool = True) -> None:
    """Raise ``TypeError``/``ValueError`` naming the sample index and field for malformed examples.

    Checks structure only (types, roles, item types, existing media paths); never mutates.
    """
    if not isinstance(examples, Sequence) or isinstance(examples, (str, bytes)):
        raise TypeError(f"examples must be a sequence of dicts, got {type(examples).__name__}")
    if len(examples) == 0:
        raise ValueError("empty batch: examples has no samples")
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise TypeError(f"sample {i}: expected a dict with a 'conversation', got {type(example).__name__}")
        if need_conversation:
            validate_conversation(example.get("conversation"), i)


def validate_conversation(conversation: Any, sample: int) -> None:
    if conversation is None:
        raise _fail(ValueError, sample, "conversation", "missing")
    if not isinstance(conversation, (list, tuple)):
        raise _fail(TypeError, sample, "conversation", f"must be a list of messages, got {type(conversation).__name__}")
    if not conversation:
        raise _fail(ValueError, sample, "conversation", "has no messages")
    for m, message in enumerate(conversation):
        where = f"conversation[{m}]"
        if not isinstance(message, dict):
            raise _fail(TypeError, sample, where, f"message must be a dict, got {type(message).__name__}")
        if "role" not in message:
            raise _fail(ValueError, sample, f"{where}.role", "missing")
        if not isinstance(message["role"], str):
            raise _fail(TypeError, sample, f"{where}.role", f"must be str, got {type(message['role']).__name__}")
        if message["role"] not in _ROLES:
            raise _fail(
                ValueError,
                sample,
                f"{where}.role",
                f"unknown role {message['role']!r} (expected one of {sorted(_ROLES)})",
            )
        if "content" not in message:
            raise _fail(ValueError, sample, f"{where}.content", "missing")
        content = message["content"]
        if content is None:
            raise _fail(ValueError, sample, f"{where}.content", "is None (use '' or [] for an empty turn)")
        if isinstance(content, str):
            _check_text(content, sample, f"{where}.content")
            continue
        if not isinstance(content, (list, tuple)):
            raise _fail(
                TypeError, sample, f"{where}.content", f"must be str or list of items, got {type(content).__name__}"
            )
        for k, item in enumerate(content):
            iwhere = f"{where}.content[{k}]"
            if not isinstance(item, dict):
                raise _fail(TypeError, sample, iwhere, f"item must be a dict, got {type(item).__name__}")
            kind = item.get("type")
            if not isinstance(kind, str) or kind not in _ITEM_TYPES:
                raise _fail(
                    ValueError,
                    sample,
                    f"{iwhere}.type",
                    f"unknown item type {kind!r} (expected one of {sorted(_ITEM_TYPES)})",
                )
            if kind == "text":
                if not isinstance(item.get("text"), str):
                    raise _fail(
                        TypeError, sample, f"{iwhere}.text", f"must be str, got {type(item.get('text')).__name__}"
                    )
                _check_text(item["text"], sample, f"{iwhere}.text")
            elif kind in ("image", "video"):
                _validate_media(item.get(kind), sample, f"{iwhere}.{kind}", kind)


def _validate_media(value: Any, sample: int, where: str, kind: str) -> None:
    if value is None:
        raise _fail(ValueError, sample, where, f"{kind} item has no {kind!r} value")
    if isinstance(value, PILImage.Image):
        if value.width == 0 or value.height == 0:
            raise _fail(ValueError, sample, where, f"zero-sized image {value.size}")
        return
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if "://" in text:
            return  # URLs are the processor's business (and need network)
        if not os.path.exists(text):
            raise _fail(ValueError, sample, where, f"{kind} path does not exist: {text}")
        return
    # arrays/tensors are what HF processors take besides PIL and paths; a video may also be a list of frames
    if isinstance(value, (np.ndarray, torch.Tensor)) or (kind == "video" and isinstance(value, (list, tuple))):
        return
    raise _fail(
        TypeError,
        sample,
        where,
        f"{kind} must be a PIL image, a path, an array or a tensor, got {type(value).__name__}",
    )


def _iter_items(conversation):
    for message in conversation:
        content = message.get("content")
        if isinstance(content, list):
            yield from (item for item in content if isinstance(item, dict))


def _is_image(item: dict) -> bool:
    return item.get("type") == "image" or ("image" in item and item.get("type") is None)


def _is_video(item: dict) -> bool:
    return item.get("type") == "video" or ("video" in item and item.get("type") is None)


def _count_media_per_sample(conversations):
    """Number of image and video items in each conversation: ``(n_images, n_videos)``, two lists of ``len(conversations)``."""
    n_images, n_videos = [], []
    for conversation in conversations:
        items = list(_iter_items(conversation))
        n_images.append(sum(_is_image(it) for it in items))
        n_videos.append(sum(_is_video(it) for it in items))
    return n_images, n_videos


def _extract_media_from_conversations(conversations):
    """Images (PIL or path, as given) and videos (paths) in conversation order.

    Returns ``(images or None, videos or None)``: None when the batch has none of that kind, which is
    what HF processors expect.
    """
    images, videos = [], []
    for conversation in conversations:
        for item in _iter_items(conversation):
            if _is_image(item):
                images.append(item.get("image"))
            elif _is_video(item):
                video = item.get("video")
                videos.append(os.fspath(video) if isinstance(video, os.PathLike) else video)
    return images or None, videos or None


def _to_rgb(image: PILImage.Image) -> PILImage.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # composite on white rather than letting the alpha channel be dropped to black
        rgba = image.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def _ensure_rgb(conversations):
    """Return a deep copy of *conversations* with every PIL image converted to RGB.

    RGBA/LA/P-with-transparency are composited on white; 16-bit grayscale is scaled to 8 bits.
    """
    out = copy.deepcopy(conversations)
    for conversation in out:
        for item in _iter_items(conversation):
            if _is_image(item) and isinstance(item.get("image"), PILImage.Image):
                item["image"] = _to_rgb(item["image"])
    return out
