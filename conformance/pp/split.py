"""The harness's own stage split: test infrastructure, not part of any implementation under test.

It follows the manual-split convention that the documented pipelining patches assume (the same one
torchtitan and ``torch.distributed.pipelining``'s manual stages use): every stage is a copy of the
whole model in which

- a contiguous range of decoder layers is kept, in an ``nn.ModuleDict`` keyed by the *global* layer
  index (so ``config.layer_types[i]`` and parameter names such as ``...layers.5.mlp...`` are unchanged);
- token embeddings (and Gemma 4's per-layer embeddings) and every multimodal module live only on the
  first stage; the final ``norm`` and ``lm_head`` only on the last; a dropped module becomes ``None``.

The implementation under test then supplies only its documented patches: each stage goes through
``patch_hf_model_for_pp`` unless ``model_keeps_self_forward(model)``.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence

from torch import nn

from .spec import pp_api

TEXT_MODULE_ATTRS = ("language_model", "text_model", "text_decoder")
"""Where a VLM keeps its text decoder (the documented ``TEXT_MODULE_ATTRS``)."""
MULTIMODAL_MODULES = (
    "vision_tower",
    "visual",
    "vision_model",
    "image_encoder",
    "vision_encoder",
    "embed_vision",
    "audio_tower",
    "audio_model",
    "embed_audio",
    "multi_modal_projector",
    "mm_projector",
)
"""Input-side media modules (the names of the documented ``MULTIMODAL_SUFFIXES``): first stage only."""
FIRST_STAGE_TEXT_MODULES = (
    "embed_tokens",
    "embed_tokens_per_layer",
    "per_layer_model_projection",
    "per_layer_projection_norm",
)
"""Input-side modules of the text decoder (Gemma 4's per-layer embeddings included): first stage only."""


def _resolve(model: nn.Module, path: str) -> nn.Module:
    for part in filter(None, path.split(".")):
        model = getattr(model, part)
    return model


def text_path(model: nn.Module) -> str:
    """Dotted path of the module holding the decoder ``layers``."""
    inner = getattr(model, "model", None)
    for prefix, holder in (("", model), ("model.", inner)):
        if not isinstance(holder, nn.Module):
            continue
        for attr in TEXT_MODULE_ATTRS:
            text = getattr(holder, attr, None)
            if isinstance(text, nn.Module):
                if not isinstance(getattr(text, "layers", None), (nn.ModuleList, nn.ModuleDict)):
                    raise ValueError(
                        f"{type(model).__name__}: its text module {prefix + attr} ({type(text).__name__}) "
                        "has no decoder `layers` list; the harness cannot split it into stages"
                    )
                return prefix + attr
    if isinstance(inner, nn.Module) and hasattr(inner, "layers"):
        return "model"
    if hasattr(model, "layers"):
        return ""
    raise ValueError(f"cannot find the decoder `layers` of {type(model).__name__}")


def stage_sizes(n_layers: int, n_stages: int, layers_per_stage: Sequence[int] | None) -> list[int]:
    """Layers per stage: ``layers_per_stage`` as given, else as even as possible (earlier stages get more)."""
    if layers_per_stage is None:
        if n_stages > n_layers:
            raise ValueError(
                f"{n_stages} stages > {n_layers} decoder layers; the family record needs pp.layers_per_stage"
            )
        base, extra = divmod(n_layers, n_stages)
        return [base + (1 if s < extra else 0) for s in range(n_stages)]
    sizes = [operator.index(n) for n in layers_per_stage]
    if len(sizes) != n_stages or sum(sizes) != n_layers or min(sizes) < 0:
        raise ValueError(f"pp.layers_per_stage {sizes} must have {n_stages} non-negative entries summing to {n_layers}")
    return sizes


def _layers(text: nn.Module) -> list[nn.Module]:
    layers = text.layers
    if isinstance(layers, nn.ModuleDict):
        return [layers[k] for k in sorted(layers.keys(), key=int)]
    return list(layers)


def _check_gemma4_kv_sharing(text: nn.Module, start: int, end: int) -> None:
    """Gemma 4 layers that reuse an earlier layer's k/v must sit in that layer's stage."""
    config = getattr(text, "config", None)
    if getattr(config, "model_type", None) != "gemma4_text" or not getattr(config, "num_kv_shared_layers", 0):
        return
    modes, types = config.kv_sharing_modes, config.layer_types
    producers = {types[i]: i for i, mode in enumerate(modes) if mode == "store"}
    for i in range(start, end):
        if modes[i] == "reuse" and producers.get(types[i], -1) < start:
            raise ValueError(
                f"Gemma4 layer {i} reuses k/v of layer {producers.get(types[i])} ({types[i]}), which would "
                "sit in an earlier stage; the family record needs pp.layers_per_stage keeping both together"
            )


def _check_deepstack(model: nn.Module, stage: int, start: int, end: int) -> None:
    """Qwen3-VL DeepStack adds visual features after layers ``0..D-1``; only stage 0 computes them."""
    vision_config = getattr(getattr(model, "config", None), "vision_config", None)
    depth = len(getattr(vision_config, "deepstack_visual_indexes", None) or ())
    if stage > 0 and start < depth and end > start:
        raise ValueError(
            f"stage {stage} would hold decoder layers {start}..{end - 1}, but layers 0..{depth - 1} add "
            f"DeepStack visual features that only stage 0 computes; pp.layers_per_stage must give stage 0 "
            f"at least {depth} layer(s)"
        )


def split_stages(model: nn.Module, n_stages: int, layers_per_stage: Sequence[int] | None = None) -> list[nn.Module]:
    """``n_stages`` deep-copied stage modules of ``model`` (unmodified), each patched by the implementation
    under test with ``patch_hf_model_for_pp`` unless ``model_keeps_self_forward(model)``."""
    path = text_path(model)
    text = _resolve(model, path)
    layers = _layers(text)
    sizes = stage_sizes(len(layers), n_stages, layers_per_stage)
    holders = [model] + ([model.model] if isinstance(getattr(model, "model", None), nn.Module) else [])
    keeps_own = bool(pp_api("model_keeps_self_forward")(model=model))
    stages, start = [], 0
    for s, size in enumerate(sizes):
        end = start + size
        _check_gemma4_kv_sharing(text, start, end)
        _check_deepstack(model, s, start, end)
        dropped = [layer for i, layer in enumerate(layers) if not start <= i < end]
        if s > 0:
            dropped += [getattr(text, a, None) for a in FIRST_STAGE_TEXT_MODULES]
            dropped += [getattr(h, a, None) for h in holders for a in MULTIMODAL_MODULES]
        if s < n_stages - 1:
            dropped += [getattr(text, "norm", None), getattr(model, "lm_head", None)]
        memo = {id(m): None for m in dropped if isinstance(m, nn.Module)}
        stage = copy.deepcopy(model, memo)
        stage_text = _resolve(stage, path)
        # the keys of a ModuleList are its indices: the kept layers keep their global index
        stage_text.layers = nn.ModuleDict({k: m for k, m in stage_text.layers._modules.items() if m is not None})
        if not keeps_own:
            pp_api("patch_hf_model_for_pp")(model=stage)
        stages.append(stage)
        start = end
    return stages


def untied(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``lm_head`` has its own weight (a clone of the embeddings when tied)."""
    model = copy.deepcopy(model)
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        if getattr(config, "tie_word_embeddings", False):
            config.tie_word_embeddings = False
    head = getattr(model, "lm_head", None)
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if head is not None and embeddings is not None and head.weight is embeddings.weight:
        head.weight = nn.Parameter(embeddings.weight.detach().clone())
    return model
