"""Pipeline-parallel forwards for Gemma4 (text backbone and VLM top level).

Gemma4 differs from the generic decoder in three ways that matter for PP:

- mixed ``sliding_attention`` / ``full_attention`` layers with per-layer-type RoPE tables
  (``rotary_emb(x, position_ids, layer_type)``) and per-type masks;
- Per-Layer Embeddings (PLE, ``hidden_size_per_layer_input = P > 0``): stage 0 computes
  ``per_layer_inputs [B, L, n_layers, P]`` from the token ids and the (vision-merged) embeddings, and
  every layer ``i`` consumes slice ``[:, :, i]``. Only stage 0 can compute it, so non-last stages send
  ``cat([hidden [B, L, H], per_layer_inputs.flatten(2)], -1)`` -- a single ``[B, L, H + n_layers * P]``
  tensor, which is what ``torch.distributed.pipelining`` can pass between stages -- and the next stage
  splits it again;
- KV sharing (``num_kv_shared_layers``): a "reuse" layer needs the k/v of an earlier "store" layer, so
  both must sit in the same stage (checked at run time and by ``split_hf_model_into_stages``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers.modeling_utils import slice_logits_to_keep

from ._common import (
    _apply_softcap,
    _build_or_reuse_pp_causal_mask,
    _call_feature_fn,
    _features,
    _is_hidden_states,
    _iter_layers,
    _layer_kwargs,
    _present_layer_types,
    _rotary_embeddings,
    _scatter_features,
    _take_media,
    _vision_dtype,
)
from .forwards import _gemma4_audio_features

try:  # transformers >= 5 ships the container Gemma4 attention writes shared k/v into
    from transformers.cache_utils import KVSharingDict
except ImportError:  # pragma: no cover - older transformers
    KVSharingDict = dict


def _ple_size(config: Any) -> int:
    return int(getattr(config, "hidden_size_per_layer_input", 0) or 0)


def _unpack_hidden(config: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a packed ``[B, L, H + n_layers * P]`` stage input into hidden states and PLE."""
    hidden_size, ple = config.hidden_size, _ple_size(config)
    if not ple:
        return x, None
    expected = hidden_size + config.num_hidden_layers * ple
    if x.shape[-1] != expected:
        raise ValueError(
            f"Gemma4 PP stage expected packed hidden states of width {expected} (hidden {hidden_size} + "
            f"{config.num_hidden_layers} layers x PLE {ple}), got {x.shape[-1]}"
        )
    return x[..., :hidden_size], x[..., hidden_size:].reshape(*x.shape[:2], config.num_hidden_layers, ple)


def create_pipeline_forward_gemma4_text() -> Callable:
    """Pipeline-compatible forward for the Gemma4 text decoder backbone.

    ``forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
    inputs_embeds=None, per_layer_inputs=None, use_cache=None, cache_position=None, **kwargs) -> Tensor``

    Handles:

    - optional ``embed_tokens`` (``None`` on non-first PP stages; hidden states arrive in the ``input_ids``
      slot, packed with the PLE tensor when ``hidden_size_per_layer_input`` is set -- see module doc);
    - both ``full_attention`` and ``sliding_attention`` causal masks (cached per stage when no explicit
      mask is given; a ``{layer_type: mask}`` dict is used as is);
    - per-layer-type position embeddings: ``rotary_emb(x, position_ids, layer_type)``.

    Returns normed hidden states ``[B, L, H]`` on the last stage (``norm`` present), else the packed
    stage output.
    """

    def pipeline_forward_gemma4_text(
        self: nn.Module,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | dict | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        per_layer_inputs: torch.Tensor | None = None,
        use_cache: bool | None = None,
        cache_position: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        config = self.config
        if inputs_embeds is None and _is_hidden_states(input_ids):
            hidden, ple = _unpack_hidden(config, input_ids)
        else:
            if inputs_embeds is None:
                if getattr(self, "embed_tokens", None) is None:
                    raise ValueError("this Gemma4 stage has no embed_tokens but received integer input_ids")
                inputs_embeds = self.embed_tokens(input_ids)
                if _ple_size(config) and per_layer_inputs is None:
                    per_layer_inputs = self.get_per_layer_inputs(input_ids, inputs_embeds)
            hidden, ple = inputs_embeds, None
            if _ple_size(config):
                ple = self.project_per_layer_inputs(inputs_embeds, per_layer_inputs)

        if position_ids is None:
            position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        if isinstance(attention_mask, dict):
            mask_mapping = attention_mask
        else:
            mask_mapping = _build_or_reuse_pp_causal_mask(self, hidden, attention_mask, cache_position, position_ids)
        position_embeddings = _rotary_embeddings(self, hidden, position_ids, _present_layer_types(self))

        shared_kv_states = KVSharingDict()
        layer_kwargs = _layer_kwargs(kwargs)
        for idx, layer in _iter_layers(getattr(self, "layers", None)):
            layer_type = config.layer_types[idx]
            if getattr(layer.self_attn, "is_kv_shared_layer", False) and layer_type not in shared_kv_states:
                raise ValueError(
                    f"Gemma4 layer {idx} reuses the k/v of an earlier '{layer_type}' layer that is not in this "
                    "pipeline stage; split so KV-shared layers sit in the stage of their producer layer"
                )
            hidden = layer(
                hidden,
                ple[:, :, idx, :] if ple is not None else None,
                shared_kv_states=shared_kv_states,
                position_embeddings=position_embeddings[layer_type],
                attention_mask=mask_mapping[layer_type],
                position_ids=position_ids,
                past_key_values=None,
                **layer_kwargs,
            )
        if getattr(self, "norm", None) is not None:
            return self.norm(hidden)
        if ple is not None:
            return torch.cat([hidden, ple.flatten(2).to(hidden.dtype)], dim=-1)
        return hidden

    return pipeline_forward_gemma4_text


def _gemma4_vision_masks(model: nn.Module, hidden: torch.Tensor, attention_mask, position_ids, mm_token_type_ids):
    """Sliding layers see image tokens bidirectionally when ``use_bidirectional_attention == "vision"``."""
    text_config = model.config.get_text_config()
    if mm_token_type_ids is None or isinstance(attention_mask, dict):
        return attention_mask
    if getattr(text_config, "use_bidirectional_attention", None) != "vision":
        return attention_mask
    from transformers.models.gemma4 import modeling_gemma4 as g4

    if position_ids is None:
        position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    return g4.create_masks_for_vision_model(
        config=text_config,
        inputs_embeds=hidden,
        attention_mask=attention_mask,
        past_key_values=None,
        position_ids=position_ids,
        block_sequence_ids=g4.get_block_sequence_ids_for_mask(mm_token_type_ids, device=hidden.device),
    )


def _gemma4_embed(model: nn.Module, lm: nn.Module, input_ids: torch.Tensor, media: dict[str, Any]):
    """Stage 0: token embeddings (+ token-identity PLE) with image/video/audio soft tokens merged in."""
    config = model.config
    text_config = config.get_text_config()
    mm_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for name in ("image_token_id", "video_token_id", "audio_token_id"):
        token_id = getattr(config, name, None)
        if token_id is not None:
            mm_mask |= input_ids == token_id
    llm_ids = torch.where(mm_mask, text_config.pad_token_id, input_ids)
    inputs_embeds = lm.embed_tokens(llm_ids)
    token_ple = lm.get_per_layer_inputs(llm_ids, inputs_embeds) if _ple_size(text_config) else None

    inner = model.model
    hidden_size = inputs_embeds.shape[-1]
    vision_dtype = _vision_dtype(model)
    for pixel_key, token_name, fn_name in (
        ("pixel_values", "image_token_id", "get_image_features"),
        ("pixel_values_videos", "video_token_id", "get_video_features"),
    ):
        pixels = media.get(pixel_key)
        if pixels is None or pixels.shape[0] == 0:
            continue
        if vision_dtype is not None and pixels.is_floating_point():
            pixels = pixels.to(vision_dtype)
        features = _features(_call_feature_fn(getattr(inner, fn_name), pixels, media, {}), hidden_size)
        token_mask = input_ids == getattr(config, token_name)
        inputs_embeds = _scatter_features(inputs_embeds, token_mask, features, pixel_key)
    audio = media.get("input_features")
    if audio is not None and audio.shape[0]:
        features = _gemma4_audio_features(model, audio, media)
        inputs_embeds = _scatter_features(inputs_embeds, input_ids == config.audio_token_id, features, "input_features")
    return inputs_embeds, token_ple


def create_pipeline_forward_gemma4_vlm() -> Callable:
    """Pipeline-compatible forward for Gemma4ForConditionalGeneration (VLM top-level).

    ``forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
    inputs_embeds=None, labels=None, use_cache=None, logits_to_keep=0, **kwargs) -> Tensor``

    Stage 0: embeds text tokens (placeholders replaced by the pad id, as HF does), computes the
    token-identity PLE, merges image/video features from the vision tower (``pixel_values
    [N, max_patches, D]`` + ``image_position_ids [N, max_patches, 2]``, given as kwargs or staged by
    ``stage_vlm_media_for_pp``), then calls the patched language model. Non-first stages pass hidden
    states straight to the patched language model. ``mm_token_type_ids [B, L]`` builds the vision
    bidirectional sliding masks on every stage. Last stage: applies ``lm_head`` and final-logit
    softcapping (``text_config.final_logit_softcapping``) and returns logits ``[B, L, V]``.
    Audio: ``input_features [n_clips, T, n_mels]`` with ``input_features_mask [n_clips, T]`` (kwargs or
    staged chunk) go through the audio tower on stage 0 (``_gemma4_audio_features``), one soft token per
    ``<|audio|>`` placeholder.
    """

    def pipeline_forward_gemma4_vlm(
        self: nn.Module,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | dict | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> torch.Tensor:
        lm = self.model.language_model
        is_first = inputs_embeds is None and input_ids is not None and not _is_hidden_states(input_ids)
        media = _take_media(self, kwargs, is_first)
        mm_token_type_ids = kwargs.pop("mm_token_type_ids", None)
        per_layer_inputs = kwargs.pop("per_layer_inputs", None)
        if is_first:
            inputs_embeds, per_layer_inputs = _gemma4_embed(self, lm, input_ids, media)
            input_ids = None
        stage_in = inputs_embeds if inputs_embeds is not None else input_ids
        attention_mask = _gemma4_vision_masks(self, stage_in, attention_mask, position_ids, mm_token_type_ids)
        hidden = lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            per_layer_inputs=per_layer_inputs,
            **kwargs,
        )
        if getattr(self, "lm_head", None) is None:
            return hidden
        logits = self.lm_head(slice_logits_to_keep(hidden, logits_to_keep))
        return _apply_softcap(logits, self.config.get_text_config().final_logit_softcapping)

    return pipeline_forward_gemma4_vlm
