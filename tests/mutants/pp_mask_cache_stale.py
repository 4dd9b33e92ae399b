"""A stage's cached causal mask is reused across a changed ``attention_mask``.

Bug: the per-stage mask cache is keyed on (layer types, batch, length, dtype, device, attention
implementation) but used even when an explicit ``attention_mask`` (per-batch padding) is passed, so
the second microbatch gets the first one's padding. Runner: tests/test_pipelining.py (the
conformance check pp_staged_forward kills it too, verified on padded Qwen2.5-VL microbatches, but
costs ~40 s per run). Killed by: test_staged_forward_with_changing_attention_mask,
test_causal_mask_cached_only_without_attention_mask.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
RUNNER = "tests/test_pipelining.py"
EXPECT = {"test_staged_forward_with_changing_attention_mask", "test_causal_mask_cached_only_without_attention_mask"}
SELECT = "causal_mask or changing_attention_mask"


def _stale(module, inputs_embeds, attention_mask, cache_position, position_ids):
    import vlmspec.pipelining._common as common

    layer_types = common._present_layer_types(module)
    batch, length = inputs_embeds.shape[:2]
    cacheable = not common._is_packed(position_ids, batch)  # the bug: attention_mask is not looked at
    key = (
        tuple(layer_types),
        batch,
        length,
        inputs_embeds.dtype,
        inputs_embeds.device,
        getattr(module.config, "_attn_implementation", None),
    )
    cache = module.__dict__.setdefault(common._MASK_CACHE_ATTR, {})
    if cacheable and key in cache:
        return cache[key]
    mapping = _original(module, inputs_embeds, attention_mask, cache_position, position_ids)
    if cacheable:
        cache[key] = mapping
    return mapping


_original = replace("vlmspec.pipelining._common:_build_or_reuse_pp_causal_mask", _stale)
