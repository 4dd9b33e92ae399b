"""``vlmspec.models.llama_nemotron_vl`` — the documented names of
``nemo_automodel.components.models.llama_nemotron_vl.model``, implemented for transformers 5.x.

Implementation lives in the submodules: ``config`` (configs), ``bidirectional`` (non-causal Llama and
the transformers-compatibility probes), ``vision`` (pixel shuffle, image-token splicing), ``pooling``,
``model`` (:class:`LlamaNemotronVLModel`), ``integration`` (Auto-class registration, ``split_model``)
and ``processing`` (the SYNTHETIC stand-in processor over the DERIVED Llama 3.1 tokenizer).

Importing this module registers ``llama_bidirec`` and ``llama_nemotron_vl`` with ``AutoConfig`` /
``AutoModel`` (see :func:`_register_with_hf_auto_classes`).
"""

from transformers.utils import logging

from .bidirectional import (
    _DYNAMIC_CACHE_ACCEPTS_CONFIG,
    _HAS_NATIVE_BIDIRECTIONAL_MASK,
    _USE_PLURAL_CACHE_PARAM,
    LlamaBidirectionalModel,
    _decoder_forward_params,
    _dynamic_cache_init_params,
)
from .config import LlamaBidirectionalConfig, LlamaNemotronVLConfig
from .integration import _register_with_hf_auto_classes, split_model
from .model import LlamaNemotronVLModel
from .pooling import pool
from .processing import LlamaNemotronVLProcessor, RetrievalCollator, load_processor, load_tokenizer
from .vision import _filter_vision_embeddings_by_image_flags, _replace_image_token_embeddings

logger = logging.get_logger(__name__)

# As documented: a list, the form model registries that accept several entry classes read.
ModelClass = [LlamaNemotronVLModel]

_register_with_hf_auto_classes()

__all__ = ["LlamaNemotronVLModel", "LlamaNemotronVLConfig", "ModelClass"]
