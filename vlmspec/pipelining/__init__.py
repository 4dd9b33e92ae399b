"""Pipeline-parallel forward patches for Hugging Face models (documented as
``nemo_automodel.components.distributed.pipelining.hf_utils``), plus a stage splitter.

Typical use::

    stages = split_hf_model_into_stages(model, n_stages=2)   # deep copies, patched
    x = input_ids_mb                                          # stage 0 input: token ids [b, L]
    for stage in stages:                                      # later stages: hidden states [b, L, H]
        x = stage(x, attention_mask=mask_mb, position_ids=pos_mb)
    logits = x                                                # [b, L, V]
"""

from ._common import (
    _PP_VLM_MODEL_TYPES_WITH_DEDICATED_FORWARD,
    MULTIMODAL_SUFFIXES,
    TEXT_MODULE_ATTRS,
    _build_or_reuse_pp_causal_mask,
    _is_gemma4_vlm,
    _is_mistral3_vlm,
    _is_vlm,
    get_text_module,
)
from .forwards import (
    create_pipeline_forward_causal_lm,
    create_pipeline_forward_inner,
    create_pipeline_forward_mistral3_vlm,
)
from .gemma4 import create_pipeline_forward_gemma4_text, create_pipeline_forward_gemma4_vlm
from .hf_utils import (
    init_hf_model_buffers,
    logger,
    model_keeps_self_forward,
    patch_hf_model_for_pp,
    validate_hf_model_for_pipeline_support,
)
from .split import split_hf_model_into_stages

__all__ = [
    "MULTIMODAL_SUFFIXES",
    "TEXT_MODULE_ATTRS",
    "create_pipeline_forward_causal_lm",
    "create_pipeline_forward_gemma4_text",
    "create_pipeline_forward_gemma4_vlm",
    "create_pipeline_forward_inner",
    "create_pipeline_forward_mistral3_vlm",
    "get_text_module",
    "init_hf_model_buffers",
    "logger",
    "model_keeps_self_forward",
    "patch_hf_model_for_pp",
    "split_hf_model_into_stages",
    "validate_hf_model_for_pipeline_support",
]
