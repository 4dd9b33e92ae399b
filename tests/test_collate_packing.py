"""pad_collate_fn (pre-tokenized samples) and neat_packed_vlm_collater (packed sequences, attention masks)."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import standins as S
from vlmspec.collate_fns import neat_packed_vlm_collater, pad_collate_fn


def _sample(ids, labels, n_images=0):
    ex = {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.ones(len(ids), dtype=torch.long),
        "labels": torch.tensor(labels),
    }
    if n_images:
        ex["pixel_values"] = torch.randn(4 * n_images, 8)
        ex["image_grid_thw"] = torch.tensor([[1, 2, 2]] * n_images)
    return ex


class _Proc:
    class tokenizer:  # noqa: N801 - a processor-shaped namespace
        pad_token_id = 99

    image_token_id = 50


def test_pad_collate_pads_shifts_and_concatenates():
    examples = [_sample([1, 2, 3, 4, 5], [-100, -100, 3, 4, 5], n_images=2), _sample([1, 2, 3], [-100, 2, 3])]
    before = copy.deepcopy(examples)
    batch = pad_collate_fn(examples, _Proc())
    for a, b in zip(examples, before):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4], [1, 2, 3, 99]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 3, 4, 5], [2, 3, -100, -100]]  # labels[:, 1:]
    assert batch["pixel_values"].dtype == torch.bfloat16 and batch["pixel_values"].shape == (8, 8)
    assert batch["image_grid_thw"].shape == (2, 3)
    assert batch["n_images_per_sample"].tolist() == [2, 0]
    fixed = pad_collate_fn(examples, _Proc(), max_length=8)
    assert fixed["input_ids"].shape == (2, 7)


def test_pad_collate_truncation_rules():
    long = _sample([1, 2, 3, 4, 5, 6], [-100, -100, -100, -100, 5, 6])
    with pytest.raises(ValueError, match=r"sample 1: the prompt is 4 tokens .* max_length=4"):
        pad_collate_fn([_sample([1, 2], [-100, 2]), long], _Proc(), max_length=4)
    with_media = _sample([1, 2, 3, 4, 50, 50], [-100, 2, 3, 4, -100, -100])
    with pytest.raises(ValueError, match=r"sample 0: truncating 6 tokens to max_length=5 would cut 1 of its 2 media"):
        pad_collate_fn([with_media], _Proc(), max_length=5)
    ok = pad_collate_fn([long], _Proc(), max_length=5)
    assert ok["labels"].tolist() == [[-100, -100, -100, 5]]
    with pytest.raises(ValueError, match=r"sample 0: field 'labels' must be a 1-D tensor"):
        pad_collate_fn([{"input_ids": torch.tensor([1]), "attention_mask": torch.tensor([1])}], _Proc())


def test_pad_collate_on_real_processor_output():
    proc = S.qwen25_processor()
    conv = [
        {"role": "user", "content": [{"type": "image", "image": S.image()}, {"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "ok"},
    ]
    text = proc.apply_chat_template(conv, tokenize=False)
    enc = proc(text=[text], images=[S.image()], return_tensors="pt", add_special_tokens=False)
    ids = enc["input_ids"][0]
    labels = torch.full_like(ids, -100)
    labels[-3:] = ids[-3:]
    sample = {
        "input_ids": ids,
        "attention_mask": enc["attention_mask"][0],
        "labels": labels,
        "pixel_values": enc["pixel_values"],
        "image_grid_thw": enc["image_grid_thw"],
    }
    batch = pad_collate_fn([sample, sample], proc)
    assert batch["input_ids"].shape == (2, ids.numel() - 1)
    assert batch["pixel_values"].shape[0] == 2 * enc["pixel_values"].shape[0]
    assert batch["n_images_per_sample"].tolist() == [1, 1]


# --------------------------------------------------------------------------- neat packing

packs_strategy = st.lists(  # a batch of packs, each a list of document lengths
    st.lists(st.integers(1, 6), min_size=1, max_size=4), min_size=1, max_size=4
)


def _pack(doc_lengths):
    doc_ids = torch.cat([torch.full((n,), d + 1) for d, n in enumerate(doc_lengths)])
    s = doc_ids.numel()
    return {
        "input_ids": torch.arange(10, 10 + s),
        "labels": torch.arange(20, 20 + s),
        "attention_mask": doc_ids,
        "position_ids": torch.cat([torch.arange(n) for n in doc_lengths]),
    }


@settings(max_examples=60, deadline=None)
@given(packs_strategy, st.integers(0, 5), st.sampled_from(["sdpa", "eager"]))
def test_block_causal_mask_property(doc_lists, extra, impl):
    packs = [_pack(d) for d in doc_lists]
    longest = max(p["input_ids"].numel() for p in packs)
    out = neat_packed_vlm_collater(packs, padding_idx=0, max_length=longest + extra, attn_implementation=impl)
    mask = out["attention_mask"]
    b, s = len(packs), longest + extra
    assert mask.shape == (b, 1, s, s) and mask.dtype == torch.bool
    for r, p in enumerate(packs):
        doc = torch.zeros(s, dtype=torch.long)
        doc[: p["attention_mask"].numel()] = p["attention_mask"]
        for i in range(s):
            for j in range(s):
                want = bool(doc[i] > 0 and doc[i] == doc[j] and j <= i)
                assert bool(mask[r, 0, i, j]) == want, (r, i, j)
        pad = doc == 0
        assert not mask[r, 0][pad].any()  # padding attends nowhere
        assert not mask[r, 0][:, pad].any()  # and nobody attends to padding
        n = p["input_ids"].numel()
        assert torch.equal(out["labels"][r, :n], p["labels"])  # no shift
        assert (out["labels"][r, n:] == -100).all() and (out["input_ids"][r, n:] == 0).all()


@settings(max_examples=30, deadline=None)
@given(packs_strategy)
def test_flash_attention_keeps_indexed_mask(doc_lists):
    packs = [_pack(d) for d in doc_lists]
    out = neat_packed_vlm_collater(packs, padding_idx=7, attn_implementation="flash_attention_2")
    longest = max(p["input_ids"].numel() for p in packs)
    assert out["attention_mask"].shape == (len(packs), longest)
    for r, p in enumerate(packs):
        n = p["input_ids"].numel()
        assert torch.equal(out["attention_mask"][r, :n], p["attention_mask"])
        assert (out["attention_mask"][r, n:] == 0).all() and (out["input_ids"][r, n:] == 7).all()


def test_neat_packing_media_and_errors():
    a, b = _pack([2, 3]), _pack([4])
    a["pixel_values"], a["image_grid_thw"] = torch.randn(8, 4), torch.tensor([[1, 2, 2], [1, 2, 2]])
    before = copy.deepcopy([a, b])
    out = neat_packed_vlm_collater([a, b])
    assert all(torch.equal(x[k], y[k]) for x, y in zip([a, b], before) for k in x)
    assert out["pixel_values"].dtype == torch.bfloat16 and out["n_images_per_sample"].tolist() == [2, 0]
    with pytest.raises(ValueError, match="sample 0: pack of 5 tokens exceeds max_length=4"):
        neat_packed_vlm_collater([a, b], max_length=4)
    with pytest.raises(ValueError, match="attn_implementation"):
        neat_packed_vlm_collater([a], attn_implementation="flex")
    with pytest.raises(ValueError, match="sample 1: field 'labels'"):
        neat_packed_vlm_collater([a, {"input_ids": torch.tensor([1]), "attention_mask": torch.tensor([1])}])
