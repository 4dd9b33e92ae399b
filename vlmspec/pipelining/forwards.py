"""Generic pipeline-parallel forwards: HF text decoders, causal-LM wrappers and Mistral3 (Pixtral) VLMs.

Each ``create_pipeline_forward_*`` returns an unbound function meant to be bound to a module with
``types.MethodType`` (see ``patch_hf_model_for_pp``). The forwards return plain tensors, as
``torch.distributed.pipelining`` requires: hidden states ``[B, L, H]`` from non-last stages, logits
``[B, L, V]`` (after any final-logit softcapping) from the last stage.
"""

from __future__ import annotations

import inspect
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
    _is_vlm,
    _iter_layers,
    _layer_kwargs,
    _layer_type,
    _prepare_positions,
    _present_layer_types,
    _rotary_embeddings,
    _scatter_features,
    _stage_input,
    _take_media,
    _token_id,
    _uses_mrope,
    _vision_dtype,
    get_text_module,
)


def create_pipeline_forward_inner(model_class_name: str = "AutoModel") -> Callable:
    """Create a pipeline-compatible forward method for HuggingFace inner models (text decoders).

    The returned ``forward(self, input_ids=None, attention_mask=None, position_ids=None,
    past_key_values=None, inputs_embeds=None, use_cache=None, cache_position=None,
    mrope_position_ids=None, **kwargs) -> Tensor``:

    - embeds integer ``input_ids [B, L]`` when ``self.embed_tokens`` is present; a float
      ``input_ids [B, L, H]`` is taken as the previous stage's hidden states;
    - builds (and per stage caches, see ``_build_or_reuse_pp_causal_mask``) the causal mask mapping
      unless ``attention_mask`` is already a ``{layer_type: mask}`` dict;
    - runs the decoder layers this stage holds (ModuleList or index-keyed ModuleDict), each with the
      mask and RoPE table of its ``config.layer_types`` entry;
    - Qwen3-VL DeepStack: with ``visual_pos_masks [B, L]`` and ``deepstack_visual_embeds`` (list of
      ``[n_visual, H]``) in ``kwargs``, adds level ``i`` to the visual tokens after global layer ``i``;
    - applies ``self.norm`` when present (last stage) and returns hidden states ``[B, L, H]``.

    ``model_class_name`` only labels the function (``__qualname__``) for debugging.
    Training-only: no KV cache (``past_key_values``/``use_cache`` are ignored).
    """

    def pipeline_forward_inner(
        self: nn.Module,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | dict | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        cache_position: torch.Tensor | None = None,
        mrope_position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        hidden = _stage_input(self, input_ids, inputs_embeds)
        rope_positions, text_positions = _prepare_positions(self, hidden, position_ids, mrope_position_ids)
        if isinstance(attention_mask, dict):
            mask_mapping = attention_mask
        else:
            mask_mapping = _build_or_reuse_pp_causal_mask(self, hidden, attention_mask, cache_position, text_positions)
        layer_types = _present_layer_types(self)
        position_embeddings = _rotary_embeddings(self, hidden, rope_positions, layer_types)
        layer_kwargs = _layer_kwargs(kwargs)
        visual_pos_masks = kwargs.get("visual_pos_masks")
        deepstack = kwargs.get("deepstack_visual_embeds") or []
        for idx, layer in _iter_layers(getattr(self, "layers", None)):
            layer_type = _layer_type(self.config, idx)
            out = layer(
                hidden,
                attention_mask=mask_mapping[layer_type],
                position_embeddings=position_embeddings[layer_type],
                position_ids=text_positions,
                past_key_values=None,
                use_cache=False,
                **layer_kwargs,
            )
            hidden = out[0] if isinstance(out, tuple) else out
            if idx < len(deepstack):
                # Qwen3-VL DeepStack: the first len(deepstack) layers add multi-level visual features.
                hidden = hidden.clone()
                hidden[visual_pos_masks, :] = hidden[visual_pos_masks, :] + deepstack[idx].to(hidden.dtype)
        if getattr(self, "norm", None) is not None:
            hidden = self.norm(hidden)
        return hidden

    pipeline_forward_inner.__qualname__ = f"{model_class_name}.pipeline_forward_inner"
    return pipeline_forward_inner


# --------------------------------------------------------------------------------------------------
# Stage-0 vision merge
# --------------------------------------------------------------------------------------------------
def _inner_vlm(model: nn.Module) -> nn.Module:
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) else model


def _step3p7_image_features(model: nn.Module, pixel_values: torch.Tensor, media: dict[str, Any]) -> torch.Tensor:
    """Step3p7 (Step-3.7): ``[n_image_tokens, H]`` from global views and local crops.

    Same computation as ``Step3p7Model.get_image_features``: ``vision_model`` + ``multi_modal_projector``
    on ``pixel_values [n_images, C, H, W]`` (global views) and on ``pixel_values_local [sum(num_local_patches),
    C, h, w]`` (local crops); image ``i`` contributes the features of its ``num_local_patches[i]`` crops,
    then those of its global view, the order of its ``<im_patch>`` tokens. A microbatch whose images have
    no crops may carry an empty ``pixel_values_local``; the tower is then not run on it.
    """
    inner = _inner_vlm(model)
    counts = media.get("num_local_patches")
    local = media.get("pixel_values_local")
    n_images = pixel_values.shape[0]
    crops = [0] * n_images if counts is None else [int(c) for c in torch.as_tensor(counts).reshape(-1).tolist()]
    if len(crops) != n_images:
        raise ValueError(f"Step3p7 num_local_patches has {len(crops)} entries but pixel_values holds {n_images} images")
    n_local = 0 if local is None else local.shape[0]
    if n_local != sum(crops):
        raise ValueError(
            f"Step3p7 pixel_values_local has {n_local} crops but num_local_patches {crops} sums to {sum(crops)}"
        )
    project = inner.multi_modal_projector
    global_features = project(inner.vision_model(pixel_values).last_hidden_state)  # [n_images, T, H]
    hidden = global_features.shape[-1]
    local_features = None
    if n_local:
        local = local.to(pixel_values.dtype) if local.is_floating_point() else local
        local_features = project(inner.vision_model(local).last_hidden_state)  # [n_crops, t, H]
    merged, at = [], 0
    for i, c in enumerate(crops):
        if c:
            merged.append(local_features[at : at + c].reshape(-1, hidden))
        merged.append(global_features[i].reshape(-1, hidden))
        at += c
    return torch.cat(merged, dim=0)


_IMAGE_FEATURE_FNS: dict[str, Callable[[nn.Module, torch.Tensor, dict[str, Any]], Any]] = {
    "step3p7": _step3p7_image_features,
}
"""Per-``model_type`` stage-0 image feature functions used by the generic CausalLM forward."""


def _default_image_features(model: nn.Module, pixel_values: torch.Tensor, media: dict[str, Any]):
    special = _IMAGE_FEATURE_FNS.get(getattr(model.config, "model_type", None))
    if special is not None:
        return special(model, pixel_values, media)
    inner = _inner_vlm(model)
    fn = getattr(inner, "get_image_features", None) or getattr(model, "get_image_features", None)
    if fn is None:
        raise ValueError(f"{type(model).__name__} received pixel_values but has no get_image_features()")
    return _call_feature_fn(fn, pixel_values, media, {})


def _default_video_features(model: nn.Module, pixel_values_videos: torch.Tensor, media: dict[str, Any]):
    inner = _inner_vlm(model)
    fn = getattr(inner, "get_video_features", None) or getattr(model, "get_video_features", None)
    if fn is None:
        raise ValueError(f"{type(model).__name__} received pixel_values_videos but has no get_video_features()")
    return _call_feature_fn(fn, pixel_values_videos, media, {})


_PHI4_FEATURE_KEYS = (
    "image_pixel_values",
    "image_sizes",
    "image_attention_mask",
    "audio_input_features",
    "audio_embed_sizes",
    "audio_attention_mask",
)
"""What Phi-4-multimodal's feature embedding (``embed_tokens_extend``) takes besides ids and embeddings."""


def _gemma4_audio_features(model: nn.Module, input_features: torch.Tensor, media: dict[str, Any]) -> torch.Tensor:
    """Gemma 4: the audio soft tokens ``[n_audio_tokens, H]`` of a microbatch's clips, in clip order.

    ``input_features [n_clips, T, n_mels]`` are log-mel frames zero-padded to the batch's longest clip;
    ``input_features_mask [n_clips, T]`` (bool, True = a real frame) is required. ``get_audio_features``
    returns ``pooler_output [n_clips, T', H]`` (``T' = ceil(ceil(T / 2) / 2)``: two stride-2 subsampling
    convolutions, then ``embed_audio`` into the text width ``H``) and ``attention_mask [n_clips, T']``.
    A clip's padded tail has no ``<|audio|>`` placeholder (the processor writes one per valid position),
    so, as ``Gemma4Model.forward`` does, only the valid positions are kept; a microbatch whose clips were
    padded for a longer clip of another microbatch then still yields exactly its own placeholders' count.
    """
    mask = media.get("input_features_mask")
    if mask is None:
        raise ValueError("Gemma4 input_features need input_features_mask (bool [n_clips, T]) to drop padded frames")
    if tuple(mask.shape) != tuple(input_features.shape[:2]):
        raise ValueError(
            f"Gemma4 input_features_mask {tuple(mask.shape)} does not match input_features "
            f"{tuple(input_features.shape)} (expected [n_clips, T] of [n_clips, T, n_mels])"
        )
    # a 0/1 integer mask would index by position below; the tower and the selection need booleans
    output = _inner_vlm(model).get_audio_features(input_features, mask.to(torch.bool), return_dict=True)
    valid = output.attention_mask.to(output.pooler_output.device)
    return output.pooler_output[valid]


_AUDIO_FEATURE_FNS: dict[str, Callable[[nn.Module, torch.Tensor, dict[str, Any]], torch.Tensor]] = {
    "gemma4": _gemma4_audio_features,
}
"""Per-``model_type`` stage-0 audio feature functions (where the tower's output needs more than
``pooler_output``/``last_hidden_state``)."""


def _default_audio_features(model: nn.Module, input_features: torch.Tensor, media: dict[str, Any]) -> torch.Tensor:
    """Audio clips' features ``[n_audio_tokens, H]`` from the model's ``get_audio_features`` (Qwen3-Omni:
    ``input_features [n_clips, mels, T]`` with ``feature_attention_mask [n_clips, T]``; the audio tower's
    ``last_hidden_state`` is what its forward scatters into the audio placeholders). Gemma 4 keeps only
    its clips' valid positions (``_gemma4_audio_features``)."""
    special = _AUDIO_FEATURE_FNS.get(getattr(model.config, "model_type", None))
    if special is not None:
        return special(model, input_features, media)
    inner = _inner_vlm(model)
    fn = getattr(inner, "get_audio_features", None) or getattr(model, "get_audio_features", None)
    if fn is None:
        raise ValueError(f"{type(model).__name__} received input_features but has no get_audio_features()")
    output = _call_feature_fn(fn, input_features, media, {})
    pooled = getattr(output, "pooler_output", None)
    return pooled if pooled is not None else getattr(output, "last_hidden_state", output)


def _embed_and_merge(
    model: nn.Module,
    text: nn.Module,
    input_ids: torch.Tensor,
    media: dict[str, Any],
    image_features_fn: Callable[[nn.Module, torch.Tensor, dict[str, Any]], Any],
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Stage 0: embed ``input_ids [B, L]`` and scatter image/video/audio features into their placeholder tokens.

    Returns ``(inputs_embeds [B, L, H], text_kwargs)``; ``text_kwargs`` carries Qwen3-VL DeepStack
    features (``visual_pos_masks [B, L]``, ``deepstack_visual_embeds``: one ``[n_visual, H]`` per level)
    when the vision tower produces them, else it is empty.
    """
    config = model.config
    embed = text.embed_tokens
    ids = input_ids
    if isinstance(embed, nn.Embedding):
        # Placeholder ids may lie outside the text vocabulary (e.g. LLaVA); their rows are overwritten below.
        ids = ids.masked_fill(ids >= embed.num_embeddings, 0)
    inputs_embeds = embed(ids)
    extend = getattr(text, "embed_tokens_extend", None)
    if extend is not None and any(media.get(k) is not None for k in ("image_pixel_values", "audio_input_features")):
        # Phi-4-multimodal: its feature embedding writes image and audio features into the <|image|> /
        # <|audio|> rows itself
        inputs_embeds = extend(input_ids, inputs_embeds, **{k: media.get(k) for k in _PHI4_FEATURE_KEYS})
    hidden_size = inputs_embeds.shape[-1]
    vision_dtype = _vision_dtype(model)
    deepstack: list[tuple[torch.Tensor, list[torch.Tensor]]] = []

    streams = [
        ("pixel_values", ("image_token_id", "image_token_index"), image_features_fn),
        ("pixel_values_videos", ("video_token_id", "video_token_index"), _default_video_features),
    ]
    if extend is None:  # Phi-4-multimodal's feature embedding owns its audio too
        streams.append(("input_features", ("audio_token_id", "audio_token_index"), _default_audio_features))
    for pixel_key, token_names, fn in streams:
        pixels = media.get(pixel_key)
        if pixels is None or pixels.shape[0] == 0:
            continue  # this microbatch has no such media
        if vision_dtype is not None and pixels.is_floating_point() and pixel_key != "input_features":
            pixels = pixels.to(vision_dtype)
        token_id = _token_id(config, *token_names)
        if token_id is None:
            raise ValueError(f"{type(model).__name__}.config has no {token_names[0]}; cannot place {pixel_key}")
        output = fn(model, pixels, media)
        token_mask = input_ids == token_id
        inputs_embeds = _scatter_features(inputs_embeds, token_mask, _features(output, hidden_size), pixel_key)
        levels = getattr(output, "deepstack_features", None)
        if levels:
            deepstack.append((token_mask, [_features(level, hidden_size) for level in levels]))
    return inputs_embeds, _deepstack_kwargs(deepstack)


def _deepstack_kwargs(streams: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> dict[str, Any]:
    """Join per-stream DeepStack features into the text model's ``visual_pos_masks``/``deepstack_visual_embeds``.

    ``streams``: ``(token_mask [B, L], [features [n_tokens, H] per level])`` for images and/or videos. Like
    HF Qwen3-VL, level ``i`` is one ``[n_visual, H]`` tensor over all visual tokens in sequence order.
    """
    if not streams:
        return {}
    joint = streams[0][0]
    for mask, _ in streams[1:]:
        joint = joint | mask
    embeds = []
    for level in range(len(streams[0][1])):
        first = streams[0][1][level]
        out = first.new_zeros(int(joint.sum()), first.shape[-1])
        for mask, levels in streams:
            out[mask[joint]] = levels[level]
        embeds.append(out)
    return {"visual_pos_masks": joint, "deepstack_visual_embeds": embeds}


def _vision_mask_mapping(
    model: nn.Module,
    hidden: torch.Tensor,
    attention_mask: Any,
    position_ids: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
) -> Any:
    """Gemma3-style bidirectional image-block masks from ``token_type_ids [B, L]`` (every stage)."""
    if token_type_ids is None or isinstance(attention_mask, dict):
        return attention_mask
    hook = getattr(type(model), "create_masks_for_generate", None)
    if hook is None or "token_type_ids" not in inspect.signature(hook).parameters:
        return attention_mask
    return hook(model.config, hidden, attention_mask, None, position_ids, token_type_ids=token_type_ids)


def _make_causal_lm_forward(image_features_fn: Callable, name: str) -> Callable:
    def forward(
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
        text = get_text_module(self.model) if isinstance(getattr(self, "model", None), nn.Module) else self
        is_first = inputs_embeds is None and input_ids is not None and not _is_hidden_states(input_ids)
        media = _take_media(self, kwargs, is_first)
        token_type_ids = kwargs.pop("token_type_ids", None)
        mm_token_type_ids = kwargs.pop("mm_token_type_ids", None)
        if (
            mm_token_type_ids is not None
            and _uses_mrope(text.config)
            and position_ids is None
            and kwargs.get("mrope_position_ids") is None
        ):
            # HF would derive 3-D M-RoPE positions from the media here; stages after the first cannot.
            raise ValueError(
                "mm_token_type_ids given without position_ids: M-RoPE positions depend on the media and only "
                "stage 0 sees it. Compute them in the data pipeline (model.model.get_rope_index(...)) and pass "
                "them batch-first as mrope_position_ids [B, 3, L] to every stage"
            )
        if is_first and _is_vlm(self):
            inputs_embeds, text_kwargs = _embed_and_merge(self, text, input_ids, media, image_features_fn)
            kwargs.update(text_kwargs)
            input_ids = None
        elif media.get("pixel_values") is not None or media.get("pixel_values_videos") is not None:
            raise ValueError(f"{type(self).__name__} is not a vision-language model but received media inputs")
        stage_in = inputs_embeds if inputs_embeds is not None else input_ids
        if token_type_ids is not None and _is_hidden_states(stage_in):
            attention_mask = _vision_mask_mapping(self, stage_in, attention_mask, position_ids, token_type_ids)
        hidden = text(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        lm_head = getattr(self, "lm_head", None)
        if lm_head is None:
            return hidden
        logits = lm_head(slice_logits_to_keep(hidden, logits_to_keep))
        # Only configs that carry the cap at top level (e.g. Gemma2/3 *ForCausalLM) softcap in HF too.
        return _apply_softcap(logits, getattr(self.config, "final_logit_softcapping", None))

    forward.__qualname__ = name
    return forward


def create_pipeline_forward_causal_lm() -> Callable:
    """Create a pipeline-compatible forward method for causal LM wrappers (``*ForCausalLM`` and generic VLMs).

    ``forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
    inputs_embeds=None, labels=None, use_cache=None, logits_to_keep=0, **kwargs) -> Tensor``:

    - Stage 0 of a VLM embeds ``input_ids [B, L]`` and scatters vision and audio features into the
      image/video/audio placeholder tokens. Media come from ``pixel_values``/``image_grid_thw``/
      ``pixel_values_videos``/``input_features``/... kwargs, or from the chunk attached by
      ``stage_vlm_media_for_pp`` (chunk ``k`` for microbatch ``k``).
      Text-only models hand integer ids to the (patched) text module, which embeds them.
      Step3p7 computes its features from global views and local crops (``_step3p7_image_features``:
      ``pixel_values``, ``pixel_values_local``, ``num_local_patches``).
    - ``token_type_ids [B, L]`` (Gemma3) builds the bidirectional image-block masks on every stage.
    - Non-first stages receive hidden states ``[B, L, H]`` in ``input_ids``.
    - The last stage (``lm_head`` present) returns logits ``[B, L, V]``, softcapped when
      ``config.final_logit_softcapping`` is set; other stages return hidden states.
    ``labels`` is ignored: under PP the loss is computed by the schedule's ``loss_fn``.
    """
    return _make_causal_lm_forward(_default_image_features, "pipeline_forward_causal_lm")


def _mistral3_image_features(model: nn.Module, pixel_values: torch.Tensor, media: dict[str, Any]) -> torch.Tensor:
    """``vision_tower`` + ``multi_modal_projector`` -> ``[n_image_tokens, H]``.

    Same computation as ``Mistral3Model.get_image_features`` without its final ``squeeze(0)``/``split``,
    which breaks when a microbatch's images yield exactly one token.
    """
    image_sizes = media.get("image_sizes")
    if image_sizes is None:
        raise ValueError("Mistral3 pixel_values need image_sizes (long [n_images, 2]) to locate each image")
    inner = _inner_vlm(model)
    layer = getattr(model.config, "vision_feature_layer", -1)
    out = inner.vision_tower(pixel_values, image_sizes=image_sizes, output_hidden_states=True, return_dict=True)
    if isinstance(layer, int):
        selected = out.hidden_states[layer]
    else:
        selected = torch.cat([out.hidden_states[i] for i in layer], dim=-1)
    return inner.multi_modal_projector(selected.squeeze(0), image_sizes)


def create_pipeline_forward_mistral3_vlm() -> Callable:
    """Pipeline-compatible forward for Mistral3ForConditionalGeneration (VLM top-level).

    Stage 0: embeds text tokens, runs ``vision_tower`` + ``multi_modal_projector`` (via
    ``get_image_features(pixel_values [N, C, H, W], image_sizes [N, 2])``) and scatters the image
    features into the ``image_token_id`` positions, then calls the patched language model.
    Non-first stages pass hidden states straight through the patched language model. Last stage:
    applies ``lm_head`` and returns logits ``[B, L, V]``.
    """
    return _make_causal_lm_forward(_mistral3_image_features, "pipeline_forward_mistral3_vlm")
