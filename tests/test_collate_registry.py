"""COLLATE_FNS dispatch and the optional qwen-utils flags."""

from __future__ import annotations

import importlib.util

from vlmspec import collate_fns as C


def test_collate_fns_maps_processor_classes_with_default_fallback():
    assert C.COLLATE_FNS["Qwen2_5_VLProcessor"] is C.qwen2_5_collate_fn
    assert C.COLLATE_FNS["Qwen3OmniMoeProcessor"] is C.qwen3_omni_collate_fn
    assert C.COLLATE_FNS["Kimi_K25Processor"] is C.kimi_k25_vl_collate_fn
    assert C.COLLATE_FNS["KimiVLProcessor"] is C.kimi_vl_collate_fn
    assert C.COLLATE_FNS["Phi4MultimodalProcessor"] is C.phi4_mm_collate_fn
    assert C.COLLATE_FNS["LlavaOnevision1_5Processor"] is C.llava_onevision_collate_fn
    assert C.COLLATE_FNS["NemotronH_Omni_Reasoning_V3Processor"] is C.nemotron_omni_collate_fn
    assert C.COLLATE_FNS["NemotronParseProcessor"] is C.nemotron_parse_collate_fn
    assert C.COLLATE_FNS["SomeFutureProcessor"] is C.default_collate_fn
    assert C.COLLATE_FNS.get("SomeFutureProcessor", C.default_collate_fn) is C.default_collate_fn
    assert "SomeFutureProcessor" not in C.COLLATE_FNS
    assert all(callable(fn) for fn in C.COLLATE_FNS.values())


def test_optional_utils_flags_reflect_installation():
    for flag, module in ((C.HAVE_QWEN_VL_UTILS, "qwen_vl_utils"), (C.HAVE_QWEN_OMNI_UTILS, "qwen_omni_utils")):
        assert isinstance(flag, bool)
        if importlib.util.find_spec(module) is None:
            assert flag is False, module


def test_gemma4_constants():
    assert C._GEMMA4_MODEL_TURN == "<|turn>model\n"
    assert C._GEMMA4_THINKING_PREFIX == "<|channel>thought\n<channel|>"
    assert C._DEFAULT_MERGE_KERNEL == (2, 2)
