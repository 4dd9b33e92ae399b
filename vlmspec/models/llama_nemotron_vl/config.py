"""Configurations: the bidirectional Llama encoder and the Llama-Nemotron VL composite.

``LlamaNemotronVLConfig`` = SigLIP vision tower config (``vision_config``) + Llama config (``llm_config``)
+ the glue that the model and the processor share (pixel-shuffle ratio, image placeholder id, tiling,
query/passage prefixes and max lengths, pooling).
"""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig, PreTrainedConfig, SiglipVisionConfig

__all__ = ["LlamaBidirectionalConfig", "LlamaNemotronVLConfig", "POOLING_TYPES"]

POOLING_TYPES = ("avg", "weighted_avg", "cls", "last", "cls_last", "colbert")


class LlamaBidirectionalConfig(LlamaConfig):
    """Configuration for bidirectional (non-causal) LLaMA model.

    A :class:`~transformers.LlamaConfig` plus two embedding-model fields:

    - ``pooling``: how token states become one vector (see :func:`..pooling.pool`), default ``"avg"``.
    - ``temperature``: the softmax temperature a contrastive loss divides similarities by.
    """

    model_type = "llama_bidirec"

    def __init__(self, pooling: str = "avg", temperature: float = 1.0, **kwargs: Any) -> None:
        # Set before the parent init: its __post_init__ may read/serialize attributes.
        self.pooling = pooling
        self.temperature = temperature
        super().__init__(**kwargs)


def _as_vision_config(value: Any) -> SiglipVisionConfig:
    if value is None:
        # No pooling head by default: the model uses patch states only, and an unused head would leave
        # parameters without gradients (which DDP/FSDP report as errors).
        return SiglipVisionConfig(vision_use_head=False)
    if isinstance(value, PreTrainedConfig):
        return value
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "model_type"}
        return SiglipVisionConfig(**value)
    raise TypeError(f"vision_config must be a dict, a PreTrainedConfig or None, got {type(value).__name__}")


def _as_llm_config(value: Any, bidirectional: bool) -> LlamaConfig:
    if isinstance(value, PreTrainedConfig):
        return value
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"llm_config must be a dict, a PreTrainedConfig or None, got {type(value).__name__}")
    value = dict(value or {})
    model_type = value.pop("model_type", None)
    if bidirectional or model_type == LlamaBidirectionalConfig.model_type:
        return LlamaBidirectionalConfig(**value)
    value.pop("pooling", None)
    value.pop("temperature", None)
    return LlamaConfig(**value)


class LlamaNemotronVLConfig(PreTrainedConfig):
    """Base configuration for vision-language models combining vision and language components.

    This serves as the foundation for LlamaNemotronVL configurations.

    Fields that drive the model and the processor:

    - ``vision_config`` (SigLIP) / ``llm_config`` (Llama; a :class:`LlamaBidirectionalConfig` when
      ``bidirectional_attention`` is true or its dict says ``model_type="llama_bidirec"``).
    - ``downsample_ratio``: pixel-shuffle scale; each tile yields
      ``(image_size // patch_size) ** 2 * downsample_ratio ** 2`` tokens (:attr:`num_image_token`).
    - ``force_image_size``: tile side in pixels; ``None`` = ``vision_config.image_size``.
    - ``select_layer``: which vision hidden state feeds the projector (``-1`` = last, post-layernorm).
    - ``img_context_token_id``: id of ``<IMG_CONTEXT>``, the placeholder replaced by vision embeddings.
    - ``dynamic_image_size`` / ``min_dynamic_patch`` / ``max_dynamic_patch`` / ``max_input_tiles`` /
      ``use_thumbnail``: how the processor tiles an image (at most ``max_input_tiles`` tiles).
    - ``query_prefix`` / ``passage_prefix`` / ``q_max_length`` / ``p_max_length``: retrieval inputs.
    - ``pooling``: default pool type for embeddings; ``vocab_size=-1`` means "that of ``llm_config``".

    ``use_backbone_lora``, ``use_llm_lora``, ``template``, ``mlp_checkpoint``, ``pre_feature_reduction``
    and ``keep_aspect_ratio`` are stored for checkpoint compatibility; this implementation does not act
    on them.
    """

    model_type = "llama_nemotron_vl"
    sub_configs_defaults = {"vision_config": SiglipVisionConfig, "llm_config": LlamaConfig}

    def __init__(
        self,
        vision_config=None,
        llm_config=None,
        use_backbone_lora=0,
        use_llm_lora=0,
        select_layer=-1,
        force_image_size=None,
        downsample_ratio=0.5,
        template=None,
        dynamic_image_size=False,
        use_thumbnail=False,
        min_dynamic_patch=1,
        max_dynamic_patch=6,
        mlp_checkpoint=True,
        pre_feature_reduction=False,
        keep_aspect_ratio=False,
        vocab_size=-1,
        q_max_length: int | None = 512,
        p_max_length: int | None = 10240,
        query_prefix: str = "query:",
        passage_prefix: str = "passage:",
        pooling: str = "last",
        bidirectional_attention: bool = False,
        max_input_tiles: int = 2,
        img_context_token_id: int = 128258,
        **kwargs: Any,
    ) -> None:
        if pooling not in POOLING_TYPES:
            raise ValueError(f"pooling must be one of {POOLING_TYPES}, got {pooling!r}")
        if not 0 < downsample_ratio <= 1 or abs(1 / downsample_ratio - round(1 / downsample_ratio)) > 1e-6:
            raise ValueError(f"downsample_ratio must be 1/k for a positive integer k, got {downsample_ratio}")
        self.vision_config = _as_vision_config(vision_config)
        self.llm_config = _as_llm_config(llm_config, bidirectional_attention)
        self.use_backbone_lora = use_backbone_lora
        self.use_llm_lora = use_llm_lora
        self.select_layer = select_layer
        self.force_image_size = force_image_size
        self.downsample_ratio = downsample_ratio
        self.template = template
        self.dynamic_image_size = dynamic_image_size
        self.use_thumbnail = use_thumbnail
        self.min_dynamic_patch = min_dynamic_patch
        self.max_dynamic_patch = max_dynamic_patch
        self.mlp_checkpoint = mlp_checkpoint
        self.pre_feature_reduction = pre_feature_reduction
        self.keep_aspect_ratio = keep_aspect_ratio
        self.vocab_size = self.llm_config.vocab_size if vocab_size in (-1, None) else vocab_size
        self.q_max_length = q_max_length
        self.p_max_length = p_max_length
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.pooling = pooling
        self.bidirectional_attention = bidirectional_attention
        self.max_input_tiles = max_input_tiles
        self.img_context_token_id = img_context_token_id
        super().__init__(**kwargs)

    @property
    def image_size(self) -> int:
        """Tile side in pixels."""
        size = self.force_image_size or self.vision_config.image_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def patch_size(self) -> int:
        size = self.vision_config.patch_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def num_image_token(self) -> int:
        """``<IMG_CONTEXT>`` tokens per tile: ``(image_size // patch_size)**2 * downsample_ratio**2``."""
        side = self.image_size // self.patch_size
        return int(round(side * side * self.downsample_ratio**2))

    def get_text_config(self, decoder=None, encoder=None) -> PreTrainedConfig:
        return self.llm_config
