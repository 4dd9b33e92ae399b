"""Bidirectional (non-causal) Llama: every real token attends to every real token, padding to none.

The transformers-compatibility probes below are computed from the installed transformers, so the same
forward runs on releases that name the decoder-layer cache argument ``past_key_value`` or
``past_key_values``, whose ``DynamicCache`` does or does not take ``config``, and that do or do not ship
``masking_utils.create_bidirectional_mask``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache, LlamaModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.llama.modeling_llama import LlamaDecoderLayer
from transformers.utils import logging

from .config import LlamaBidirectionalConfig

try:  # transformers >= 4.56 / 5.x
    from transformers.masking_utils import create_bidirectional_mask as _native_bidirectional_mask
except ImportError:  # pragma: no cover - older transformers
    _native_bidirectional_mask = None

__all__ = [
    "LlamaBidirectionalModel",
    "_DYNAMIC_CACHE_ACCEPTS_CONFIG",
    "_HAS_NATIVE_BIDIRECTIONAL_MASK",
    "_USE_PLURAL_CACHE_PARAM",
    "_decoder_forward_params",
    "_dynamic_cache_init_params",
    "padding_only_mask",
]

logger = logging.get_logger(__name__)

_HAS_NATIVE_BIDIRECTIONAL_MASK: bool = _native_bidirectional_mask is not None
_decoder_forward_params = inspect.signature(LlamaDecoderLayer.forward).parameters
_dynamic_cache_init_params = inspect.signature(DynamicCache.__init__).parameters
_USE_PLURAL_CACHE_PARAM: bool = "past_key_values" in _decoder_forward_params
_DYNAMIC_CACHE_ACCEPTS_CONFIG: bool = "config" in _dynamic_cache_init_params


def padding_only_mask(attention_mask: torch.Tensor, q_length: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4D mask that hides padded keys only (no causal triangle).

    attention_mask: ``[B, K]``, 1 = real token, 0 = padding.
    Returns ``[B, 1, q_length, K]`` in ``dtype``: 0 where the key is real, ``finfo(dtype).min`` where it
    is padding. Query rows of padding positions still see the real keys, so they stay finite.
    """
    keep = attention_mask.to(torch.bool)[:, None, None, :]
    mask = torch.zeros(keep.shape, dtype=dtype, device=attention_mask.device)
    mask = mask.masked_fill(~keep, torch.finfo(dtype).min)
    return mask.expand(-1, 1, q_length, -1)


class LlamaBidirectionalModel(LlamaModel):
    """LlamaModel modified to use bidirectional (non-causal) attention.

    Supports transformers 4.44+ through 5.x with a unified forward() implementation.

    Same weights and modules as :class:`~transformers.LlamaModel`; two differences: every attention
    module has ``is_causal = False`` (so SDPA never falls back to its causal kernel when the mask is
    skipped) and the mask is :meth:`_create_bidirectional_mask` (padding-only) instead of a causal mask.
    """

    config_class = LlamaBidirectionalConfig

    def __init__(self, config: LlamaBidirectionalConfig) -> None:
        super().__init__(config)
        for layer in self.layers:
            layer.self_attn.is_causal = False

    def _create_bidirectional_mask(
        self, input_embeds: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Padding-only attention mask for the configured attention implementation.

        input_embeds: ``[B, L, H]`` (only its batch size, length, dtype and device are read).
        attention_mask: ``[B, L]`` (1 = real, 0 = padding), an already-built 4D mask (returned as is),
        or None.
        Returns None when nothing needs masking (no padding, SDPA/flash), otherwise a mask in the format
        of ``config._attn_implementation`` (bool ``[B, 1, L, L]`` for SDPA, additive float for eager).
        """
        if attention_mask is not None and attention_mask.dim() == 4:
            return attention_mask
        if _HAS_NATIVE_BIDIRECTIONAL_MASK:
            return _native_bidirectional_mask(
                config=self.config, inputs_embeds=input_embeds, attention_mask=attention_mask
            )
        if attention_mask is None:  # pragma: no cover - older transformers
            return None
        if self.config._attn_implementation == "flash_attention_2":  # pragma: no cover
            return attention_mask if (attention_mask == 0).any() else None
        return padding_only_mask(attention_mask, input_embeds.shape[1], input_embeds.dtype)  # pragma: no cover

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        cache_position: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """Encode a batch bidirectionally.

        input_ids: ``[B, L]`` or inputs_embeds: ``[B, L, H]`` (exactly one).
        attention_mask: ``[B, L]`` (or ``[B, past+L]`` with a cache), 1 = real, 0 = padding.
        position_ids: ``[B, L]``; default ``past + arange(L)`` (RoPE is relative, so left padding does not
        change real tokens' outputs under this default).
        use_cache: default False — an encoder does not grow a cache unless asked.
        Returns ``last_hidden_state`` ``[B, L, H]`` (after the final norm) and, with
        ``output_hidden_states``, ``hidden_states``: ``num_hidden_layers + 1`` tensors whose last one is
        ``last_hidden_state``.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        for unsupported in ("output_attentions", "return_dict"):
            kwargs.pop(unsupported, None)
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        use_cache = bool(use_cache)

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)

        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config) if _DYNAMIC_CACHE_ACCEPTS_CONFIG else DynamicCache()

        if position_ids is None:
            if cache_position is not None:
                position_ids = cache_position.unsqueeze(0)
            else:
                past = past_key_values.get_seq_length() if past_key_values is not None else 0
                position_ids = torch.arange(past, past + inputs_embeds.shape[1], device=inputs_embeds.device)
                position_ids = position_ids.unsqueeze(0)

        mask = self._create_bidirectional_mask(inputs_embeds, attention_mask)
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)

        layer_kwargs: dict[str, Any] = dict(kwargs)
        layer_kwargs["past_key_values" if _USE_PLURAL_CACHE_PARAM else "past_key_value"] = past_key_values
        if "cache_position" in _decoder_forward_params and cache_position is not None:
            layer_kwargs["cache_position"] = cache_position

        all_hidden: list[torch.Tensor] = []
        for layer in self.layers[: self.config.num_hidden_layers]:
            if output_hidden_states:
                all_hidden.append(hidden_states)
            out = layer(
                hidden_states,
                attention_mask=mask,
                position_ids=position_ids,
                use_cache=use_cache,
                position_embeddings=position_embeddings,
                **layer_kwargs,
            )
            hidden_states = out[0] if isinstance(out, tuple) else out  # <5.0 layers return tuples

        hidden_states = self.norm(hidden_states)
        if output_hidden_states:
            all_hidden.append(hidden_states)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            past_key_values=past_key_values if use_cache else None,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
        )
