"""LLaVA-OneVision-1.5 stand-in: its remote processor is Qwen2-VL image processing + the Qwen template.

The real processor (remote code) patchifies with patch 14 / merge 2 and expands each
``<|image_pad|>`` to ``t*h*w / merge**2`` copies, exactly like transformers' Qwen2.5-VL processor;
so the stand-in is that class under the remote class's name, built from the pack's files.
"""

from __future__ import annotations

from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

from vlmspec.hub import Pack

from . import _pack


class LlavaOnevision1_5Processor(Qwen2_5_VLProcessor):
    """SYNTHETIC stand-in for lmms-lab's remote ``LlavaOnevision1_5Processor``."""


def build(pack: Pack) -> LlavaOnevision1_5Processor:
    config = _pack.json_file(pack, "preprocessor_config.json")
    image = Qwen2VLImageProcessor(
        **{k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class")}
    )
    video = Qwen2VLVideoProcessor(
        patch_size=image.patch_size, merge_size=image.merge_size, temporal_patch_size=image.temporal_patch_size
    )
    return LlavaOnevision1_5Processor(
        image_processor=image,
        tokenizer=_pack.tokenizer(pack),
        video_processor=video,
        chat_template=_pack.chat_template(pack),
    )
