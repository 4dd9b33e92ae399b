"""Phi-4-multimodal collate: ``<|user|>...<|end|><|assistant|>...<|end|>`` with audio (and image) items."""

from __future__ import annotations

from typing import Any

import torch

from .audio import audio_kwargs_per_sample, audio_sampling_rate
from .batching import chat_template_collate

# Phi-4-MM names its image pixels differently; they follow the bf16 pixel convention too.
_PHI4_PIXEL_KEYS = ("image_pixel_values",)


def phi4_mm_collate_fn(examples, processor):
    """Collate for Phi-4-multimodal with audio input (images work too).

    Audio items are decoded to mono at the feature extractor's rate (16 kHz) and passed as
    ``audio``; the processor expands each ``<|audio|>`` / ``<|image|>`` placeholder. Supervised: each
    assistant reply and its ``<|end|>``. Missing or undecodable audio raises ``ValueError`` naming the
    sample and field.

    Returns ``input_ids, attention_mask, labels: [B, L-1]`` (labels -100 = ignore, already shifted),
    ``audio_input_features`` / ``audio_embed_sizes`` (and ``audio_attention_mask`` for several clips),
    image tensors with ``image_pixel_values`` in bf16, ``n_images_per_sample: [B]`` when present.
    """
    has_audio_fe = (
        getattr(processor, "audio_processor", None) is not None
        or getattr(processor, "feature_extractor", None) is not None
    )
    kwargs: dict[str, Any] = {"sampling_rate": audio_sampling_rate(processor)} if has_audio_fe else {}
    batch = chat_template_collate(examples, processor, prepare=audio_kwargs_per_sample(processor), **kwargs)
    for key in _PHI4_PIXEL_KEYS:
        if isinstance(batch.get(key), torch.Tensor):
            batch[key] = batch[key].to(torch.bfloat16)
    return batch
