"""Tests of vlmspec.pipelining: staged forwards of real (tiny, random) HF models equal the unsplit model.

"Staged" = ``split_hf_model_into_stages`` + the PP forward patches, run stage after stage on
``torch.tensor_split`` microbatches with the media staged to stage 0 by ``vlmspec.pp_media``.
Tolerance is fp32 round-off (atol 1e-5): the only differences are vision encoders running per
microbatch instead of on the whole batch.
"""

from __future__ import annotations

import functools
import types

import pytest
import torch
import transformers
from torch import nn

import vlmspec.pipelining as pl
from vlmspec.pp_media import VLM_PP_MEDIA_INDEX_KEY, VLM_PP_MEDIA_KEY, prepare_vlm_media_for_pp, stage_vlm_media_for_pp

try:
    import pipelining_cases as cases
except ImportError:  # tests/ imported as a package
    from tests import pipelining_cases as cases

ATOL = 1e-5


@functools.cache
def get_case(name: str) -> cases.Case:
    return cases.BUILDERS[name]()


def pp_batch(case: cases.Case, n_microbatches: int, stage0: nn.Module, with_index: bool = True) -> dict:
    batch = prepare_vlm_media_for_pp(case.batch, cases.BATCH, n_microbatches)
    batch = stage_vlm_media_for_pp(None, [stage0], batch)
    if not with_index:
        batch.pop(VLM_PP_MEDIA_INDEX_KEY, None)
    return batch


# --------------------------------------------------------------------------------------------------
# Staged forward == unsplit forward
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(cases.BUILDERS))
def test_staged_logits_match_unsplit(name):
    case = get_case(name)
    with torch.no_grad():
        ref = cases.reference_logits(case)
        stages = pl.split_hf_model_into_stages(case.model, case.n_stages)
        assert len(stages) == case.n_stages
        # 1 microbatch, an uneven split (5 -> 3 + 2) and one sample per microbatch.
        for n in (1, 2, cases.BATCH):
            out = cases.staged_forward(stages, pp_batch(case, n, stages[0]), n)
            assert out.shape == ref.shape
            torch.testing.assert_close(out, ref, atol=ATOL, rtol=0, msg=f"{name}: {n} microbatches")


@pytest.mark.parametrize("name", list(cases.FAMILY_VOCAB_BUILDERS))
def test_staged_logits_match_unsplit_family_config(name):
    """The shipped family configs, full vocabularies included; one uneven split (5 samples -> 3 + 2)."""
    case = cases.FAMILY_VOCAB_BUILDERS[name]()
    with torch.no_grad():
        ref = cases.reference_logits(case)
        stages = pl.split_hf_model_into_stages(case.model, case.n_stages)
        out = cases.staged_forward(stages, pp_batch(case, 2, stages[0]), 2)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["qwen2_5_vl", "gemma4_vlm", "mistral3", "gemma3_text", "gemma3_vlm_bidir"])
def test_staged_loss_and_grads_match_unsplit(name):
    case = get_case(name)
    model = case.model
    labels = case.batch["input_ids"].roll(-1, dims=1)
    vocab = model.config.get_text_config().vocab_size
    labels = labels.masked_fill(labels >= vocab, -100)  # out-of-vocabulary placeholder ids are not targets
    n_targets = int((labels != -100).sum())

    model.zero_grad(set_to_none=True)
    ref_logits = cases.reference_logits(case)
    ref_loss = nn.functional.cross_entropy(ref_logits.flatten(0, 1), labels.flatten())
    ref_loss.backward()
    ref_grads = {id(p): p.grad.clone() for p in model.parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    stages = pl.split_hf_model_into_stages(model, case.n_stages)
    n = 2
    logits = cases.staged_forward(stages, pp_batch(case, n, stages[0]), n)
    # Per-microbatch sum, normalized by the whole batch: what a PP loss_fn with global token count does.
    loss = (
        sum(
            nn.functional.cross_entropy(lg.flatten(0, 1), lb.flatten(), reduction="sum")
            for lg, lb in zip(torch.tensor_split(logits, n), torch.tensor_split(labels, n))
        )
        / n_targets
    )
    loss.backward()
    torch.testing.assert_close(loss, ref_loss, atol=ATOL, rtol=0)

    # Stage parameters keep the unsplit names; tied weights (embed on stage 0, lm_head on the last
    # stage) are separate copies whose gradients must add up to the tied gradient.
    by_name = dict(model.named_parameters(remove_duplicate=False))
    summed: dict[int, torch.Tensor] = {}
    for stage in stages:
        seen = set()
        for pname, p in stage.named_parameters(remove_duplicate=False):
            if p.grad is None or id(p) in seen:
                continue
            seen.add(id(p))
            key = id(by_name[pname])
            summed[key] = summed.get(key, 0) + p.grad
    assert summed.keys() == ref_grads.keys()
    for key, grad in ref_grads.items():
        torch.testing.assert_close(summed[key], grad, atol=ATOL, rtol=1e-4)
    model.zero_grad(set_to_none=True)  # the model is shared with other tests


def test_patched_unsplit_model_matches_hf():
    case = get_case("qwen2_5_vl")
    ref = cases.reference_logits(case)
    import copy

    model = copy.deepcopy(case.model)
    pl.patch_hf_model_for_pp(model)
    batch = {k: v for k, v in case.batch.items() if k != "mrope_position_ids"}
    with torch.no_grad():
        out = model(**batch)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


def test_media_counter_fallback_without_index_tensor():
    case = get_case("gemma4_vlm")
    with torch.no_grad():
        ref = cases.reference_logits(case)
        stages = pl.split_hf_model_into_stages(case.model, 2)
        out = cases.staged_forward(stages, pp_batch(case, 3, stages[0], with_index=False), 3)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert stages[0]._vlm_chunk_idx == 3


def test_media_index_tensor_survives_an_extra_forward_call():
    """torch PP's dynamic metadata inference runs stage 0 once more on microbatch 0: the index still picks right."""
    case = get_case("mistral3")
    with torch.no_grad():
        ref = cases.reference_logits(case)
        stages = pl.split_hf_model_into_stages(case.model, 2)
        batch = pp_batch(case, 2, stages[0])
        first = {k: torch.tensor_split(v, 2)[0] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        stages[0](first.pop("input_ids"), **first)  # the extra call
        out = cases.staged_forward(stages, batch, 2)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


def test_bidirectional_image_masks_are_exercised():
    """Guard against a vacuous pass: the Gemma3/Gemma4 vision masks really change the logits."""
    for name, key in (("gemma3_vlm_bidir", "token_type_ids"), ("gemma4_vlm", "mm_token_type_ids")):
        case = get_case(name)
        with torch.no_grad():
            with_mask = cases.reference_logits(case)
            without = case.model(**{k: case.batch[k] for k in case.ref_kwargs if k != key}).logits
        assert (with_mask - without).abs().max() > 1e-3, name


def test_staged_forward_with_changing_attention_mask():
    """The per-stage mask cache must not leak a mask built for another attention_mask."""
    case = get_case("llama")
    stages = pl.split_hf_model_into_stages(case.model, 2)
    ids = case.batch["input_ids"]
    with torch.no_grad():
        for mask in (None, case.batch["attention_mask"], torch.ones_like(ids), case.batch["attention_mask"].flip(1)):
            kwargs = {} if mask is None else {"attention_mask": mask}
            ref = case.model(input_ids=ids, **kwargs).logits
            x = ids
            for stage in stages:
                x = stage(x, **kwargs)
            torch.testing.assert_close(x, ref, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------------------
# Stage semantics and errors
# --------------------------------------------------------------------------------------------------
def test_split_structure():
    case = get_case("qwen2_5_vl")
    s0, s1 = pl.split_hf_model_into_stages(case.model, 2, layers_per_stage=[1, 3])
    text0, text1 = s0.model.language_model, s1.model.language_model
    assert list(text0.layers.keys()) == ["0"] and list(text1.layers.keys()) == ["1", "2", "3"]
    assert text0.embed_tokens is not None and s0.model.visual is not None
    assert text0.norm is None and s0.lm_head is None
    assert text1.embed_tokens is None and s1.model.visual is None
    assert text1.norm is not None and s1.lm_head is not None
    # The source model is untouched and the stages share no parameters with it.
    assert isinstance(case.model.model.language_model.layers, nn.ModuleList)
    assert len(case.model.model.language_model.layers) == 4
    src = {id(p) for p in case.model.parameters()}
    assert not src & {id(p) for s in (s0, s1) for p in s.parameters()}
    # Non-first stages are still recognised as VLMs (config-based detection).
    assert pl._is_vlm(s1)
    with pytest.raises(ValueError, match="layers_per_stage"):
        pl.split_hf_model_into_stages(case.model, 2, layers_per_stage=[1, 1])
    with pytest.raises(ValueError, match="n_stages"):
        pl.split_hf_model_into_stages(case.model, 5)


def test_middle_stage_outputs_hidden_states_and_last_stage_logits():
    case = get_case("llama")
    stages = pl.split_hf_model_into_stages(case.model, 3)
    ids = case.batch["input_ids"]
    with torch.no_grad():
        h0 = stages[0](ids)
        h1 = stages[1](h0)
        logits = stages[2](h1)
    hidden = case.model.config.hidden_size
    assert h0.shape == h1.shape == (*ids.shape, hidden) and h1.dtype == torch.float32
    assert logits.shape == (*ids.shape, case.model.config.vocab_size)
    with pytest.raises(ValueError, match="no embed_tokens"):
        stages[1](ids)


def test_media_placeholder_mismatch_raises():
    case = get_case("qwen2_5_vl")
    stages = pl.split_hf_model_into_stages(case.model, 2)
    b = case.batch
    with torch.no_grad(), pytest.raises(ValueError, match="placeholder tokens"):
        # All of the batch's media with only the first sample's text.
        stages[0](b["input_ids"][:1], pixel_values=b["pixel_values"], image_grid_thw=b["image_grid_thw"])


def test_gemma4_kv_sharing_across_stages_is_rejected():
    cfg = cases._gemma4_config().text_config
    cfg.num_kv_shared_layers = 2  # layers 2, 3 reuse k/v of layers 0, 1
    torch.manual_seed(0)
    model = transformers.Gemma4ForCausalLM(cfg).eval()
    with pytest.raises(ValueError, match="reuses k/v"):
        pl.split_hf_model_into_stages(model, 2)
    ids = torch.randint(0, 1000, (2, 12))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        s0, s1 = pl.split_hf_model_into_stages(model, 2, layers_per_stage=[4, 0])
        torch.testing.assert_close(s1(s0(ids)), ref, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------------------
# Patching, detection, helpers
# --------------------------------------------------------------------------------------------------
def test_patch_flavors():
    g4, m3, qwen, llama = (get_case(n).model for n in ("gemma4_vlm", "mistral3", "qwen2_5_vl", "llama"))
    s_g4, s_m3, s_q, s_l = (pl.split_hf_model_into_stages(m, 2, patch=True)[0] for m in (g4, m3, qwen, llama))
    assert s_g4.forward.__func__.__name__ == "pipeline_forward_gemma4_vlm"
    assert s_g4.model.language_model.forward.__func__.__name__ == "pipeline_forward_gemma4_text"
    assert s_m3.forward.__func__.__qualname__ == "pipeline_forward_mistral3_vlm"
    assert s_m3.model.language_model.forward.__func__.__name__ == "pipeline_forward_inner"
    assert s_q.forward.__func__.__qualname__ == "pipeline_forward_causal_lm"
    assert s_l.model.forward.__func__.__name__ == "pipeline_forward_inner"
    bare = transformers.LlamaModel(llama.config)
    pl.patch_hf_model_for_pp(bare)
    assert bare.forward.__func__.__name__ == "pipeline_forward_inner"
    outer_only = pl.split_hf_model_into_stages(llama, 2, patch=False)[0]
    pl.patch_hf_model_for_pp(outer_only, patch_inner_model=False)
    assert isinstance(outer_only.forward, types.MethodType)
    assert not isinstance(outer_only.model.__dict__.get("forward"), types.MethodType)


def test_model_type_gating():
    g4, m3, qwen, llama, g3 = (
        get_case(n).model for n in ("gemma4_vlm", "mistral3", "qwen2_5_vl", "llama", "gemma3_vlm")
    )
    assert pl._is_gemma4_vlm(g4) and not pl._is_gemma4_vlm(m3) and not pl._is_gemma4_vlm(g3)
    assert pl._is_mistral3_vlm(m3) and not pl._is_mistral3_vlm(g4)
    assert all(pl._is_vlm(m) for m in (g4, m3, qwen, g3)) and not pl._is_vlm(llama)
    # Same structure (model.model.language_model), other model_type: must not get Gemma4/Mistral3 logic.
    impostor = nn.Module()
    impostor.config = types.SimpleNamespace(model_type="llava_onevision")
    impostor.model = nn.Module()
    impostor.model.language_model = nn.Linear(2, 2)
    assert not pl._is_gemma4_vlm(impostor) and not pl._is_mistral3_vlm(impostor)
    assert pl._PP_VLM_MODEL_TYPES_WITH_DEDICATED_FORWARD == ("gemma4", "mistral3")


def test_get_text_module_and_constants():
    qwen, llama = get_case("qwen2_5_vl").model, get_case("llama").model
    assert pl.get_text_module(qwen) is qwen.model.language_model
    assert pl.get_text_module(qwen.model) is qwen.model.language_model
    assert pl.get_text_module(llama) is llama
    assert pl.TEXT_MODULE_ATTRS == ("language_model", "text_model", "text_decoder")
    assert pl.MULTIMODAL_SUFFIXES[:5] == ("vision_tower", "visual", "vision_model", "image_encoder", "vision_encoder")
    assert pl.MULTIMODAL_SUFFIXES[5].startswith("e")
    assert pl.logger.name.startswith("vlmspec.pipelining")


def test_model_keeps_self_forward():
    llama = get_case("llama").model
    assert not pl.model_keeps_self_forward(llama)

    class OptOut(nn.Module):
        _pp_keeps_self_forward = True

    assert pl.model_keeps_self_forward(OptOut())


def test_validate_hf_model_for_pipeline_support():
    pl.validate_hf_model_for_pipeline_support(get_case("llama").model)
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        pl.validate_hf_model_for_pipeline_support(get_case("qwen2_5_vl").model)
    with pytest.raises(ValueError, match="no config"):
        pl.validate_hf_model_for_pipeline_support(nn.Linear(2, 2))
    flat = nn.Module()
    flat.config = transformers.LlamaConfig(tie_word_embeddings=False)
    with pytest.raises(ValueError, match="layers"):
        pl.validate_hf_model_for_pipeline_support(flat)


def test_init_hf_model_buffers_restores_non_persistent_buffers():
    model = get_case("gemma4_vlm").model
    import copy

    broken = copy.deepcopy(model)
    names = [n for n, _ in broken.named_buffers() if n.endswith("inv_freq") or n.endswith("embed_scale")]
    assert any("full_attention_inv_freq" in n for n in names) and any("embed_scale" in n for n in names)
    for n, b in broken.named_buffers():
        if n in names:
            b.zero_()
    pl.init_hf_model_buffers(broken, torch.device("cpu"))
    good = dict(model.named_buffers())
    for n, b in broken.named_buffers():
        if n in names:
            torch.testing.assert_close(b, good[n], atol=0, rtol=0, msg=n)


# --------------------------------------------------------------------------------------------------
# Causal-mask cache
# --------------------------------------------------------------------------------------------------
def _eager_text_module():
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        attn_implementation="eager",
    )
    return transformers.LlamaModel(cfg)


def test_causal_mask_cached_only_without_attention_mask():
    module = _eager_text_module()
    emb = torch.zeros(2, 6, 16)
    first = pl._build_or_reuse_pp_causal_mask(module, emb, None, None, None)
    assert first["full_attention"] is not None  # eager materializes the mask
    assert pl._build_or_reuse_pp_causal_mask(module, emb, None, None, None) is first
    # A different microbatch size (uneven tensor_split) must not reuse it.
    odd = pl._build_or_reuse_pp_causal_mask(module, torch.zeros(1, 6, 16), None, None, None)
    assert odd["full_attention"].shape[0] == 1

    mask_a = torch.ones(2, 6, dtype=torch.long)
    mask_b = mask_a.clone()
    mask_b[0, :2] = 0
    built_a = pl._build_or_reuse_pp_causal_mask(module, emb, mask_a, None, None)["full_attention"]
    built_b = pl._build_or_reuse_pp_causal_mask(module, emb, mask_b, None, None)["full_attention"]
    assert not torch.equal(built_a, built_b)  # a cache reused across a changed attention_mask is a bug
    assert torch.equal(built_a, first["full_attention"])


def test_causal_mask_not_cached_for_packed_positions():
    module = _eager_text_module()
    emb = torch.zeros(1, 6, 16)
    packed = torch.tensor([[0, 1, 2, 0, 1, 2]])
    plain = pl._build_or_reuse_pp_causal_mask(module, emb, None, None, None)["full_attention"]
    built = pl._build_or_reuse_pp_causal_mask(module, emb, None, None, packed)["full_attention"]
    assert not torch.equal(built, plain)  # block-diagonal per packed sequence
    assert torch.equal(pl._build_or_reuse_pp_causal_mask(module, emb, None, None, None)["full_attention"], plain)


def test_staged_batch_carries_no_raw_media():
    case = get_case("qwen2_5_vl")
    batch = prepare_vlm_media_for_pp(case.batch, cases.BATCH, 2)
    assert "pixel_values" not in batch and "image_grid_thw" not in batch and VLM_PP_MEDIA_KEY in batch
    staged = stage_vlm_media_for_pp(None, [nn.Module()], batch)
    assert VLM_PP_MEDIA_KEY not in staged and VLM_PP_MEDIA_KEY in batch


def test_mrope_positions_must_be_given_with_mm_token_type_ids():
    """HF derives Qwen-VL 3-D positions from the media; PP stages cannot, so they must be passed."""
    case = get_case("qwen2_5_vl")
    stages = pl.split_hf_model_into_stages(case.model, 2)
    b = case.batch
    mm = (b["input_ids"] == case.model.config.image_token_id).long()
    with torch.no_grad(), pytest.raises(ValueError, match="mrope_position_ids"):
        stages[1](torch.zeros(5, b["input_ids"].shape[1], 64), mm_token_type_ids=mm)


# --------------------------------------------------------------------------------------------------
# Regressions the conformance suite found (unit-level here so they fail in vlmspec's own tests)
# --------------------------------------------------------------------------------------------------
def test_qwen3_vl_deepstack_features_reach_the_staged_forward(monkeypatch):
    """Staged Qwen3-VL must add the DeepStack visual features (a staged forward once dropped them and
    its logits were off by 0.86): it matches the unsplit logits, which differ from the unsplit logits
    computed without DeepStack."""
    case = get_case("qwen3_vl")
    stages = pl.split_hf_model_into_stages(case.model, 2)
    with torch.no_grad():
        ref = cases.reference_logits(case)
        out = cases.staged_forward(stages, pp_batch(case, 2, stages[0]), 2)
        monkeypatch.setattr(
            type(case.model.model.language_model), "_deepstack_process", lambda self, hidden, mask, embeds: hidden
        )
        without = cases.reference_logits(case)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert (without - ref).abs().max() > 1e-3, "DeepStack does not change this case's logits: the test proves nothing"
    assert (out - without).abs().max() > 1e-3


def test_empty_middle_stage_passes_hidden_states_through():
    """K stages > decoder layers: a stage with no layers must pass its input on unchanged (it once
    crashed building masks for a config whose every layer is sliding-window)."""
    case = get_case("gemma3_text")
    n_layers = case.model.config.num_hidden_layers
    layout = [n_layers // 2, 0, n_layers - n_layers // 2]
    with torch.no_grad():
        ref = cases.reference_logits(case)
        stages = pl.split_hf_model_into_stages(case.model, 3, layers_per_stage=layout)
        assert len(stages[1].model.layers) == 0
        out = cases.staged_forward(stages, pp_batch(case, 2, stages[0]), 2)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


def test_nested_causal_lm_text_module_is_a_clear_error():
    """A VLM whose ``language_model`` is itself a *ForCausalLM (Nemotron-H omni) has no ``layers`` at the
    text path: split must say so, not fail with an AttributeError deep inside."""
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = cfg
            self.language_model = transformers.LlamaForCausalLM(cfg)

    with pytest.raises(ValueError, match=r"language_model \(LlamaForCausalLM\) has no decoder `layers`"):
        pl.split_hf_model_into_stages(Wrapper(), 2)
