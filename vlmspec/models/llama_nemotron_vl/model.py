"""LlamaNemotronVLModel: SigLIP tiles -> pixel shuffle -> MLP projector -> Llama (bidirectional or causal).

Conventions
-----------
- ``pixel_values``: ``[N_tiles, 3, S, S]``, every tile of every sample of the batch, in sample order.
- ``input_ids``: ``[B, L]``; each tile is represented by ``num_image_token`` consecutive
  ``<IMG_CONTEXT>`` ids (``config.img_context_token_id``), wrapped in ``<img>`` ... ``</img>``.
- ``attention_mask``: ``[B, L]``, 1 = real, 0 = padding (left or right).
- ``labels`` (causal LM only): ``[B, L]`` aligned with ``input_ids``, -100 = ignore; shifted inside
  (the transformers convention), unlike the collate functions' pre-shifted labels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaForCausalLM, PreTrainedModel, SiglipVisionModel
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import logging

from .bidirectional import LlamaBidirectionalModel
from .config import POOLING_TYPES, LlamaNemotronVLConfig
from .pooling import pool
from .vision import _filter_vision_embeddings_by_image_flags, _replace_image_token_embeddings
from .vision import pixel_shuffle as _pixel_shuffle

__all__ = ["LlamaNemotronVLModel"]

logger = logging.get_logger(__name__)

# Keys of a processor batch that forward() understands; anything else (e.g. bookkeeping) is dropped.
_FORWARD_INPUT_KEYS = ("pixel_values", "input_ids", "attention_mask", "position_ids", "image_flags", "num_patches_list")


class LlamaNemotronVLModel(PreTrainedModel):
    """LlamaNemotron VL model for vision-language reranking.

    Combines a vision encoder (SigLIP) with a bidirectional language model (LLaMA)
    for cross-modal reranking tasks.

    Submodules: ``vision_model`` (SigLIP, or the one passed in), ``mlp1`` (LayerNorm -> Linear -> GELU ->
    Linear, from ``vision_hidden * k*k`` to the LLM hidden size, ``k = 1/downsample_ratio``) and
    ``language_model``: a :class:`LlamaBidirectionalModel` (an encoder: no logits) when
    ``config.bidirectional_attention``, else a :class:`~transformers.LlamaForCausalLM` (logits, loss).

    ``processor`` (attribute, default None) is the processor ``encode_queries``/``encode_documents`` use;
    when unset they build the SYNTHETIC stand-in with :func:`.processing.load_processor`.
    """

    config_class = LlamaNemotronVLConfig
    config: LlamaNemotronVLConfig
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["SiglipEncoderLayer", "LlamaDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = False
    _supports_attention_backend = True

    def __init__(
        self,
        config: LlamaNemotronVLConfig,
        vision_model: PreTrainedModel | None = None,
        language_model: PreTrainedModel | None = None,
    ) -> None:
        super().__init__(config)
        self.select_layer = config.select_layer
        self.downsample_ratio = config.downsample_ratio
        self.img_context_token_id = config.img_context_token_id
        self.image_size = config.image_size
        self.patch_size = config.patch_size
        self.num_image_token = config.num_image_token
        self.processor = None

        self.vision_model = vision_model if vision_model is not None else SiglipVisionModel(config.vision_config)
        if language_model is None:
            llm_cls = LlamaBidirectionalModel if config.bidirectional_attention else LlamaForCausalLM
            language_model = llm_cls(config.llm_config)
        self.language_model = language_model

        vit_hidden = config.vision_config.hidden_size
        llm_hidden = config.llm_config.hidden_size
        folded = vit_hidden * round(1 / config.downsample_ratio) ** 2
        self.mlp1 = nn.Sequential(
            nn.LayerNorm(folded), nn.Linear(folded, llm_hidden), nn.GELU(), nn.Linear(llm_hidden, llm_hidden)
        )
        self.post_init()

    # -- embeddings accessors -------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        """The LM head (``[V, H]`` linear), or None for the bidirectional encoder."""
        getter = getattr(self.language_model, "get_output_embeddings", None)
        return getter() if getter is not None else None

    # -- vision -------------------------------------------------------------------------------------
    def pixel_shuffle(self, x: torch.Tensor, scale_factor: float = 0.5) -> torch.Tensor:
        """``[N, A, B, C] -> [N, A*s, B*s, C/s**2]`` for ``s = 1/k`` (fold) or ``s = k`` (its exact inverse).

        See :func:`.vision.pixel_shuffle` for the channel order.
        """
        return _pixel_shuffle(x, scale_factor)

    def extract_feature(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Extract and project vision features to language model space.

        pixel_values: ``[N_tiles, 3, S, S]`` -> ``[N_tiles, num_image_token, llm_hidden]``.
        Vision states (``select_layer``; -1 = final, post-layernorm) ``[N, (S/p)**2, C]`` are laid out
        as the ``S/p x S/p`` patch grid, pixel-shuffled with ``downsample_ratio`` and projected by ``mlp1``.
        """
        param = next(self.vision_model.parameters())
        pixel_values = pixel_values.to(device=param.device, dtype=param.dtype)
        if self.select_layer == -1:
            vit = self.vision_model(pixel_values=pixel_values).last_hidden_state
        else:
            out = self.vision_model(pixel_values=pixel_values, output_hidden_states=True)
            vit = out.hidden_states[self.select_layer]
        n, patches, channels = vit.shape
        side = int(round(patches**0.5))
        if side * side != patches:
            raise ValueError(f"vision tower returned {patches} patch states per tile, not a square grid")
        vit = self.pixel_shuffle(vit.reshape(n, side, side, channels), scale_factor=self.downsample_ratio)
        vit = vit.reshape(n, -1, vit.shape[-1])
        return self.mlp1(vit)

    def _dummy_pixel_values(self) -> torch.Tensor:
        param = next(self.vision_model.parameters())
        return torch.zeros(1, 3, self.image_size, self.image_size, dtype=param.dtype, device=param.device)

    def _merge_vision(
        self,
        input_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None,
        image_flags: torch.Tensor | None,
        num_patches_list: list[Any] | None,
        run_dummy_vision: bool | None,
    ) -> torch.Tensor:
        if pixel_values is not None:
            if num_patches_list is not None:
                total = sum(int(n) for n in num_patches_list)
                if total != pixel_values.shape[0]:
                    raise ValueError(
                        f"num_patches_list sums to {total} tiles but pixel_values holds {pixel_values.shape[0]}"
                    )
            vit = self.extract_feature(pixel_values)
            kept = _filter_vision_embeddings_by_image_flags(vit, image_flags)
            if num_patches_list is not None:
                self._check_tiles_per_sample(input_ids, num_patches_list, image_flags, vit.shape[1])
            merged = _replace_image_token_embeddings(input_embeds, input_ids, kept, self.img_context_token_id)
            if kept.shape[0] != vit.shape[0]:
                # Dropped (placeholder) tiles still ran: keep them in the graph so every rank's vision
                # parameters get (zero) gradients and FSDP/DDP collectives line up.
                merged = merged + (vit.sum() * 0.0).to(merged.dtype)
            return merged
        n_ctx = int((input_ids == self.img_context_token_id).sum())
        if n_ctx:
            raise ValueError(
                f"input_ids contain {n_ctx} image context tokens (id {self.img_context_token_id}) "
                "but no pixel_values were given (0 vision embeddings)"
            )
        if run_dummy_vision is None:
            run_dummy_vision = self.training and torch.is_grad_enabled()
        if run_dummy_vision:
            # A text-only batch still runs the vision tower on one blank tile and adds 0 * its output:
            # embeddings are bit-identical, and the tower's parameters join the autograd graph.
            vit = self.extract_feature(self._dummy_pixel_values())
            input_embeds = input_embeds + (vit.sum() * 0.0).to(input_embeds.dtype)
        return input_embeds

    def _check_tiles_per_sample(
        self,
        input_ids: torch.Tensor,
        num_patches_list: list[Any],
        image_flags: torch.Tensor | None,
        tokens_per_tile: int,
    ) -> None:
        """Every sample's ``<IMG_CONTEXT>`` count must equal its real tiles x ``tokens_per_tile``.

        The total check in :func:`._replace_image_token_embeddings` cannot see vision rows that would
        land in the wrong sample (one sample short, another over by the same amount); this one can.
        """
        if len(num_patches_list) != input_ids.shape[0]:
            raise ValueError(
                f"num_patches_list has {len(num_patches_list)} entries but the batch has "
                f"{input_ids.shape[0]} samples (it gives the tiles of each sample)"
            )
        flags = None if image_flags is None else image_flags.reshape(-1).to(torch.long).cpu()
        counts = (input_ids == self.img_context_token_id).sum(dim=1).tolist()
        start = 0
        for i, n in enumerate(int(n) for n in num_patches_list):
            real = n if flags is None else int((flags[start : start + n] == 1).sum())
            start += n
            if counts[i] != real * tokens_per_tile:
                raise ValueError(
                    f"sample {i}: input_ids hold {counts[i]} image context tokens (id {self.img_context_token_id}) "
                    f"but num_patches_list[{i}] = {n} tile(s) ({real} real) need {real * tokens_per_tile} "
                    f"({tokens_per_tile} per tile)"
                )

    # -- forward --------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.FloatTensor = None,
        input_ids: torch.LongTensor = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        image_flags: torch.LongTensor | None = None,
        past_key_values: list[torch.FloatTensor] | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        num_patches_list: list[torch.Tensor] | None = None,
        run_dummy_vision: bool | None = None,
    ) -> tuple | CausalLMOutputWithPast:
        """Embed text, splice in vision embeddings, run the language model.

        pixel_values ``[N_tiles, 3, S, S]`` (or None), input_ids/attention_mask/position_ids ``[B, L]``,
        image_flags ``[N_tiles]`` (1 = real tile), num_patches_list: tiles per sample, ``B`` entries
        (checked against ``N_tiles`` and against each sample's ``<IMG_CONTEXT>`` count). run_dummy_vision: for a batch without pixel_values, run the vision tower on one
        blank tile and add ``0 *`` its output (outputs unchanged, vision parameters get gradients);
        None = only when training with grad enabled. use_cache defaults to False.

        Returns :class:`CausalLMOutputWithPast`:

        - causal LM: ``logits`` ``[B, L, V]``, ``loss`` when labels are given, ``hidden_states`` only
          with ``output_hidden_states``;
        - bidirectional encoder: ``logits``/``loss`` None (labels raise ValueError); ``hidden_states``
          always set, its last entry the final ``[B, L, H]`` states (all layers with
          ``output_hidden_states``).

        ``output_attentions`` is accepted for API compatibility; attentions are not returned.
        """
        if input_ids is None:
            raise ValueError("input_ids is required")
        if return_dict is None:
            return_dict = self.config.return_dict
        if output_attentions:
            logger.warning_once("LlamaNemotronVLModel does not return attentions; output_attentions is ignored")
        head = self.get_output_embeddings()
        if labels is not None and head is None:
            raise ValueError(
                "labels were given but the language model has no LM head "
                "(bidirectional_attention=True builds an encoder); compute the loss on pooled embeddings"
            )

        input_embeds = self.get_input_embeddings()(input_ids)
        input_embeds = self._merge_vision(
            input_embeds, input_ids, pixel_values, image_flags, num_patches_list, run_dummy_vision
        )
        lm_kwargs: dict[str, Any] = dict(
            inputs_embeds=input_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=bool(use_cache),
            output_hidden_states=bool(output_hidden_states),
        )
        if head is not None:
            out = self.language_model(labels=labels, **lm_kwargs)
            result = CausalLMOutputWithPast(
                loss=out.loss,
                logits=out.logits,
                past_key_values=out.past_key_values,
                hidden_states=out.hidden_states,
            )
        else:
            out = self.language_model(**lm_kwargs)
            hidden = out.hidden_states if output_hidden_states else (out.last_hidden_state,)
            result = CausalLMOutputWithPast(past_key_values=out.past_key_values, hidden_states=hidden)
        return result if return_dict else result.to_tuple()

    # -- retrieval API ----------------------------------------------------------------------------
    def _get_processor(self, processor: Any = None) -> Any:
        if processor is not None:
            return processor
        if self.processor is None:
            from .processing import load_processor

            self.processor = load_processor(self.config)
        return self.processor

    def _embed_batch(self, inputs: dict[str, Any], pool_type: str | None = None) -> torch.Tensor:
        """Encodes the inputs into a tensor of embeddings.

        Args:
            inputs: A dictionary of inputs to the model. You can prepare the inputs using the
                processor.process_queries and processor.process_documents methods.
            pool_type: The type of pooling to use. If None, the pooling type is set to the pooling type
                configured in the model.

        Returns:
            A tensor of embeddings: ``[B, H]`` (``[B, 2H]`` for cls_last, ``[B, L, H]`` for colbert),
            L2-normalized along the last dim, in the model's dtype.

        Raises ValueError for an unknown pool type (before running the model), missing ``input_ids``, or
        image tiles that do not match the ``<IMG_CONTEXT>`` tokens.
        """
        pool_type = self.config.pooling if pool_type is None else pool_type
        if pool_type not in POOLING_TYPES:
            # Checked before the forward pass, not after it.
            raise ValueError(f"unknown pool_type {pool_type!r}; supported: {', '.join(POOLING_TYPES)}")
        device = self.get_input_embeddings().weight.device
        model_inputs = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for k, v in inputs.items()
            if k in _FORWARD_INPUT_KEYS
        }
        if "input_ids" not in model_inputs:
            raise ValueError(f"inputs need 'input_ids'; got keys {sorted(inputs)}")
        if model_inputs.get("attention_mask") is None:
            model_inputs["attention_mask"] = torch.ones_like(model_inputs["input_ids"])
        out = self(**model_inputs, output_hidden_states=True, return_dict=True)
        embeddings = pool(out.hidden_states[-1], model_inputs["attention_mask"], pool_type)
        return F.normalize(embeddings, p=2, dim=-1)

    def encode_queries(self, queries: list[str], **kwargs: Any) -> torch.Tensor:
        """Encodes the input queries into a tensor of embeddings.

        Args:
            queries: A list of queries.
            kwargs: ``processor`` (else ``self.processor`` / the synthetic default), ``pool_type``;
                the rest go to ``processor.process_queries``.

        Returns:
            A tensor of embeddings (see :meth:`_embed_batch`), one row per query.
        """
        if isinstance(queries, str):
            raise TypeError("queries must be a list of str, got a single str (wrap it in a list)")
        processor = self._get_processor(kwargs.pop("processor", None))
        pool_type = kwargs.pop("pool_type", None)
        batch = processor.process_queries(list(queries), **kwargs)
        with torch.inference_mode():
            return self._embed_batch(batch, pool_type=pool_type)

    def encode_documents(
        self, images: list[Any] | None = None, texts: list[str] | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Encodes the input document images and texts into a tensor of embeddings.

        Args:
            images: A list of PIL.Image of document pages images (entries may be None).
            texts: A list of document page texts (entries may be None); same length as images when both
                are given.
            kwargs: as for :meth:`encode_queries`, passed to ``processor.process_documents``.

        Returns:
            A tensor of embeddings, one row per document.
        """
        if images is None and texts is None:
            raise ValueError("encode_documents needs images, texts, or both")
        processor = self._get_processor(kwargs.pop("processor", None))
        pool_type = kwargs.pop("pool_type", None)
        batch = processor.process_documents(images=images, texts=texts, **kwargs)
        with torch.inference_mode():
            return self._embed_batch(batch, pool_type=pool_type)

    def build_collator(self, processor: Any = None, **kwargs: Any):
        """A :class:`.processing.RetrievalCollator` over ``processor`` (default: this model's)."""
        from .processing import RetrievalCollator

        return RetrievalCollator(self._get_processor(processor), **kwargs)

    def post_loss(self, loss: torch.Tensor, inputs: Any) -> torch.Tensor:
        """Training-loop hook applied to the loss; returns it unchanged.

        This model already folds its dummy-vision term into the embeddings inside :meth:`forward`, so
        there is nothing to add here.
        """
        return loss
