"""SYNTHETIC stand-in processors for families without a buildable real processor (no Hub, no registry vocab).

Every stand-in tokenizes with the REAL Qwen2.5-VL tokenizer from the offline pack plus the family's
documented special tokens (/work/shared/families/<family>/special_tokens.json) added on top; the
token strings and template shapes follow the family records, the ids do not. Where transformers 5.23
ships the family's processor class (Phi4MultimodalProcessor, Qwen3OmniMoeProcessor, Kimi_K25Processor,
NemotronH_Omni_Reasoning_V3Processor) that real class is used with its real image / video / audio
components, configured small so tests stay fast. Kimi-VL, LLaVA-OneVision-1.5 and Nemotron-Parse have
no transformers class: small classes here mimic their remote-code processors.
"""

from __future__ import annotations

import functools
import os
import re
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
    return ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n" + _content(image, video, audio)
            + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


PHI4_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>" + _content("<|image|>", "", "<|audio|>")
                 + "<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
QWEN3_OMNI_TEMPLATE = _im_start_template("<|vision_start|><|image_pad|><|vision_end|>",
                                         "<|vision_start|><|video_pad|><|vision_end|>",
                                         "<|audio_start|><|audio_pad|><|audio_end|>")
NEMOTRON_OMNI_TEMPLATE = _im_start_template("<image>", "<video>", "<so_embedding>")


def kimi_template(media_start: str) -> str:
    image = f"{media_start}image<|media_content|><|media_pad|><|media_end|>"
    return (
        "{% for m in messages %}{% if m['role'] == 'user' %}<|im_user|>user<|im_middle|>"
        "{% elif m['role'] == 'assistant' %}<|im_assistant|>assistant<|im_middle|>"
        "{% else %}<|im_system|>system<|im_middle|>{% endif %}" + _content(image)
        + "<|im_end|>{% endfor %}{% if add_generation_prompt %}<|im_assistant|>assistant<|im_middle|>{% endif %}"
    )


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
        "Phi4MultimodalFeatureExtractor", "Phi4MultimodalImageProcessor", "Phi4MultimodalProcessor")

    tok = qwen_tokenizer({"image_token": "<|image|>", "audio_token": "<|audio|>"},
                         ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"))
    return Phi4MultimodalProcessor(Phi4MultimodalImageProcessor(dynamic_hd=1), Phi4MultimodalFeatureExtractor(), tok,
                                   chat_template=PHI4_TEMPLATE)


@functools.lru_cache(maxsize=1)
def qwen3_omni_processor():
    """Qwen3OmniMoeProcessor (real class): Qwen2-VL image/video processors + Whisper features, small budgets."""
    Qwen2VLImageProcessor, Qwen2VLVideoProcessor, Qwen3OmniMoeProcessor, WhisperFeatureExtractor = _transformers(
        "Qwen2VLImageProcessor", "Qwen2VLVideoProcessor", "Qwen3OmniMoeProcessor", "WhisperFeatureExtractor")

    tok = qwen_tokenizer({"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "audio_token": "<|audio_pad|>",
                          "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
                          "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>"})
    small = {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}
    proc = Qwen3OmniMoeProcessor(Qwen2VLImageProcessor(size=small), Qwen2VLVideoProcessor(size=small),
                                 WhisperFeatureExtractor(), tok, chat_template=QWEN3_OMNI_TEMPLATE)
    proc.videos_kwargs = {"size": small}  # the class default upsizes every frame to 128*32*32 pixels
    return proc


@functools.lru_cache(maxsize=1)
def kimi_k25_processor():
    """Kimi_K25Processor (real class) with its real image processor; <|media_pad|> is the placeholder."""
    Kimi_K25ImageProcessor, Kimi_K25Processor, Qwen2VLVideoProcessor = _transformers(
        "Kimi_K25ImageProcessor", "Kimi_K25Processor", "Qwen2VLVideoProcessor")

    tok = qwen_tokenizer({"image_token": "<|media_pad|>", "video_token": "<|kimi_k25_video_placeholder|>"},
                         ("<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|im_middle|>", "<|media_begin|>",
                          "<|media_content|>", "<|media_end|>"))
    return Kimi_K25Processor(Kimi_K25ImageProcessor(), tok, Qwen2VLVideoProcessor(), chat_template=kimi_template("<|media_begin|>"))


class KimiVLProcessor:
    """Stand-in for Kimi-VL's remote-code processor: expands each ``<|media_pad|>`` to (h/2)*(w/2) copies.

    Images go through transformers' Kimi_K25ImageProcessor (same MoonViT patch-14, 2x2-merge
    arithmetic); the grid is returned as ``image_grid_hws`` ``[N, 2]`` like the remote processor.
    """

    def __init__(self, image_processor: Any, tokenizer: Any, chat_template: str):
        self.image_processor, self.tokenizer, self.chat_template = image_processor, tokenizer, chat_template
        self.image_token = "<|media_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)

    def apply_chat_template(self, conversations, tokenize=False, **kwargs):
        return self.tokenizer.apply_chat_template(conversations, chat_template=self.chat_template, tokenize=tokenize, **kwargs)

    def __call__(self, text=None, images=None, return_tensors="pt", **kwargs):
        flat = []
        for im in images or []:
            flat.extend(im if isinstance(im, (list, tuple)) else [im])
        out: dict[str, Any] = {}
        counts: list[int] = []
        if flat:
            px = self.image_processor(images=flat, return_tensors="pt")
            out["pixel_values"], grid = px["pixel_values"], px["image_grid_thw"][:, 1:]
            out["image_grid_hws"] = grid
            counts = [int(h // 2 * (w // 2)) for h, w in grid.tolist()]
        it = iter(counts)
        texts = [re.sub(re.escape(self.image_token), lambda _: self.image_token * next(it), t) for t in text]
        kwargs.pop("images_kwargs", None)
        enc = self.tokenizer(texts, return_tensors=return_tensors, **kwargs)
        return {**enc, **out}


@functools.lru_cache(maxsize=1)
def kimi_vl_processor() -> KimiVLProcessor:
    (Kimi_K25ImageProcessor,) = _transformers("Kimi_K25ImageProcessor")
    tok = qwen_tokenizer({}, ("<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|im_middle|>", "<|media_start|>",
                              "<|media_content|>", "<|media_pad|>", "<|media_end|>"))
    return KimiVLProcessor(Kimi_K25ImageProcessor(), tok, kimi_template("<|media_start|>"))


def _llava_ov_class():
    from transformers import Qwen2_5_VLProcessor

    class LlavaOnevision1_5Processor(Qwen2_5_VLProcessor):
        """Stand-in for LLaVA-OneVision-1.5's remote processor: Qwen2-VL image processing + Qwen template."""

    return LlavaOnevision1_5Processor


@functools.lru_cache(maxsize=1)
def llava_onevision_processor():
    base = qwen25_processor()
    return _llava_ov_class()(image_processor=base.image_processor, tokenizer=base.tokenizer,
                             video_processor=base.video_processor, chat_template=base.chat_template)


@functools.lru_cache(maxsize=1)
def nemotron_omni_processor():
    """NemotronH_Omni_Reasoning_V3Processor (real class) with its real image/video processors and Parakeet features."""
    NemotronH_Omni_Reasoning_V3Processor, ParakeetFeatureExtractor = _transformers(
        "NemotronH_Omni_Reasoning_V3Processor", "ParakeetFeatureExtractor")
    from transformers.models.nemotron_h_omni.image_processing_nemotron_h_omni import (
        NemotronH_Omni_Reasoning_V3ImageProcessor,
    )
    from transformers.models.nemotron_h_omni.video_processing_nemotron_h_omni import (
        NemotronH_Omni_Reasoning_V3VideoProcessor,
    )

    tok = qwen_tokenizer({}, ("<image>", "<video>", "<so_embedding>", "<so_start>", "<so_end>", "<img>", "</img>"))
    image = NemotronH_Omni_Reasoning_V3ImageProcessor(min_num_patches=16, max_num_patches=64)
    video = NemotronH_Omni_Reasoning_V3VideoProcessor(norm_mean=[0.48, 0.46, 0.41], norm_std=[0.27, 0.26, 0.28],
                                                      video_target_num_patches=16)
    return NemotronH_Omni_Reasoning_V3Processor(image, video, tok, ParakeetFeatureExtractor(),
                                                chat_template=NEMOTRON_OMNI_TEMPLATE)


class _FixedSizeImageProcessor:
    """Resize to a fixed page size and normalize (Nemotron-Parse's encoder takes fixed-size pages)."""

    def __init__(self, size: tuple[int, int] = (32, 32)):
        self.size = size

    def __call__(self, images=None, return_tensors="pt", **kwargs):
        arrays = [np.asarray(im.convert("RGB").resize(self.size[::-1], Image.BICUBIC), dtype=np.float32) / 255.0
                  for im in images]
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
