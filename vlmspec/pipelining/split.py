"""Split a HF causal LM / VLM into pipeline stages (one ``nn.Module`` per stage)."""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence

from torch import nn

from ._common import MULTIMODAL_SUFFIXES, TEXT_MODULE_ATTRS, _iter_layers, _model_type
from .hf_utils import model_keeps_self_forward, patch_hf_model_for_pp

# Stage-0-only modules of the text decoder (Gemma4 Per-Layer Embeddings included).
_FIRST_STAGE_TEXT_ATTRS = (
    "embed_tokens",
    "embed_tokens_per_layer",
    "per_layer_model_projection",
    "per_layer_projection_norm",
)


def _resolve(model: nn.Module, path: str) -> nn.Module:
    for part in filter(None, path.split(".")):
        model = getattr(model, part)
    return model


def _text_path(model: nn.Module) -> str:
    """Dotted path of the module holding the decoder ``layers`` (same lookup as ``get_text_module``)."""
    inner = getattr(model, "model", None)
    for prefix, holder in (("", model), ("model.", inner)):
        if not isinstance(holder, nn.Module):
            continue
        for attr in TEXT_MODULE_ATTRS:
            text = getattr(holder, attr, None)
            if isinstance(text, nn.Module):
                if not isinstance(getattr(text, "layers", None), (nn.ModuleList, nn.ModuleDict)):
                    raise ValueError(
                        f"{type(model).__name__}: its text module {prefix + attr} ({type(text).__name__}) has no "
                        "decoder `layers` list (a nested causal-LM wrapper is not supported); nothing to split into stages"
                    )
                return prefix + attr
    if isinstance(inner, nn.Module) and hasattr(inner, "layers"):
        return "model"
    if hasattr(model, "layers"):
        return ""
    raise ValueError(f"cannot find the decoder `layers` of {type(model).__name__}")


def _stage_sizes(n_layers: int, n_stages: int, layers_per_stage: Sequence[int] | None) -> list[int]:
    if not isinstance(n_stages, int) or isinstance(n_stages, bool):
        raise TypeError(f"n_stages must be an int, got {type(n_stages).__name__}")
    if n_stages < 1:
        raise ValueError(f"n_stages must be >= 1, got {n_stages}")
    if layers_per_stage is None:
        if n_stages > n_layers:
            raise ValueError(f"n_stages={n_stages} > {n_layers} decoder layers; pass layers_per_stage explicitly")
        base, extra = divmod(n_layers, n_stages)
        return [base + (1 if s < extra else 0) for s in range(n_stages)]
    try:
        sizes = [operator.index(n) for n in layers_per_stage]
    except TypeError:
        raise TypeError(f"layers_per_stage must be a sequence of ints, got {layers_per_stage!r}") from None
    if len(sizes) != n_stages or sum(sizes) != n_layers or min(sizes) < 0:
        raise ValueError(f"layers_per_stage={sizes} must have {n_stages} non-negative entries summing to {n_layers}")
    return sizes


def _check_gemma4_kv_sharing(text: nn.Module, start: int, end: int) -> None:
    config = text.config
    if _model_type(text) != "gemma4_text" or not getattr(config, "num_kv_shared_layers", 0):
        return
    modes, types = config.kv_sharing_modes, config.layer_types
    producers = {types[i]: i for i, mode in enumerate(modes) if mode == "store"}
    for i in range(start, end):
        if modes[i] == "reuse" and producers.get(types[i], -1) < start:
            raise ValueError(
                f"Gemma4 layer {i} reuses k/v of layer {producers.get(types[i])} ({types[i]}), which would sit in "
                f"an earlier stage; choose layers_per_stage so both are in one stage"
            )


def _check_deepstack(model: nn.Module, stage: int, start: int, end: int) -> None:
    """Qwen3-VL DeepStack adds visual features after layers ``0..D-1``; only stage 0 has them."""
    vision_config = getattr(getattr(model, "config", None), "vision_config", None)
    depth = len(getattr(vision_config, "deepstack_visual_indexes", None) or ())
    if stage > 0 and start < depth and end > start:
        raise ValueError(
            f"stage {stage} would hold decoder layers {start}..{end - 1}, but layers 0..{depth - 1} add DeepStack "
            f"visual features that only stage 0 computes; choose layers_per_stage so stage 0 holds at least {depth} layer(s)"
        )


def split_hf_model_into_stages(
    model: nn.Module,
    n_stages: int,
    layers_per_stage: Sequence[int] | None = None,
    patch: bool = True,
) -> list[nn.Module]:
    """Split ``model`` into ``n_stages`` deep-copied stage modules for pipeline parallelism.

    Stage ``s`` keeps a contiguous range of decoder layers in an ``nn.ModuleDict`` keyed by the *global*
    layer index (so ``config.layer_types[i]`` and parameter names such as ``model.layers.5.mlp...`` are
    unchanged). Non-first stages drop token embeddings (and Gemma4 per-layer embeddings) and every
    multimodal module in ``MULTIMODAL_SUFFIXES``; non-last stages drop the final ``norm`` and ``lm_head``.
    Dropped modules become ``None`` and are never copied. The input model is not modified.

    ``layers_per_stage`` (default: as even as possible, earlier stages get the remainder) gives each
    stage's layer count. With ``patch=True`` every stage is patched with ``patch_hf_model_for_pp``
    unless ``model_keeps_self_forward(model)``.

    Tied input/output embeddings become two independent copies (first and last stage); see
    ``validate_hf_model_for_pipeline_support``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    path = _text_path(model)
    text = _resolve(model, path)
    layers = [layer for _, layer in _iter_layers(text.layers)]
    sizes = _stage_sizes(len(layers), n_stages, layers_per_stage)
    holders = [model] + ([model.model] if isinstance(getattr(model, "model", None), nn.Module) else [])

    stages, start = [], 0
    for s, size in enumerate(sizes):
        end = start + size
        _check_gemma4_kv_sharing(text, start, end)
        _check_deepstack(model, s, start, end)
        dropped = [layer for i, layer in enumerate(layers) if not start <= i < end]
        if s > 0:
            dropped += [getattr(text, a, None) for a in _FIRST_STAGE_TEXT_ATTRS]
            dropped += [getattr(h, a, None) for h in holders for a in MULTIMODAL_SUFFIXES]
        if s < n_stages - 1:
            dropped += [getattr(text, "norm", None), getattr(model, "lm_head", None)]
        memo = {id(m): None for m in dropped if isinstance(m, nn.Module)}
        stage = copy.deepcopy(model, memo)
        stage_text = _resolve(stage, path)
        # Keys of a ModuleList are its indices and those of an already split ModuleDict are global indices.
        stage_text.layers = nn.ModuleDict({k: m for k, m in stage_text.layers._modules.items() if m is not None})
        stage._pp_stage_index, stage._pp_num_stages = s, n_stages
        if patch and not model_keeps_self_forward(model):
            patch_hf_model_for_pp(stage)
        stages.append(stage)
        start = end
    return stages
