"""Shared helpers for the pipeline-parallel forwards: model detection, layer iteration, positions,
cached causal masks and stage-0 media lookup.

Stage conventions (every patched forward follows them):

- Stage 0 receives integer ``input_ids [B, L]`` and owns ``embed_tokens`` (and the vision tower).
- Middle/last stages receive the previous stage's float hidden states ``[B, L, H]`` in the
  ``input_ids`` slot (``torch.distributed.pipelining`` passes a stage's output positionally).
- Non-last stages return hidden states; the last stage returns logits ``[B, L, V]``.
- Decoder layers may live in an ``nn.ModuleList`` (unsplit) or an ``nn.ModuleDict`` keyed by the
  *global* layer index (split, see ``split_hf_model_into_stages``), so ``config.layer_types[i]`` and
  parameter names stay valid after splitting.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from transformers import masking_utils

from vlmspec.pp_media import _VLM_MEDIA_KEYS, VLM_PP_MEDIA_INDEX_KEY

MULTIMODAL_SUFFIXES = (
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
"""Attribute names of multimodal encoders/projectors; only PP stage 0 keeps them."""

TEXT_MODULE_ATTRS = ("language_model", "text_model", "text_decoder")
"""Attribute names under which VLMs nest their text decoder."""

_PP_VLM_MODEL_TYPES_WITH_DEDICATED_FORWARD: tuple[str, ...] = ("gemma4", "mistral3")

# Keyword arguments decoder layers may legitimately receive from the caller (packed-sequence FA2).
_LAYER_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")

_MASK_CACHE_ATTR = "_pp_causal_mask_cache"
_MASK_CACHE_SIZE = 8


# --------------------------------------------------------------------------------------------------
# Model structure
# --------------------------------------------------------------------------------------------------
def get_text_module(model: nn.Module) -> nn.Module:
    """Return the nested text/LLM module if present, else the model itself.

    Looks at ``model.<attr>`` then ``model.model.<attr>`` for ``attr`` in ``TEXT_MODULE_ATTRS``.
    """
    for holder in (model, getattr(model, "model", None)):
        if not isinstance(holder, nn.Module):
            continue
        for attr in TEXT_MODULE_ATTRS:
            sub = getattr(holder, attr, None)
            if isinstance(sub, nn.Module):
                return sub
    return model


def _model_type(model: nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def _is_vlm(model: nn.Module) -> bool:
    """Best-effort check for whether ``model`` is a vision-language model.

    Config first (a ``vision_config`` or a nested ``text_config``), because splitting removes the vision
    tower from non-first stages; then the structural markers: a ``vision_tower`` on the outer model, or
    a ``visual`` attribute on the inner model (Qwen-VL convention).
    """
    config = getattr(model, "config", None)
    if config is not None:
        if getattr(config, "vision_config", None) is not None:
            return True
        text_config = getattr(config, "text_config", None)
        if text_config is not None and text_config is not config:
            return True
    inner = getattr(model, "model", None)
    return getattr(model, "vision_tower", None) is not None or getattr(inner, "visual", None) is not None


def _has_nested_language_model(model: nn.Module) -> bool:
    inner = getattr(model, "model", None)
    return isinstance(inner, nn.Module) and isinstance(getattr(inner, "language_model", None), nn.Module)


def _is_gemma4_vlm(model: nn.Module) -> bool:
    """Return True only for Gemma4 VLM variants.

    ``model.model.language_model`` alone is not enough to identify Gemma4 -- Kimi VL, Mistral4, Qwen3 VL MoE,
    Llava OneVision and others share that structure. Gate on the HF ``model_type`` so unrelated VLMs fall
    through to the generic CausalLM path.
    """
    return _model_type(model) == "gemma4" and _has_nested_language_model(model)


def _is_mistral3_vlm(model: nn.Module) -> bool:
    """Return True for Mistral3ForConditionalGeneration (Pixtral + Ministral3)."""
    return _model_type(model) == "mistral3" and _has_nested_language_model(model)


def _iter_layers(layers: nn.Module | None) -> Iterator[tuple[int, nn.Module]]:
    """Yield ``(global_layer_index, layer)`` for a ModuleList or a ModuleDict keyed by index."""
    if layers is None:
        return
    if isinstance(layers, nn.ModuleDict):
        for key, layer in layers.items():
            yield int(key), layer
    else:
        for idx, layer in enumerate(layers):
            if layer is not None:
                yield idx, layer


def _layer_type(config: Any, idx: int) -> str:
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return layer_types[idx]
    # Mistral-style configs without layer_types: one mask kind for all layers.
    return "sliding_attention" if getattr(config, "sliding_window", None) is not None else "full_attention"


def _present_layer_types(module: nn.Module) -> list[str]:
    """Layer types of the decoder layers this stage holds; ``[]`` for a stage without layers (it needs no
    mask or RoPE table, and a default type may not exist in the config, e.g. all-sliding Gemma 3)."""
    return sorted({_layer_type(module.config, idx) for idx, _ in _iter_layers(getattr(module, "layers", None))})


def _layer_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in _LAYER_KWARGS if kwargs.get(k) is not None}


# --------------------------------------------------------------------------------------------------
# Stage inputs and positions
# --------------------------------------------------------------------------------------------------
def _is_hidden_states(x: torch.Tensor | None) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def _stage_input(text: nn.Module, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> torch.Tensor:
    """Hidden states entering this stage's layers: embeds (stage 0) or the previous stage's output."""
    if inputs_embeds is not None:
        return inputs_embeds
    if input_ids is None:
        raise ValueError(
            "pipeline forward needs input_ids (token ids on stage 0, hidden states later) or inputs_embeds"
        )
    if _is_hidden_states(input_ids):
        return input_ids
    embed = getattr(text, "embed_tokens", None)
    if embed is None:
        raise ValueError(
            "this pipeline stage has no embed_tokens but received integer input_ids; non-first stages expect the "
            "previous stage's float hidden states [B, L, H] in the input_ids slot"
        )
    return embed(input_ids)


def _uses_mrope(config: Any) -> bool:
    for attr in ("rope_parameters", "rope_scaling"):
        params = getattr(config, attr, None)
        if isinstance(params, Mapping) and ("mrope_section" in params or params.get("type") == "mrope"):
            return True
    return False


def _prepare_positions(
    text: nn.Module,
    hidden: torch.Tensor,
    position_ids: torch.Tensor | None,
    mrope_position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return ``(rope_position_ids, text_position_ids)``, mirroring the HF text models.

    - 1-D RoPE: ``position_ids [B|1, L]`` (default ``arange(L)[None]``) serves both purposes.
    - M-RoPE (Qwen-VL): rope positions are ``[3, B, L]``; ``[4, B, L]`` carries text positions in row 0
      (used for the mask and packed-sequence detection), else text positions are ``None``.
      ``mrope_position_ids`` is the same tensor batch-first (``[B, 3|4, L]``), which PP can split on dim 0.
    """
    batch, length = hidden.shape[:2]
    if mrope_position_ids is not None:
        position_ids = mrope_position_ids.transpose(0, 1)
    if not _uses_mrope(text.config):
        if position_ids is None:
            position_ids = torch.arange(length, device=hidden.device).unsqueeze(0)
        return position_ids, position_ids
    if position_ids is None:
        position_ids = torch.arange(length, device=hidden.device).view(1, 1, -1).expand(3, batch, -1)
    elif position_ids.ndim == 2:
        position_ids = position_ids[None, ...].expand(3, position_ids.shape[0], -1)
    if position_ids.ndim == 3 and position_ids.shape[0] == 4:
        return position_ids[1:], position_ids[0]
    return position_ids, None


def _rotary_embeddings(text: nn.Module, hidden: torch.Tensor, positions: torch.Tensor, layer_types: list[str]):
    """``{layer_type: (cos, sin)}``; per-layer-type RoPE (Gemma3/4) or one table shared by all types."""
    rotary = text.rotary_emb
    if "layer_type" in inspect.signature(rotary.forward).parameters:
        return {lt: rotary(hidden, positions, lt) for lt in layer_types}
    shared = rotary(hidden, positions)
    return dict.fromkeys(layer_types, shared)


# --------------------------------------------------------------------------------------------------
# Causal masks
# --------------------------------------------------------------------------------------------------
def _is_packed(position_ids: torch.Tensor | None, batch: int) -> bool:
    if position_ids is None or position_ids.ndim != 2:
        return False
    return masking_utils.find_packed_sequence_indices(position_ids.expand(batch, -1)) is not None


def _mask_fn(layer_type: str):
    mapping = getattr(masking_utils, "LAYER_PATTERN_TO_MASK_FUNCTION_MAPPING", {})
    fn = mapping.get(layer_type)
    if fn is None or isinstance(fn, Mapping):
        return masking_utils.create_causal_mask
    return fn


def _build_or_reuse_pp_causal_mask(
    module: nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cache_position: torch.Tensor | None,
    position_ids: torch.Tensor | None,
) -> dict[str, torch.Tensor | None]:
    """Build a stage's ``causal_mask_mapping`` (``{layer_type: mask}``), caching it per stage when safe.

    Non-first PP stages arrive without an explicit mask and would otherwise rebuild it on every
    microbatch. With ``attention_mask is None`` (and non-packed ``position_ids``) the mask depends only
    on ``(layer types, batch, seq_len, dtype, device, attention implementation)``, so it is built once
    per stage (stored on ``module``) and reused. Batch size is part of the key because uneven
    ``tensor_split`` microbatches differ in size. With an explicit ``attention_mask`` (per-batch
    padding) or packed positions it is rebuilt on every call and never cached.

    ``inputs_embeds``: ``[B, L, *]`` -- only shape, dtype and device are read. ``cache_position`` is
    accepted for API compatibility; PP training runs without a KV cache, so positions start at 0.
    """
    del cache_position
    config = module.config
    layer_types = _present_layer_types(module)
    batch, length = inputs_embeds.shape[:2]
    cacheable = attention_mask is None and not _is_packed(position_ids, batch)
    key = (
        tuple(layer_types),
        batch,
        length,
        inputs_embeds.dtype,
        inputs_embeds.device,
        getattr(config, "_attn_implementation", None),
    )
    cache: dict = module.__dict__.setdefault(_MASK_CACHE_ATTR, {})
    if cacheable and key in cache:
        return cache[key]
    mask_kwargs = {
        "config": config,
        "inputs_embeds": inputs_embeds,
        "attention_mask": attention_mask,
        "past_key_values": None,
        "position_ids": position_ids,
    }
    mapping = {lt: _mask_fn(lt)(**mask_kwargs) for lt in layer_types}
    if cacheable:
        if len(cache) >= _MASK_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = mapping
    return mapping


# --------------------------------------------------------------------------------------------------
# Stage-0 media
# --------------------------------------------------------------------------------------------------
def _take_media(module: nn.Module, kwargs: dict[str, Any], is_first: bool) -> dict[str, Any]:
    """Pop media kwargs from ``kwargs`` and return this microbatch's media (stage 0 only).

    Explicit pixels or audio features (``pixel_values``, ``input_features``, ...) win; otherwise the chunk staged by
    ``stage_vlm_media_for_pp`` is used, selected by the ``VLM_PP_MEDIA_INDEX_KEY`` tensor when passed
    (robust to schedule order and metadata-inference calls), else by the per-module call counter.
    """
    explicit = {k: kwargs.pop(k) for k in _VLM_MEDIA_KEYS if k in kwargs}
    index = kwargs.pop(VLM_PP_MEDIA_INDEX_KEY, None)
    if not is_first:
        return {}
    media = ("pixel_values", "pixel_values_videos", "image_pixel_values", "input_features", "audio_input_features")
    if any(explicit.get(k) is not None for k in media):
        return explicit
    chunks = getattr(module, "_vlm_media_chunks", None)
    if not chunks:
        return explicit
    if index is not None:
        k = int(index.reshape(-1)[0])
        if not bool((index == k).all()):
            raise ValueError(
                f"{VLM_PP_MEDIA_INDEX_KEY} mixes microbatches {sorted(set(index.tolist()))} in one forward call; "
                "it must be split with the text tensors (torch.tensor_split on dim 0)"
            )
    else:
        k = getattr(module, "_vlm_chunk_idx", 0)
        module._vlm_chunk_idx = k + 1
    if not 0 <= k < len(chunks):
        raise RuntimeError(
            f"stage 0 needs media chunk {k} but only {len(chunks)} were staged; call stage_vlm_media_for_pp "
            "before every schedule step"
        )
    return dict(chunks[k])


def _vision_dtype(model: nn.Module) -> torch.dtype | None:
    for holder in (model, getattr(model, "model", None)):
        for name in MULTIMODAL_SUFFIXES:
            sub = getattr(holder, name, None) if holder is not None else None
            if isinstance(sub, nn.Module):
                for p in sub.parameters():
                    return p.dtype
    return None


def _features(output: Any, hidden_size: int) -> torch.Tensor:
    """Flatten ``get_image_features`` output (ModelOutput / tuple of per-item tensors / tensor) to ``[n, H]``."""
    if hasattr(output, "pooler_output"):
        output = output.pooler_output
    if isinstance(output, (list, tuple)):
        output = torch.cat([o.reshape(-1, hidden_size) for o in output], dim=0)
    return output.reshape(-1, hidden_size)


def _scatter_features(
    inputs_embeds: torch.Tensor, token_mask: torch.Tensor, features: torch.Tensor, field: str
) -> torch.Tensor:
    n_tokens = int(token_mask.sum())
    if n_tokens != features.shape[0]:
        raise ValueError(
            f"{field}: this microbatch has {n_tokens} placeholder tokens but its media produced "
            f"{features.shape[0]} feature vectors; media chunks must match text microbatches "
            "(use prepare_vlm_media_for_pp / stage_vlm_media_for_pp)"
        )
    mask = token_mask.unsqueeze(-1).expand_as(inputs_embeds)
    return inputs_embeds.masked_scatter(mask, features.to(inputs_embeds.device, inputs_embeds.dtype))


def _token_id(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    return None


def _call_feature_fn(fn, pixel_values: torch.Tensor, media: Mapping[str, Any], extra: Mapping[str, Any]):
    """``fn(pixel_values, return_dict=True, **the media kwargs fn names)``; the pixels go positionally, so
    their own parameter (``pixel_values``, or ``pixel_values_videos`` of ``get_video_features``) is not
    passed again by name."""
    params = inspect.signature(fn).parameters
    positional = next(iter(params), None)
    skip = {"pixel_values", positional}
    kwargs = {k: v for k, v in media.items() if k in params and k not in skip and v is not None}
    kwargs.update(extra)
    return fn(pixel_values, return_dict=True, **kwargs)


def _apply_softcap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    if cap is None:
        return logits
    return torch.tanh(logits / cap) * cap
