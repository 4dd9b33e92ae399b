"""VLM collate functions and label building (documented module ``collate_fns``).

Facade over :mod:`vlmspec.collate`; every documented name is importable from here.
"""

import logging

from .collate.default import default_collate_fn, qwen2_5_collate_fn
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

logger = logging.getLogger(__name__)
