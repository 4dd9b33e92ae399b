"""VLM collate functions and label building (documented module ``collate_fns``).

Facade over :mod:`vlmspec.collate`; every documented name is importable from here.
"""

import logging

from .collate.default import default_collate_fn, qwen2_5_collate_fn
from .collate.gemma4 import (
    _GEMMA4_MODEL_TURN,
    _GEMMA4_THINKING_PREFIX,
    _inject_thinking_prefix_tokens,
    gemma4_inject_thinking_prefix,
    gemma4_prefix_collate_fn,
)
from .collate.kimi import _DEFAULT_MERGE_KERNEL, _expand_image_tokens, kimi_k25_vl_collate_fn, kimi_vl_collate_fn
from .collate.labels import (
    _IMSTART_TEMPLATE_PROCESSORS,
    _build_labels_from_markers,
    _decode_single_token,
    _derive_turn_markers,
    _extract_assistant_text,
    _find_pattern_indices,
    _get_assistant_marker,
    _get_stop_token_id,
    build_labels,
    build_labels_from_template,
)
from .collate.media import _count_media_per_sample, _ensure_rgb, _extract_media_from_conversations
from .collate.nemotron import nemotron_omni_collate_fn, nemotron_parse_collate_fn
from .collate.overlong import _drop_overlong_samples, _estimate_media_tokens, _extract_image_config
from .collate.packing import neat_packed_vlm_collater, pad_collate_fn
from .collate.phi4 import phi4_mm_collate_fn
from .collate.qwen import HAVE_QWEN_OMNI_UTILS, HAVE_QWEN_VL_UTILS, llava_onevision_collate_fn, qwen3_omni_collate_fn
from .collate.registry import COLLATE_FNS
from .collate.robust import make_robust_collate

logger = logging.getLogger(__name__)
