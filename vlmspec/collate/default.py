"""The default VLM collate and the shared steps every chat-template collate runs.

Output contract (SPEC "Collate output"): a dict of tensors, every token tensor ``[B, L-1]``;
``labels: [B, L-1], -100 = ignore, already shifted`` (``labels[:, t]`` is the target for
``input_ids[:, t]``); ``pixel_values`` / ``pixel_values_videos`` in bfloat16;
``n_images_per_sample`` / ``n_videos_per_sample`` / ``n_audios_per_sample`` (long ``[B]``) when any
sample has that media.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image as PILImage

from ..fake_image import _get_vision_token_ids, mask_fake_vision_tokens_batch
from ..pp.chunking import AUDIO_FEATURE_KEYS
from .audio import audio_sampling_rate, count_audio_per_sample, extract_audio
from .labels import IGNORE_INDEX, _tokenizer_of, build_labels_from_template, resolve_turn_markers
from .media import (
    _count_media_per_sample,
    _ensure_rgb,
    _extract_media_from_conversations,
    _is_image,
    _iter_items,
    check_max_length,
    validate_examples,
)

logger = logging.getLogger("vlmspec.collate_fns")

_FLOAT_MEDIA_KEYS = ("pixel_values", "pixel_values_videos")


def load_image_paths(conversations: list, *, sample_offset: int = 0) -> None:
    """Replace image paths by decoded PIL images in place (on the caller's copy).

    Decoding here, instead of inside the image processor, gives errors that name the sample and
    field for missing, truncated or undecodable files.
    """
    for s, conversation in enumerate(conversations):
        for item in _iter_items(conversation):
            value = item.get("image")
            if not _is_image(item) or not isinstance(value, (str, os.PathLike)) or "://" in os.fspath(value):
                continue
            try:
                with PILImage.open(value) as img:
                    img.load()
                    item["image"] = img.copy()
            except Exception as exc:
                raise ValueError(
                    f"sample {s + sample_offset}: field 'image': cannot decode {os.fspath(value)}: {exc}"
                ) from exc


def prepare_conversations(examples: Sequence[dict[str, Any]]) -> tuple[list, list[int]]:
    """Validated deep copies of the conversations (RGB, images decoded) and the fake-image sample indices."""
    validate_examples(examples)
    conversations = [copy.deepcopy(list(ex["conversation"])) for ex in examples]
    load_image_paths(conversations)
    conversations = _ensure_rgb(conversations)
    fake = [i for i, ex in enumerate(examples) if ex.get("_injected_fake")]
    return conversations, fake


def tokenize_conversations(
    conversations: list, processor: Any, max_length: int | None = None, *, sample_offset: int = 0, **proc_kwargs: Any
) -> dict[str, torch.Tensor]:
    """Render with the processor's chat template and run the processor: ``input_ids: [B, L]`` etc.

    A processor failure is re-raised as ``ValueError`` naming the sample (``sample_offset`` + row) it
    failed on, found by re-running the samples one at a time.
    """
    check_max_length(max_length)
    if not callable(getattr(processor, "apply_chat_template", None)):
        raise TypeError(
            f"processor must have apply_chat_template (a Hugging Face processor), got {type(processor).__name__}"
        )
    # A processor that lost its chat template on load (transformers 5.23 Phi4MultimodalProcessor takes no
    # chat_template argument) still has the family's template on its tokenizer: render with whichever has it.
    tok = getattr(processor, "tokenizer", None)
    renderer = (
        tok
        if getattr(processor, "chat_template", None) is None and getattr(tok, "chat_template", None) is not None
        else processor
    )
    texts = renderer.apply_chat_template(conversations, tokenize=False)
    if isinstance(texts, str):
        texts = [texts]
    images, videos = _extract_media_from_conversations(conversations)
    # The rendered template already carries BOS/special tokens; adding them again doubles BOS (Gemma).
    kwargs: dict[str, Any] = {
        "text": texts,
        "padding": True,
        "return_tensors": "pt",
        "add_special_tokens": False,
        **proc_kwargs,
    }
    if images is not None:
        # Nested per sample: batched processors (Gemma) need to know which sample owns which image.
        kwargs["images"] = [_extract_media_from_conversations([conv])[0] or [] for conv in conversations]
    if videos is not None:
        kwargs["videos"] = videos
    if "audio" not in kwargs:
        # audio items go to the processor too (decoded at its feature extractor's rate, in conversation
        # order): its template renders an audio placeholder it must expand (Gemma 4's <|audio|>)
        clips = [c for sample in extract_audio(conversations, audio_sampling_rate(processor)) for c in sample]
        if clips:
            kwargs["audio"] = clips
    if max_length is not None:
        kwargs.update(truncation=True, max_length=max_length)
    try:
        return dict(processor(**kwargs))
    except Exception as exc:  # the processor's own errors (ValueError, ZeroDivisionError, ...) name no sample
        hint = (
            (
                f" (with max_length={max_length} truncation may have cut media tokens; pass drop_overlong=True "
                "to drop overlong samples instead)"
            )
            if max_length is not None
            else ""
        )
        # batch-wide media lists in proc_kwargs (audio clips) cannot be split back per sample
        if len(conversations) > 1 and not any(isinstance(v, (list, tuple)) for v in proc_kwargs.values()):
            for i, conversation in enumerate(conversations):
                tokenize_conversations([conversation], processor, max_length, sample_offset=sample_offset + i)
        where = (
            f"sample {sample_offset}"
            if len(conversations) == 1
            else f"samples {sample_offset}..{sample_offset + len(conversations) - 1}"
        )
        raise ValueError(
            f"{where}: field 'conversation': {type(processor).__name__} failed on it{hint}: {type(exc).__name__}: {exc}"
        ) from exc


def warn_unsupervised(
    labels: torch.Tensor, conversations: Sequence[Sequence[dict]], sample_ids: Sequence[int] | None = None
) -> list[int]:
    """Log a warning for every sample that has an assistant turn but no supervised label. Returns their indices."""
    bad = []
    for row, conversation in enumerate(conversations):
        has_assistant = any(m.get("role") == "assistant" for m in conversation)
        if has_assistant and not bool((labels[row] != IGNORE_INDEX).any()):
            sid = sample_ids[row] if sample_ids is not None else row
            bad.append(sid)
            logger.warning("sample %d has an assistant turn but zero supervised tokens (loss would be nan)", sid)
    return bad


def shift_for_next_token(batch: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """``labels[:, 1:]``, and drop the last position of every tensor shaped like ``input_ids``."""
    shape = batch["input_ids"].shape
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.shape == shape and key not in _FLOAT_MEDIA_KEYS:
            out[key] = value[:, :-1]
        else:
            out[key] = value
    out["labels"] = labels[:, 1:]
    return out


def finalize_media(
    batch: dict[str, torch.Tensor], conversations: Sequence[Sequence[dict]], n_audios: Sequence[int] | None = None
) -> dict[str, torch.Tensor]:
    """bf16 pixels and the per-sample media counts PP chunking needs.

    ``n_audios_per_sample`` (default: the audio items of each conversation; ``n_audios`` overrides it,
    e.g. when each video brings its own audio track) is set only when it accounts for every row of the
    batch's audio features: a processor that cuts a long clip into several rows makes the per-item count
    wrong for PP, and a wrong count would route clips to the wrong microbatch.
    """
    for key in _FLOAT_MEDIA_KEYS:
        if isinstance(batch.get(key), torch.Tensor):
            batch[key] = batch[key].to(torch.bfloat16)
    n_images, n_videos = _count_media_per_sample(conversations)
    if any(n_images):
        batch["n_images_per_sample"] = torch.tensor(n_images, dtype=torch.long)
    if any(n_videos):
        batch["n_videos_per_sample"] = torch.tensor(n_videos, dtype=torch.long)
    n_audios = list(n_audios) if n_audios is not None else count_audio_per_sample(conversations)
    features = next((batch[k] for k in AUDIO_FEATURE_KEYS if isinstance(batch.get(k), torch.Tensor)), None)
    if any(n_audios) and features is not None and features.shape[0] == sum(n_audios):
        batch["n_audios_per_sample"] = torch.tensor(n_audios, dtype=torch.long)
    return batch


def reject_typed_turn_markers(
    conversations: Sequence[Sequence[dict]], processor: Any, sample_ids: Sequence[int] | None = None
) -> None:
    """``ValueError`` when a system/user text contains the template's assistant turn marker
    (e.g. ``<|im_start|>assistant\n``): tokenized as the special marker, it would open an assistant
    turn inside the prompt, and label building would supervise the prompt text after it."""
    markers = resolve_turn_markers(processor)
    marker = _tokenizer_of(processor).decode(markers[0]) if markers is not None else ""
    if not marker.strip():
        return
    for row, conversation in enumerate(conversations):
        for m, message in enumerate(conversation):
            if message.get("role") == "assistant":
                continue
            content = message.get("content")
            texts = (
                [("content", content)]
                if isinstance(content, str)
                else [
                    (f"content[{k}].text", item.get("text"))
                    for k, item in enumerate(content or [])
                    if isinstance(item, dict)
                ]
            )
            for where, text in texts:
                if isinstance(text, str) and marker in text:
                    sid = sample_ids[row] if sample_ids is not None else row
                    raise ValueError(
                        f"sample {sid}: field 'conversation[{m}].{where}': contains the assistant turn marker "
                        f"{marker!r}, which would make the prompt after it supervised; remove or escape it"
                    )


def collate_tokenized(
    batch: dict[str, torch.Tensor],
    conversations: list,
    processor: Any,
    fake_indices: Sequence[int],
    sample_ids: Sequence[int] | None = None,
    n_audios: Sequence[int] | None = None,
) -> dict[str, torch.Tensor]:
    """Labels, fake-image masking, shift and media finishing for an already tokenized batch
    (``n_audios``: audio clips per sample, see :func:`finalize_media`)."""
    reject_typed_turn_markers(conversations, processor, sample_ids)
    labels = build_labels_from_template(batch["input_ids"], conversations, processor)
    if "attention_mask" in batch:
        labels = labels.masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
    vision_ids = _get_vision_token_ids(processor)
    if vision_ids:  # a vision token is never a target, not even one typed in an answer
        vision = torch.tensor(sorted(vision_ids), dtype=batch["input_ids"].dtype)
        labels = labels.masked_fill(torch.isin(batch["input_ids"], vision), IGNORE_INDEX)
    if fake_indices:
        batch["labels"] = labels
        batch = mask_fake_vision_tokens_batch(batch, processor, fake_indices)
        labels = batch.pop("labels")
    warn_unsupervised(labels, conversations, sample_ids)
    batch = shift_for_next_token(batch, labels)
    return finalize_media(batch, conversations, n_audios)


def default_collate_fn(
    examples: Sequence[dict[str, Any]],
    processor: Any,
    max_length: int | None = None,
    drop_overlong: bool = False,
    _post_tokenize_hook: Callable[[dict, Any], dict] | None = None,
) -> dict[str, torch.Tensor]:
    """Default collate for multimodal VLM datasets.

    examples: ``[{"conversation": [...], "_injected_fake"?: bool}, ...]`` (never mutated).
    Returns ``input_ids, attention_mask, labels: [B, L-1]`` (labels -100 = ignore, already shifted),
    the processor's media tensors (pixels in bf16) and ``n_images_per_sample`` /
    ``n_videos_per_sample: [B]`` when present. Samples flagged ``_injected_fake`` get
    ``attention_mask = 0`` and ``labels = -100`` at every vision token.

    max_length: truncate to this many tokens; with ``drop_overlong`` samples whose estimated length
    exceeds it are dropped instead (``ValueError`` if all are).
    _post_tokenize_hook: ``(batch, processor) -> batch`` run after tokenization, before labels
    (e.g. Gemma 4's thinking-prefix injection).
    """
    conversations, fake = prepare_conversations(examples)
    sample_ids = list(range(len(conversations)))
    if drop_overlong and max_length is not None:
        from .overlong import _drop_overlong_samples

        conversations, sample_ids = _drop_overlong_samples(conversations, processor, max_length)
        fake = [new for new, old in enumerate(sample_ids) if old in set(fake)]
    batch = tokenize_conversations(conversations, processor, max_length=max_length)
    if _post_tokenize_hook is not None:
        batch = dict(_post_tokenize_hook(batch, processor))
    return collate_tokenized(batch, conversations, processor, fake, sample_ids)


def qwen2_5_collate_fn(examples: list, processor: Any) -> dict[str, torch.Tensor]:
    """Collate for Qwen2.5-VL: the default pipeline (``<|im_start|>`` marker fast path).

    Same output contract as :func:`default_collate_fn`, including ``image_grid_thw: [N_img, 3]``.
    """
    return default_collate_fn(examples, processor)
