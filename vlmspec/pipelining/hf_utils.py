"""Patching HF models for ``torch.distributed.pipelining``: forward selection, buffers, validation."""

from __future__ import annotations

import logging
import types

import torch
from torch import nn

from ._common import (
    _has_nested_language_model,
    _is_gemma4_vlm,
    _is_mistral3_vlm,
    _model_type,
    get_text_module,
)
from .forwards import (
    create_pipeline_forward_causal_lm,
    create_pipeline_forward_inner,
    create_pipeline_forward_mistral3_vlm,
)
from .gemma4 import create_pipeline_forward_gemma4_text, create_pipeline_forward_gemma4_vlm

logger = logging.getLogger(__name__)

_KEEPS_SELF_FORWARD_ATTR = "_pp_keeps_self_forward"


def model_keeps_self_forward(model: nn.Module) -> bool:
    """Return True when ``model`` opts out of pipeline-aware forward patching.

    A model opts out by setting ``_pp_keeps_self_forward = True`` (class or instance attribute),
    typically because its own forward is already PP-aware (it pulls ``pixel_values`` out of
    ``self._vlm_pixel_values_chunks`` set by ``stage_vlm_media_for_pp``). The split call site then
    skips ``patch_hf_model_for_pp`` entirely.
    """
    return bool(getattr(model, _KEEPS_SELF_FORWARD_ATTR, False))


def _bind(module: nn.Module, fn) -> None:
    module.forward = types.MethodType(fn, module)


def _inner_forward_for(text: nn.Module):
    if _model_type(text) == "gemma4_text":
        return create_pipeline_forward_gemma4_text()
    return create_pipeline_forward_inner(type(text).__name__)


def patch_hf_model_for_pp(model: nn.Module, patch_inner_model: bool = True, patch_causal_lm_model: bool = True) -> None:
    """Patch a HF model/module (in place) to produce a pipeline-compatible forward.

    The caller is responsible for skipping this function when the model opts out via
    ``model_keeps_self_forward(model)``. Flavors:

    - Gemma4 VLM (``config.model_type == 'gemma4'`` with ``model.model.language_model``): text backbone
      gets the Gemma4 text forward, the outer model the Gemma4 VLM forward.
    - Mistral3 VLM: text backbone gets the generic inner forward, the outer the Mistral3 VLM forward.
    - Other models with ``model.model`` (``LlamaForCausalLM``, Qwen-VL, Gemma3, ...): the text module
      (``get_text_module(model.model)``) gets the inner forward (Gemma4 text forward for
      ``gemma4_text``), the outer the generic CausalLM forward.
    - Else: the module itself gets the generic inner forward.

    ``patch_inner_model`` / ``patch_causal_lm_model`` switch off patching of the text backbone / outer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if _is_gemma4_vlm(model):
        text = model.model.language_model
        inner_fn, outer_fn = create_pipeline_forward_gemma4_text(), create_pipeline_forward_gemma4_vlm()
    elif _is_mistral3_vlm(model):
        text = model.model.language_model
        inner_fn, outer_fn = create_pipeline_forward_inner(type(text).__name__), create_pipeline_forward_mistral3_vlm()
    elif isinstance(getattr(model, "model", None), nn.Module):
        text = get_text_module(model.model)
        inner_fn, outer_fn = _inner_forward_for(text), create_pipeline_forward_causal_lm()
    else:
        if patch_inner_model:
            _bind(model, _inner_forward_for(model))
        return
    if patch_inner_model:
        _bind(text, inner_fn)
    if patch_causal_lm_model:
        _bind(model, outer_fn)
    logger.debug(
        "patched %s for PP (inner=%s, outer=%s)", type(model).__name__, patch_inner_model, patch_causal_lm_model
    )


def init_hf_model_buffers(model: nn.Module, device: torch.device) -> None:
    """Initialize HuggingFace model buffers needed before pipeline execution.

    Non-persistent buffers are not in checkpoints, so a model materialized from the meta device (or
    moved with ``to_empty``) holds garbage there. Recomputes, on ``device``:

    - every ``*RotaryEmbedding`` that carries a ``config`` (``inv_freq``, ``original_inv_freq`` and the
      per-layer-type ``{type}_inv_freq`` variants), by building a fresh instance from the same config;
    - Gemma-style scaled word embeddings' ``embed_scale`` (from ``scalar_embed_scale``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device: {exc}") from None
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding") and getattr(module, "config", None) is not None:
            with torch.device("cpu"):
                fresh = type(module)(module.config)
            for name, buf in fresh.named_buffers(recurse=False):
                module.register_buffer(name, buf.to(device), persistent=name not in fresh._non_persistent_buffers_set)
            for attr, value in vars(fresh).items():
                if attr.endswith("attention_scaling"):
                    setattr(module, attr, value)
        scale = getattr(module, "scalar_embed_scale", None)
        if scale is not None and isinstance(getattr(module, "embed_scale", None), torch.Tensor):
            dtype = module.embed_scale.dtype if module.embed_scale.device.type != "meta" else torch.float32
            module.register_buffer("embed_scale", torch.tensor(scale, dtype=dtype, device=device), persistent=False)


def validate_hf_model_for_pipeline_support(model: nn.Module) -> None:
    """Validate if a model is compatible with ``torch.distributed.pipelining``.

    Raises ``ValueError`` listing every problem found:

    - no ``config``, or an encoder-decoder model (only decoder stacks are split);
    - tied input/output embeddings (``tie_word_embeddings``): embeddings live on the first stage and
      ``lm_head`` on the last, so the two copies would get different gradients and drift apart;
    - no decoder ``layers`` container on the text module;
    - Gemma4 with a vision config but without ``model.model.language_model``.
    """
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no config; only HF PreTrainedModel instances are supported")
    problems = []
    if getattr(config, "is_encoder_decoder", False):
        problems.append("encoder-decoder models are not supported; pipelining splits a single decoder stack")
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(config, "tie_word_embeddings", False) or getattr(text_config, "tie_word_embeddings", False):
        problems.append(
            "tie_word_embeddings=True: embed_tokens (first stage) and lm_head (last stage) would train as two "
            "diverging copies; load with tie_word_embeddings=False (untied copies) to pipeline this model"
        )
    holder = model.model if isinstance(getattr(model, "model", None), nn.Module) else model
    text = get_text_module(holder)
    if not isinstance(getattr(text, "layers", None), (nn.ModuleList, nn.ModuleDict)):
        problems.append(f"{type(text).__name__} has no `layers` ModuleList/ModuleDict to split into stages")
    if (
        _model_type(model) == "gemma4"
        and getattr(config, "vision_config", None)
        and not _has_nested_language_model(model)
    ):
        problems.append("Gemma4 VLM without model.model.language_model is not supported")
    if problems:
        raise ValueError(f"{type(model).__name__} is not supported for pipeline parallelism: " + "; ".join(problems))
