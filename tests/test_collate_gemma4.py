"""Gemma 4 thinking-prefix injection on the real (DERIVED) gemma-4-E2B-it pack processor."""

from __future__ import annotations

import copy

import pytest
import torch

from tests import standins as S
from tests.conftest import load_pack_processor
from vlmspec.collate_fns import (
    _GEMMA4_MODEL_TURN,
    _GEMMA4_THINKING_PREFIX,
    _inject_thinking_prefix_tokens,
    default_collate_fn,
    gemma4_inject_thinking_prefix,
    gemma4_prefix_collate_fn,
)
from vlmspec.fake_image import inject_fake_image_into_conversation

GEMMA4 = "google/gemma-4-E2B-it"


@pytest.fixture(scope="module")
def gemma4():
    return load_pack_processor(GEMMA4)


def _tokenized(tok, texts, side):
    old = tok.padding_side
    tok.padding_side = side
    try:
        enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = old
    return dict(enc)


TEXTS = [
    "<|turn>user\nhi<turn|>\n<|turn>model\nyo<turn|>\n<|turn>user\nmore<turn|>\n<|turn>model\nsure<turn|>\n",
    "<|turn>user\nonly one turn here please<turn|>\n<|turn>model\nok<turn|>\n",
    "<|turn>user\nno model turn<turn|>\n",
]


@pytest.mark.parametrize("side", ["right", "left"])
def test_inject_matches_textual_insertion(gemma4, side):
    tok = gemma4.tokenizer
    batch = _tokenized(tok, TEXTS, side)
    batch["mm_token_type_ids"] = torch.zeros_like(batch["input_ids"])
    batch["labels"] = batch["input_ids"].clone()
    batch["extra_ids"] = torch.full_like(batch["input_ids"], 7)
    batch["pixel_values"] = torch.randn(2, 3)
    before = copy.deepcopy(batch)
    out = _inject_thinking_prefix_tokens(batch, tok)
    for key in before:
        assert torch.equal(batch[key], before[key]), f"input {key} was modified"
    prefix = tok(_GEMMA4_THINKING_PREFIX, add_special_tokens=False)["input_ids"]
    n_prefix = len(prefix)
    expected_rows = [
        tok(t.replace(_GEMMA4_MODEL_TURN, _GEMMA4_MODEL_TURN + _GEMMA4_THINKING_PREFIX), add_special_tokens=False)[
            "input_ids"
        ]
        for t in TEXTS
    ]
    width = max(len(r) for r in expected_rows)
    assert out["input_ids"].shape == (3, width)
    for key in ("attention_mask", "mm_token_type_ids", "labels", "extra_ids"):
        assert out[key].shape == out["input_ids"].shape, key
    assert torch.equal(out["pixel_values"], batch["pixel_values"])
    for r, want in enumerate(expected_rows):
        real = out["attention_mask"][r] == 1
        assert out["input_ids"][r][real].tolist() == want
        # padding stays on the tokenizer's side
        if len(want) < width:
            assert (out["attention_mask"][r, 0] == 1) == (side == "right")
        injected = real.clone()
        injected[:] = False
        ids = out["input_ids"][r].tolist()
        for i in range(len(ids) - n_prefix + 1):
            if ids[i : i + n_prefix] == prefix:
                injected[i : i + n_prefix] = True
        assert int(injected.sum()) == n_prefix * TEXTS[r].count(_GEMMA4_MODEL_TURN)
        assert (out["labels"][r][injected] == -100).all()
        assert (out["extra_ids"][r][injected] == 0).all() and (out["mm_token_type_ids"][r][injected] == 0).all()
        assert (out["extra_ids"][r][real & ~injected] == 7).all()


def test_inject_is_idempotent_and_noop_elsewhere(gemma4):
    tok = gemma4.tokenizer
    batch = _tokenized(tok, TEXTS, "right")
    once = gemma4_inject_thinking_prefix(batch, gemma4)
    twice = gemma4_inject_thinking_prefix(once, gemma4)
    assert torch.equal(once["input_ids"], twice["input_ids"])
    qwen = S.qwen25_processor()
    qbatch = dict(qwen.tokenizer(["<|im_start|>assistant\nhi<|im_end|>"], return_tensors="pt"))
    same = gemma4_inject_thinking_prefix(qbatch, qwen)
    assert torch.equal(same["input_ids"], qbatch["input_ids"])


def _conv(answer="Fine.", image=True):
    user = [{"type": "image", "image": S.image()}, {"type": "text", "text": "What?"}] if image else "What?"
    return [
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "More?"},
        {"role": "assistant", "content": "Yes."},
    ]


def test_prefix_collate_supervises_what_default_does(gemma4):
    examples = [{"conversation": _conv()}, {"conversation": _conv("Short.", image=False)}]
    before = copy.deepcopy(examples)
    plain = default_collate_fn(examples, gemma4)
    batch = gemma4_prefix_collate_fn(examples, gemma4)
    assert examples == before
    tok = gemma4.tokenizer
    prefix_first = tok.convert_tokens_to_ids("<|channel>")
    assert int((batch["input_ids"] == prefix_first).sum()) == 4  # two model turns per sample
    assert batch["input_ids"].shape[1] == plain["input_ids"].shape[1] + 8
    for r in range(2):
        got, want = batch["labels"][r], plain["labels"][r]
        assert tok.decode(got[got != -100]) == tok.decode(want[want != -100])
    # labels stay shifted: supervised label t is input token t+1
    lab, ids = batch["labels"], batch["input_ids"]
    sup = lab[:, :-1] != -100
    assert torch.equal(lab[:, :-1][sup], ids[:, 1:][sup])
    assert batch["pixel_values"].dtype == torch.bfloat16
    assert batch["n_images_per_sample"].tolist() == [1, 0]


def test_prefix_collate_fake_image_and_max_length(gemma4):
    fake = inject_fake_image_into_conversation(_conv(image=False))
    batch = gemma4_prefix_collate_fn([{"conversation": fake, "_injected_fake": True}], gemma4)
    image_id = gemma4.tokenizer.convert_tokens_to_ids("<|image|>")
    vis = batch["input_ids"][0] == image_id
    assert vis.any() and (batch["attention_mask"][0][vis] == 0).all()
    with pytest.raises(ValueError, match=r"sample 0: the prompt is \d+ tokens .* max_length=50"):
        gemma4_prefix_collate_fn([{"conversation": _conv()}], gemma4, max_length=50)
    text_only = [{"conversation": _conv("word " * 30, image=False)}]
    cut = gemma4_prefix_collate_fn(text_only, gemma4, max_length=24)
    assert cut["input_ids"].shape == (1, 23)
    assert (cut["labels"] != -100).any()


def test_prefix_collate_truncates_left_padded_batch(gemma4):
    tok = gemma4.tokenizer
    assert tok.padding_side == "left"  # the case where truncation must first move padding to the right
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo."}]
    long = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "word " * 40}]
    full = gemma4_prefix_collate_fn([{"conversation": short}, {"conversation": long}], gemma4)
    cut = gemma4_prefix_collate_fn([{"conversation": short}, {"conversation": long}], gemma4, max_length=30)
    assert cut["input_ids"].shape == (2, 29)
    n_short = int(full["attention_mask"][0].sum())
    real_short = full["input_ids"][0][full["attention_mask"][0] == 1]
    # rolled to right padding: the short row starts at 0; the shift now drops padding instead of its final "\n"
    assert torch.equal(cut["input_ids"][0, :n_short], real_short)
    assert int(cut["attention_mask"][0].sum()) == n_short + 1 and (cut["attention_mask"][0, n_short + 1 :] == 0).all()
    assert torch.equal(cut["input_ids"][1], full["input_ids"][1][full["attention_mask"][1] == 1][:29])
    assert tok.decode(cut["labels"][0][cut["labels"][0] != -100]) == "Yo.<turn|>"
