"""Nemotron-Parse stand-in: fixed-size page images and a plain tokenizer, as the remote processor does.

NVIDIA's remote ``hf_nemotron_parse_processor.py`` (RADIO vision encoder + mBART-style decoder) has no chat
template and no image placeholder tokens: the page image goes to the encoder as ``pixel_values`` (every
page resized to one fixed ``height x width`` and normalized), and the decoder reads a task prompt such as
``</s><s><predict_bbox><predict_classes><output_markdown>`` followed by the page's markup. The processor
returns ``pixel_values`` for images and ``input_ids`` / ``attention_mask`` for text. Written here from
that description (SYNTHETIC); the page size of this pack is small on purpose (see its PROVENANCE.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin
from transformers.image_processing_utils import BaseImageProcessor

from vlmspec.hub import Pack

from . import _pack


class NemotronParseImageProcessor(BaseImageProcessor):
    """SYNTHETIC stand-in: resize every page to ``size`` (bicubic), rescale, normalize -> ``[N, 3, H, W]``."""

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: dict[str, int] | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.size = dict(size or {"height": 2048, "width": 1664})
        self.do_rescale, self.rescale_factor = do_rescale, rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean or (0.5, 0.5, 0.5))
        self.image_std = list(image_std or (0.5, 0.5, 0.5))

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        flat = images if isinstance(images, (list, tuple)) else [images]
        flat = [im for item in flat for im in (item if isinstance(item, (list, tuple)) else [item])]
        pages = []
        for image in flat:
            if not isinstance(image, Image.Image):
                image = Image.fromarray(np.asarray(image))
            image = image.convert("RGB").resize((self.size["width"], self.size["height"]), Image.BICUBIC)
            x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)
            if self.do_rescale:
                x = x * self.rescale_factor
            if self.do_normalize:
                x = (x - torch.tensor(self.image_mean).view(3, 1, 1)) / torch.tensor(self.image_std).view(3, 1, 1)
            pages.append(x)
        return BatchFeature({"pixel_values": torch.stack(pages)}, tensor_type=return_tensors)


class NemotronParseProcessor(ProcessorMixin):
    """SYNTHETIC stand-in for NVIDIA's remote ``NemotronParseProcessor`` (no chat template)."""

    def __init__(
        self, image_processor: NemotronParseImageProcessor = None, tokenizer: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(image_processor, tokenizer)

    def __call__(
        self, images: Any = None, text: Any = None, return_tensors: str | None = "pt", **kwargs: Any
    ) -> BatchFeature:
        out: dict[str, Any] = {}
        if images is not None:
            out.update(self.image_processor(images, return_tensors="pt"))
        if text is not None:
            kwargs.pop("images_kwargs", None)
            kwargs.pop("text_kwargs", None)
            out.update(self.tokenizer(text, return_tensors=return_tensors, **kwargs))
        return BatchFeature(out, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def build(pack: Pack) -> NemotronParseProcessor:
    config = _pack.json_file(pack, "preprocessor_config.json")
    image = NemotronParseImageProcessor(
        **{k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class")}
    )
    return NemotronParseProcessor(image_processor=image, tokenizer=_pack.tokenizer(pack))
