"""NVIDIA Nemotron collates: Nemotron omni (image / video / audio) and Nemotron-Parse (no chat template)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .audio import audio_sampling_rate, extract_audio
from .batching import chat_template_collate, pad_to_length, pad_token_id
from .default import finalize_media, prepare_conversations, shift_for_next_token, warn_unsupervised
from .labels import IGNORE_INDEX, _extract_assistant_text
from .media import _extract_media_from_conversations, _is_video, _iter_items


def _subsample(frames: Sequence[Any], limit: int) -> list:
    if len(frames) <= limit:
        return list(frames)
    keep = np.unique(np.linspace(0, len(frames) - 1, limit).round().astype(int))
    return [frames[i] for i in keep]


def nemotron_omni_collate_fn(
    examples: Sequence[dict[str, Any]],
    processor: Any,
    max_length: int | None = None,
    max_video_frames: int = 8,
) -> dict[str, torch.Tensor]:
    """Collate for Nemotron omni (image / video / audio).

    The processor expands ``<image>`` / ``<video>`` / ``<so_embedding>`` itself; the collate gathers
    media into processor kwargs (audio decoded to the feature extractor's rate; a video given as a
    list of frames keeps at most *max_video_frames*, evenly spaced; a video file is sampled to that
    many frames by the video processor), runs the processor per sample (it cannot batch video), pads,
    builds labels and stacks. max_length: rows are cut after tokenization, ``ValueError`` naming the
    sample when its prompt does not fit or an image/audio run would be split.

    Returns ``input_ids, attention_mask, labels: [B, L-1]`` (labels -100 = ignore, already shifted),
    ``pixel_values`` / ``pixel_values_videos`` (bf16), ``image_grid_hw``, ``input_features`` /
    ``input_features_mask`` (clips zero-padded to the longest), ``n_images_per_sample`` /
    ``n_videos_per_sample: [B]`` when present.
    """
    if isinstance(max_video_frames, bool) or not isinstance(max_video_frames, int) or max_video_frames < 1:
        raise ValueError(f"max_video_frames must be a positive int, got {max_video_frames!r}")
    rate = audio_sampling_rate(processor)

    def prepare(conversations: list) -> list[dict[str, Any]]:
        per_sample = []
        for conversation, clips in zip(conversations, extract_audio(conversations, rate)):
            extra: dict[str, Any] = {"audio": clips} if clips else {}
            for item in _iter_items(conversation):
                if not _is_video(item):
                    continue
                if isinstance(item.get("video"), (list, tuple)):
                    item["video"] = _subsample(item["video"], max_video_frames)
                else:
                    extra.update(do_sample_frames=True, num_frames=max_video_frames)
            per_sample.append(extra)
        return per_sample

    return chat_template_collate(examples, processor, max_length=max_length, per_sample=True, prepare=prepare)


_NEMOTRON_PARSE_PROMPT = "</s><s><predict_bbox><predict_classes><output_markdown>"


def _parse_inputs(conversation: list, sample: int) -> tuple[Any, str]:
    images = _extract_media_from_conversations([conversation])[0] or []
    if len(images) != 1:
        raise ValueError(f"sample {sample}: Nemotron-Parse reads exactly one page image per sample, got {len(images)}")
    answer = "".join(_extract_assistant_text(m) for m in conversation if m.get("role") == "assistant")
    if not answer:
        raise ValueError(f"sample {sample}: field 'conversation': no assistant text to supervise")
    return images[0], answer


def nemotron_parse_collate_fn(
    examples: Sequence[dict[str, Any]],
    processor: Any,
    task_prompt: str = _NEMOTRON_PARSE_PROMPT,
) -> dict[str, torch.Tensor]:
    """Collate for NVIDIA Nemotron-Parse (image encoder + text decoder, no chat template).

    Each sample's decoder sequence is ``task_prompt + answer + eos``, tokenized piecewise so the
    boundary is exact; the prompt tokens are masked and the answer plus eos are supervised. The page
    image (exactly one per sample; the assistant text is the answer) goes through the processor's
    image processor.

    Returns ``input_ids, attention_mask, labels: [B, L-1]`` (labels -100 = ignore, already shifted),
    ``pixel_values`` (bf16) and ``n_images_per_sample: [B]``.
    """
    conversations, _ = prepare_conversations(examples)
    tok = getattr(processor, "tokenizer", processor)
    prompt = list(tok(task_prompt, add_special_tokens=False)["input_ids"]) if task_prompt else []
    eos = getattr(tok, "eos_token_id", None)
    ids_rows, label_rows, images = [], [], []
    for s, conversation in enumerate(conversations):
        image, answer = _parse_inputs(conversation, s)
        target = list(tok(answer, add_special_tokens=False)["input_ids"])
        if eos is not None and (not target or target[-1] != eos):
            target.append(eos)
        ids_rows.append(torch.tensor(prompt + target, dtype=torch.long))
        label_rows.append(torch.tensor([IGNORE_INDEX] * len(prompt) + target, dtype=torch.long))
        images.append(image)
    length = max(r.numel() for r in ids_rows)
    batch: dict[str, Any] = {
        "input_ids": pad_to_length(ids_rows, length, pad_token_id(processor)),
        "attention_mask": pad_to_length([torch.ones_like(r) for r in ids_rows], length, 0),
    }
    labels = pad_to_length(label_rows, length, IGNORE_INDEX)
    ip = getattr(processor, "image_processor", None)
    pixels = ip(images=images, return_tensors="pt") if ip is not None else processor(images=images, return_tensors="pt")
    batch.update({k: v for k, v in dict(pixels).items() if k not in batch})
    warn_unsupervised(labels, conversations)
    batch = shift_for_next_token(batch, labels)
    return finalize_media(batch, conversations)
