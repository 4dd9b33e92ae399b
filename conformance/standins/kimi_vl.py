"""Kimi-VL stand-in: MoonViT image processing and ``<|media_pad|>`` expansion, as the remote processor does.

Moonshot's remote ``KimiVLImageProcessor`` (patch 14, 2x2 merge kernel, ``in_token_limit`` patches):

1. an image with more than ``in_token_limit`` patches is scaled down by ``sqrt(limit / patches)``;
2. it is padded on the right and bottom to a multiple of ``patch * merge`` (``pad_input``);
3. it is normalized and cut into ``[n_patches, 3, patch, patch]`` rows, with ``image_grid_hws``
   ``[h / patch, w / patch]`` per image.

The remote ``KimiVLProcessor`` replaces each ``<|media_pad|>`` of the text with
``(h / merge_h) * (w / merge_w)`` copies and returns ``input_ids``, ``attention_mask``,
``pixel_values`` and ``image_grid_hws``. Written here from that description (SYNTHETIC).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin
from transformers.image_processing_utils import BaseImageProcessor

from vlmspec.hub import Pack

from . import _pack


class KimiVLImageProcessor(BaseImageProcessor):
    """SYNTHETIC stand-in for the remote ``KimiVLImageProcessor`` (MoonViT patchify, no Hub code)."""

    model_input_names = ["pixel_values", "image_grid_hws"]

    def __init__(
        self,
        patch_size: int = 14,
        merge_kernel_size: tuple[int, int] | list[int] = (2, 2),
        in_token_limit: int = 4096,
        pad_input: bool = True,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.merge_kernel_size = list(merge_kernel_size)
        self.in_token_limit = in_token_limit
        self.pad_input = pad_input
        self.image_mean = list(image_mean or (0.5, 0.5, 0.5))
        self.image_std = list(image_std or (0.5, 0.5, 0.5))

    def _resize_and_fit(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        p = self.patch_size
        if (w // p) * (h // p) > self.in_token_limit:
            scale = math.sqrt(self.in_token_limit / ((w // p) * (h // p)))
            w, h = int(w * scale), int(h * scale)
            image = image.resize((w, h), Image.BICUBIC)
        mh, mw = self.merge_kernel_size
        fh, fw = mh * p, mw * p
        if self.pad_input:
            new_h, new_w = -(-h // fh) * fh, -(-w // fw) * fw
            canvas = Image.new("RGB", (new_w, new_h), (0, 0, 0))
            canvas.paste(image, (0, 0))
            return canvas
        return image.crop((0, 0, w - w % fw, h - h % fh))

    def _patchify(self, image: Image.Image) -> tuple[torch.Tensor, list[int]]:
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)  # [3, H, W]
        mean = torch.tensor(self.image_mean).view(3, 1, 1)
        std = torch.tensor(self.image_std).view(3, 1, 1)
        x = (x - mean) / std
        p = self.patch_size
        gh, gw = x.shape[1] // p, x.shape[2] // p
        patches = x.reshape(3, gh, p, gw, p).permute(1, 3, 0, 2, 4).reshape(gh * gw, 3, p, p)
        return patches, [gh, gw]

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        flat = images if isinstance(images, (list, tuple)) else [images]
        flat = [im for item in flat for im in (item if isinstance(item, (list, tuple)) else [item])]
        pixels, grids = [], []
        for image in flat:
            if not isinstance(image, Image.Image):
                image = Image.fromarray(np.asarray(image))
            patches, grid = self._patchify(self._resize_and_fit(image.convert("RGB")))
            pixels.append(patches)
            grids.append(grid)
        return BatchFeature(
            {"pixel_values": torch.cat(pixels), "image_grid_hws": torch.tensor(grids, dtype=torch.long)},
            tensor_type=return_tensors,
        )


class KimiVLProcessor(ProcessorMixin):
    """SYNTHETIC stand-in for Moonshot's remote ``KimiVLProcessor``."""

    def __init__(
        self,
        image_processor: KimiVLImageProcessor = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.image_token = "<|media_pad|>"
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)

    def __call__(
        self, images: Any = None, text: Any = None, return_tensors: str | None = "pt", **kwargs: Any
    ) -> BatchFeature:
        texts = [text] if isinstance(text, str) else list(text or [])
        media: dict[str, Any] = {}
        counts: list[int] = []
        if images is not None:
            media = dict(self.image_processor(images, return_tensors="pt"))
            mh, mw = self.image_processor.merge_kernel_size
            counts = [(h // mh) * (w // mw) for h, w in media["image_grid_hws"].tolist()]
        n_placeholders = sum(t.count(self.image_token) for t in texts)
        if n_placeholders != len(counts):
            raise ValueError(f"{n_placeholders} {self.image_token} placeholders in the text but {len(counts)} images")
        it = iter(counts)
        expanded = []
        for t in texts:
            parts = t.split(self.image_token)
            expanded.append(parts[0] + "".join(self.image_token * next(it) + rest for rest in parts[1:]))
        kwargs.pop("images_kwargs", None)
        kwargs.pop("text_kwargs", None)
        enc = self.tokenizer(expanded, return_tensors=return_tensors, **kwargs)
        return BatchFeature({**enc, **media}, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "image_grid_hws"]


def build(pack: Pack) -> KimiVLProcessor:
    config = _pack.json_file(pack, "preprocessor_config.json")
    image = KimiVLImageProcessor(
        **{k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class")}
    )
    return KimiVLProcessor(
        image_processor=image, tokenizer=_pack.tokenizer(pack), chat_template=_pack.chat_template(pack)
    )
