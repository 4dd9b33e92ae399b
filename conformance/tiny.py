"""Tiny random-weight models from a real ``config.json``: what the forward checks need when no pack exists.

A registered family's pack carries a hand-made tiny ``config.json``. A model nobody registered has only
its real configuration, so the harness shrinks it: few layers, narrow hidden/intermediate sizes, few
heads, a shallow vision tower. Everything the checks depend on stays: vocabulary size, token ids,
patch/merge sizes, image size, rope kind and theta (an M-RoPE section is rescaled to the new head size,
as it must sum to ``head_dim / 2``). The shrunk model is sized on the meta device first, and refused if
it is still large: a real-size model is never built.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "head_dim": 16}
VISION = {"hidden_size": 32, "intermediate_size": 64, "depth": 2, "heads": 2}
MOE = {
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
}
MAX_PARAMETERS = 80_000_000
"""A tiny model keeps the real vocabulary (e.g. 262k x 64 x 2 for Gemma 3: 34M); anything above this is not tiny."""


class NotShrinkable(ValueError):
    """The configuration cannot be turned into a tiny model the checks can use (the message says why)."""


def _rescale_sections(sections: list[int], total: int) -> list[int]:
    """Integer sections proportional to *sections* that sum to *total* (largest remainders)."""
    whole = sum(sections)
    raw = [s * total / whole for s in sections]
    out = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)[: total - sum(out)]:
        out[i] += 1
    return out


def _shrink_rope(text: dict[str, Any], head_dim: int) -> None:
    for key in ("rope_scaling", "rope_parameters"):
        rope = text.get(key)
        if isinstance(rope, dict) and isinstance(rope.get("mrope_section"), list):
            rope["mrope_section"] = _rescale_sections(rope["mrope_section"], head_dim // 2)


def _shrink_text(text: dict[str, Any]) -> None:
    heads = text.get("num_attention_heads")
    kv = text.get("num_key_value_heads")
    text.update({k: v for k, v in TEXT.items() if k != "head_dim"})
    if heads and kv:
        # keep the attention kind: multi-head stays multi-head, grouped stays grouped, one k/v head stays one
        text["num_key_value_heads"] = TEXT["num_attention_heads"] if kv == heads else min(kv, 2)
    if "head_dim" in text or "query_pre_attn_scalar" in text:
        text["head_dim"] = TEXT["head_dim"]
    if "query_pre_attn_scalar" in text:
        text["query_pre_attn_scalar"] = TEXT["head_dim"]
    for key, value in MOE.items():
        if isinstance(text.get(key), int):
            text[key] = min(text[key], value)
    layers = TEXT["num_hidden_layers"]
    if isinstance(text.get("layer_types"), list):
        text["layer_types"] = text["layer_types"][:layers]
    for key in ("max_window_layers", "first_k_dense_replace", "num_kv_shared_layers"):
        if isinstance(text.get(key), int):
            text[key] = min(text[key], layers)
    _shrink_rope(text, TEXT["head_dim"])


def _shrink_vision(vision: dict[str, Any]) -> None:
    depth = VISION["depth"]
    for key in ("depth", "num_hidden_layers"):
        if key in vision:
            vision[key] = depth
    for key in ("num_heads", "num_attention_heads"):
        if key in vision:
            vision[key] = VISION["heads"]
    for key in ("hidden_size", "embed_dim"):
        if key in vision:
            vision[key] = VISION["hidden_size"]
    if "intermediate_size" in vision:
        vision["intermediate_size"] = VISION["intermediate_size"]
    if isinstance(vision.get("fullatt_block_indexes"), list):
        vision["fullatt_block_indexes"] = [depth - 1]
    if isinstance(vision.get("deepstack_visual_indexes"), list):
        vision["deepstack_visual_indexes"] = [0]
    if "head_dim" in vision:
        vision["head_dim"] = VISION["hidden_size"] // VISION["heads"]


def shrink_config_dict(config: dict[str, Any]) -> dict[str, Any]:
    """A shrunk copy of a real ``config.json`` dict (nested ``text_config``/``vision_config``/``audio_config``)."""
    out = copy.deepcopy(config)
    text = out.get("text_config") if isinstance(out.get("text_config"), dict) else out
    _shrink_text(text)
    for key in ("vision_config", "audio_config"):
        if isinstance(out.get(key), dict):
            _shrink_vision(out[key])
            if "out_hidden_size" in out[key]:  # the merger projects into the text width
                out[key]["out_hidden_size"] = TEXT["hidden_size"]
    if text is not out and "hidden_size" in out:
        out["hidden_size"] = TEXT["hidden_size"]
    return out


def shrink_config(config: Any) -> Any:
    """A shrunk copy of a transformers ``PretrainedConfig`` (same class)."""
    data = shrink_config_dict(config.to_dict())
    return type(config).from_dict(data)


def count_parameters(model_class: type, config: Any) -> int:
    """Parameters of ``model_class(config)``, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = model_class(config)
    return sum(p.numel() for p in model.parameters())


def tiny_model(model_class: type, real_config: Any, seed: int = 0) -> torch.nn.Module:
    """A seeded, fp32, eval-mode tiny ``model_class`` from *real_config*; ``NotShrinkable`` if it stays large."""
    config = shrink_config(real_config)
    config._attn_implementation = "eager"  # deterministic reference numerics
    try:
        size = count_parameters(model_class, config)
    except Exception as exc:
        raise NotShrinkable(
            f"{model_class.__name__} cannot be built from the shrunk config: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if size > MAX_PARAMETERS:
        raise NotShrinkable(
            f"{model_class.__name__} shrunk from the real config still has {size:,} parameters "
            f"(> {MAX_PARAMETERS:,}); the harness builds no model that large"
        )
    torch.manual_seed(seed)
    return model_class(config).to(torch.float32).eval()
