"""Hooks into transformers: Auto-class registration and a multi-device ``device_map``."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, PreTrainedConfig

from .bidirectional import LlamaBidirectionalModel
from .config import LlamaBidirectionalConfig, LlamaNemotronVLConfig
from .model import LlamaNemotronVLModel

__all__ = ["_register_with_hf_auto_classes", "split_model"]


def _register_with_hf_auto_classes() -> None:
    """Register bidirectional models with HuggingFace Auto classes.

    This is needed so that AutoModel.from_config(LlamaBidirectionalConfig)
    works inside LlamaForSequenceClassification.__init__.

    Registers ``llama_bidirec`` -> (:class:`LlamaBidirectionalConfig`, :class:`LlamaBidirectionalModel`)
    and ``llama_nemotron_vl`` -> (:class:`LlamaNemotronVLConfig`, :class:`LlamaNemotronVLModel`).
    Idempotent.
    """
    for config_cls, model_cls in (
        (LlamaBidirectionalConfig, LlamaBidirectionalModel),
        (LlamaNemotronVLConfig, LlamaNemotronVLModel),
    ):
        AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
        AutoModel.register(config_cls, model_cls, exist_ok=True)


def _resolve_devices(device: Any) -> list:
    if isinstance(device, (list, tuple)):
        if not device:
            raise ValueError("device list is empty")
        return list(device)
    if isinstance(device, int):
        if device < 1:
            raise ValueError(f"device count must be >= 1, got {device}")
        return list(range(device))
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        count = torch.cuda.device_count()
        return list(range(count)) if count else ["cpu"]
    return [dev.index if dev.type == "cuda" else str(dev)]


def _layer_owners(num_layers: int, n_devices: int) -> list[int]:
    """Device index of each decoder layer; device 0 also hosts vision + projector, so takes half a share."""
    if n_devices == 1:
        return [0] * num_layers
    per = math.ceil(num_layers / (n_devices - 0.5))
    quotas = [math.ceil(per * 0.5)] + [per] * (n_devices - 1)
    owners: list[int] = []
    for dev, quota in enumerate(quotas):
        owners += [dev] * quota
    return owners[:num_layers]


def split_model(
    model_path: str | os.PathLike | PreTrainedConfig, device: str | int | torch.device | Sequence[Any]
) -> dict[str, Any]:
    """A ``device_map`` (module name -> device) for ``from_pretrained(model_path, device_map=...)``.

    model_path: a checkpoint folder / hub id holding a :class:`LlamaNemotronVLConfig`, or the config.
    device: ``"cuda"`` (every visible GPU), ``"cuda:k"``/``"cpu"``/a ``torch.device`` (everything there),
    an int ``n`` (GPUs ``0..n-1``) or an explicit list of devices.

    The vision tower, projector, token embeddings, final norm, rotary embedding and LM head go to the
    first device; decoder layers are split in contiguous runs, the first device taking about half a share.
    """
    config = (
        model_path if isinstance(model_path, PreTrainedConfig) else LlamaNemotronVLConfig.from_pretrained(model_path)
    )
    devices = _resolve_devices(device)
    causal = not config.bidirectional_attention
    prefix = "language_model.model" if causal else "language_model"
    first = devices[0]
    device_map: dict[str, Any] = {
        "vision_model": first,
        "mlp1": first,
        f"{prefix}.embed_tokens": first,
        f"{prefix}.norm": first,
        f"{prefix}.rotary_emb": first,
    }
    if causal:
        device_map["language_model.lm_head"] = first
    for i, owner in enumerate(_layer_owners(config.llm_config.num_hidden_layers, len(devices))):
        device_map[f"{prefix}.layers.{i}"] = devices[owner]
    return device_map
