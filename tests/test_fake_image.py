"""vlmspec.fake_image: injection never mutates, masks hit exactly the vision tokens of chosen rows."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmspec import fake_image as fi


def _conv():
    return [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]


def test_fake_image_is_56px_white_rgb():
    assert fi._FAKE_IMAGE.size == (56, 56) and fi._FAKE_IMAGE.mode == "RGB"
    assert fi._FAKE_IMAGE.getextrema() == ((255, 255), (255, 255), (255, 255))


def test_inject_goes_to_first_user_message_on_a_copy():
    conv = _conv()
    before = copy.deepcopy(conv)
    out = fi.inject_fake_image_into_conversation(conv)
    assert conv == before
    assert out[1]["content"][0]["type"] == "image"
    assert out[1]["content"][1] == {"type": "text", "text": "hello"}
    assert out[3] == conv[3]  # later user turns untouched
    assert fi._conversation_has_media(out) and not fi._conversation_has_media(conv)


def test_inject_list_content_prepends_image():
    conv = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    out = fi.inject_fake_image_into_conversation(conv)
    assert [i["type"] for i in out[0]["content"]] == ["image", "text"]


def test_inject_without_user_message_raises():
    with pytest.raises(ValueError, match="no user message"):
        fi.inject_fake_image_into_conversation([{"role": "assistant", "content": "x"}])


def test_batch_has_media():
    conv = _conv()
    assert not fi._batch_has_media([conv, conv])
    assert fi._batch_has_media([conv, fi.inject_fake_image_into_conversation(conv)])
    assert fi._batch_has_media([[{"role": "user", "content": [{"type": "video", "video": "v.mp4"}]}]])


def test_scan_attrs_yields_only_ints():
    class Src:
        image_token_id = 5
        video_token_id = None
        vision_start_token_id = True  # bools are not token ids
        boi_token_id = "7"

    assert list(fi._scan_attrs(Src(), fi._VISION_TOKEN_ID_ATTRS)) == [5]
    assert list(fi._scan_attrs(None, fi._VISION_TOKEN_ID_ATTRS)) == []


def test_vision_token_ids_of_real_qwen_processor(qwen25_processor):
    ids = fi._get_vision_token_ids(qwen25_processor)
    tok = qwen25_processor.tokenizer
    expected = {
        tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")
    }
    assert expected <= ids
    assert tok.convert_tokens_to_ids("<|im_start|>") not in ids


class _Bare:
    pass


def test_warns_once_when_no_vision_tokens(caplog):
    fi._warned_unknown_processors.discard("_Bare")
    batch = {"input_ids": torch.tensor([[1, 2]]), "attention_mask": torch.ones(1, 2, dtype=torch.long)}
    with caplog.at_level(logging.WARNING, logger=fi.logger.name):
        fi.mask_fake_vision_tokens_batch(batch, _Bare(), [0])
        fi.mask_fake_vision_tokens_batch(batch, _Bare(), [0])
    assert sum("no recognizable vision token" in r.message for r in caplog.records) == 1


class _Proc:
    image_token_id = 9


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([1, 2, 9]), min_size=4, max_size=4), min_size=1, max_size=4), st.data())
def test_batch_mask_hits_exactly_vision_tokens_of_selected_rows(rows, data):
    ids = torch.tensor(rows)
    rows_sel = data.draw(st.sets(st.integers(0, len(rows) - 1)))
    am = torch.ones_like(ids)
    labels = ids.clone()
    batch = {"input_ids": ids, "attention_mask": am, "labels": labels}
    out = fi.mask_fake_vision_tokens_batch(dict(batch), _Proc(), rows_sel)
    for r in range(len(rows)):
        for c in range(4):
            hit = r in rows_sel and rows[r][c] == 9
            assert out["attention_mask"][r, c] == (0 if hit else 1)
            assert out["labels"][r, c] == (-100 if hit else rows[r][c])
    assert torch.equal(am, torch.ones_like(ids)), "caller's tensor must not be written to"


def test_batch_mask_rejects_out_of_range_index():
    batch = {"input_ids": torch.tensor([[9]]), "attention_mask": torch.ones(1, 1, dtype=torch.long)}
    with pytest.raises(ValueError, match="out of range"):
        fi.mask_fake_vision_tokens_batch(batch, _Proc(), [3])


def test_single_mask():
    sample = {
        "input_ids": torch.tensor([1, 9, 9, 2]),
        "attention_mask": torch.ones(4, dtype=torch.long),
        "labels": torch.tensor([1, 9, 9, 2]),
    }
    out = fi.mask_fake_vision_tokens_single(sample, _Proc())
    assert out["attention_mask"].tolist() == [1, 0, 0, 1]
    assert out["labels"].tolist() == [1, -100, -100, 2]
