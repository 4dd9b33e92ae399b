"""``COLLATE_FNS``: processor class name -> collate function; :func:`default_collate_fn` is the fallback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .default import default_collate_fn, qwen2_5_collate_fn
from .kimi import kimi_k25_vl_collate_fn, kimi_vl_collate_fn
from .nemotron import nemotron_omni_collate_fn, nemotron_parse_collate_fn
from .phi4 import phi4_mm_collate_fn
from .qwen import llava_onevision_collate_fn, qwen3_omni_collate_fn


class _CollateRegistry(dict):
    """A plain dict, except that a missing processor class maps to :func:`default_collate_fn`.

    ``COLLATE_FNS[type(processor).__name__]`` therefore always yields a collate, and
    ``COLLATE_FNS.get(name, default)`` / ``name in COLLATE_FNS`` keep their dict meaning.
    """

    def __missing__(self, key: str) -> Callable[..., Any]:
        return default_collate_fn


# Gemma 4 stays on the default: the thinking-prefix collate (gemma4_prefix_collate_fn) suits the
# 31B / 26B-A4B checkpoints that always emit the prefix, and is chosen explicitly.
COLLATE_FNS: dict[str, Callable[..., Any]] = _CollateRegistry(
    {
        "Qwen2_5_VLProcessor": qwen2_5_collate_fn,
        "Qwen3OmniMoeProcessor": qwen3_omni_collate_fn,
        "KimiVLProcessor": kimi_vl_collate_fn,
        "KimiK25Processor": kimi_k25_vl_collate_fn,
        "Kimi_K25Processor": kimi_k25_vl_collate_fn,
        "Phi4MMProcessor": phi4_mm_collate_fn,
        "Phi4MultimodalProcessor": phi4_mm_collate_fn,
        "LlavaOnevision1_5Processor": llava_onevision_collate_fn,
        "NemotronParseProcessor": nemotron_parse_collate_fn,
        "NemotronH_Omni_Reasoning_V3Processor": nemotron_omni_collate_fn,
    }
)
