"""Processors for the family collate tests.

Families registered in the conformance suite come from their packs, exactly as conformance loads
them (:func:`registry_processor`; the SYNTHETIC stand-ins live in ``conformance/standins/``). The
families not registered yet get quick stand-ins here: the REAL Qwen2.5-VL tokenizer from its offline
pack plus the family's documented special tokens, with the family's real transformers processor class
where 5.23 has one (Phi4MultimodalProcessor, Qwen3OmniMoeProcessor). Token strings and template shapes
follow the family records; the ids do not.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QWEN25 = "Qwen/Qwen2.5-VL-3B-Instruct"


def _content(image: str, video: str = "", audio: str = "") -> str:
    """Jinja snippet rendering a message's content (string or items) with the given placeholders."""
    return (
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        f"{{% if c['type'] == 'image' %}}{image}"
        f"{{% elif c['type'] == 'video' %}}{video}"
        f"{{% elif c['type'] == 'audio' %}}{audio}"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    )


def _im_start_template(image: str, video: str = "", audio: str = "") -> str:
    return (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        + _content(image, video, audio)
        + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


PHI4_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>"
    + _content("<|image|>", "", "<|audio|>")
    + "<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
QWEN3_OMNI_TEMPLATE = _im_start_template(
    "<|vision_start|><|image_pad|><|vision_end|>",
    "<|vision_start|><|video_pad|><|vision_end|>",
    "<|audio_start|><|audio_pad|><|audio_end|>",
)
NEMOTRON_OMNI_TEMPLATE = _im_start_template("<image>", "<video>", "<so_embedding>")


def _transformers(*names: str) -> list:
    """transformers classes by name; skips the calling test on a transformers line that lacks one."""
    import transformers

    missing = [n for n in names if not hasattr(transformers, n)]
    if missing:
        pytest.skip(f"transformers {transformers.__version__} has no {', '.join(missing)}")
    return [getattr(transformers, n) for n in names]


@functools.lru_cache(maxsize=1)
def _pack_dir() -> str:
    from vlmspec.hub import materialize

    return str(materialize(QWEN25).cache_dir)


def qwen_tokenizer(extra: dict[str, str] | None = None, added: tuple[str, ...] = (), **kwargs: Any):
    """A fresh copy of the real Qwen2.5-VL tokenizer with named extra special tokens and added tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(QWEN25, cache_dir=_pack_dir(), extra_special_tokens=extra or {}, **kwargs)
    if added:
        tok.add_special_tokens({"additional_special_tokens": list(added)})
    return tok


@functools.lru_cache(maxsize=1)
def qwen25_processor():
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(QWEN25, cache_dir=_pack_dir())


@functools.lru_cache(maxsize=1)
def phi4_processor():
    """Phi4MultimodalProcessor (real class, real image processor and audio feature extractor)."""
    Phi4MultimodalFeatureExtractor, Phi4MultimodalImageProcessor, Phi4MultimodalProcessor = _transformers(
        "Phi4MultimodalFeatureExtractor", "Phi4MultimodalImageProcessor", "Phi4MultimodalProcessor"
    )

    tok = qwen_tokenizer(
        {"image_token": "<|image|>", "audio_token": "<|audio|>"}, ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
    )
    return Phi4MultimodalProcessor(
        Phi4MultimodalImageProcessor(dynamic_hd=1), Phi4MultimodalFeatureExtractor(), tok, chat_template=PHI4_TEMPLATE
    )


@functools.lru_cache(maxsize=1)
def qwen3_omni_processor():
    """Qwen3OmniMoeProcessor (real class): Qwen2-VL image/video processors + Whisper features, small budgets."""
    Qwen2VLImageProcessor, Qwen2VLVideoProcessor, Qwen3OmniMoeProcessor, WhisperFeatureExtractor = _transformers(
        "Qwen2VLImageProcessor", "Qwen2VLVideoProcessor", "Qwen3OmniMoeProcessor", "WhisperFeatureExtractor"
    )

    tok = qwen_tokenizer(
        {
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "audio_token": "<|audio_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
            "audio_bos_token": "<|audio_start|>",
            "audio_eos_token": "<|audio_end|>",
        }
    )
    small = {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}
    proc = Qwen3OmniMoeProcessor(
        Qwen2VLImageProcessor(size=small),
        Qwen2VLVideoProcessor(size=small),
        WhisperFeatureExtractor(),
        tok,
        chat_template=QWEN3_OMNI_TEMPLATE,
    )
    proc.videos_kwargs = {"size": small}  # the class default upsizes every frame to 128*32*32 pixels
    return proc


def registry_processor(model_id: str):
    """The conformance registry's processor for ``model_id``, built from its pack (fixtures/packs/)."""
    from conformance.loading import load_processor

    return load_processor(model_id)


def kimi_k25_processor():
    return registry_processor("moonshotai/Kimi-K2.5")


def kimi_vl_processor():
    return registry_processor("moonshotai/Kimi-VL-A3B-Instruct")


def llava_onevision_processor():
    return registry_processor("lmms-lab/LLaVA-OneVision-1.5-8B-Instruct")


def nemotron_omni_processor():
    return registry_processor("nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16")


class _FixedSizeImageProcessor:
    """Resize to a fixed page size and normalize (Nemotron-Parse's encoder takes fixed-size pages)."""

    def __init__(self, size: tuple[int, int] = (32, 32)):
        self.size = size

    def __call__(self, images=None, return_tensors="pt", **kwargs):
        arrays = [
            np.asarray(im.convert("RGB").resize(self.size[::-1], Image.BICUBIC), dtype=np.float32) / 255.0
            for im in images
        ]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return {"pixel_values": (pixels - 0.5) / 0.5}


class NemotronParseProcessor:
    """Stand-in for Nemotron-Parse's remote processor: no chat template, mBART-style </s>/<s> task prompt."""

    def __init__(self, image_processor: Any, tokenizer: Any):
        self.image_processor, self.tokenizer = image_processor, tokenizer

    def __call__(self, images=None, text=None, return_tensors="pt", **kwargs):
        out = dict(self.image_processor(images=images, return_tensors=return_tensors)) if images is not None else {}
        if text is not None:
            out.update(self.tokenizer(text, return_tensors=return_tensors, **kwargs))
        return out


@functools.lru_cache(maxsize=1)
def nemotron_parse_processor() -> NemotronParseProcessor:
    tok = qwen_tokenizer({}, ("</s>", "<s>", "<predict_bbox>", "<predict_classes>", "<output_markdown>"))
    tok.eos_token = "</s>"
    return NemotronParseProcessor(_FixedSizeImageProcessor(), tok)


def image(w: int = 56, h: int = 56, color: tuple[int, int, int] = (10, 20, 30)) -> Image.Image:
    return Image.new("RGB", (w, h), color)


def tone(seconds: float = 0.5, rate: int = 16000, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_wav(path, data: np.ndarray, rate: int = 16000) -> str:
    import wave

    pcm = (np.clip(data, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return str(path)
