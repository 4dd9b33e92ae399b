"""Overlong handling: image-config extraction, media-token estimates against the real processor, dropping."""

from __future__ import annotations

import copy
import types

import pytest

from tests import standins as S
from vlmspec.collate_fns import (
    _drop_overlong_samples,
    _estimate_media_tokens,
    _extract_image_config,
    default_collate_fn,
)


def _conv(*sizes, answer="ok"):
    items = [{"type": "image", "image": S.image(w, h)} for w, h in sizes]
    return [
        {"role": "user", "content": [*items, {"type": "text", "text": "describe"}]},
        {"role": "assistant", "content": answer},
    ]


def _real_length(conv, proc):
    return default_collate_fn([{"conversation": conv}], proc)["input_ids"].shape[1] + 1


def test_extract_image_config_qwen25():
    cfg = _extract_image_config(S.qwen25_processor())
    assert cfg["patch_size"] == 14 and cfg["merge_size"] == 2 and cfg["temporal_patch_size"] == 2
    assert cfg["min_pixels"] == 3136 and cfg["max_pixels"] == 12845056 and cfg["tokens_per_image"] is None
    assert _extract_image_config(types.SimpleNamespace(tokenizer=object())) is None
    fixed = types.SimpleNamespace(image_processor=types.SimpleNamespace(image_seq_length=256, patch_size=14))
    assert _extract_image_config(fixed)["tokens_per_image"] == 256
    shuffle = types.SimpleNamespace(image_processor=types.SimpleNamespace(patch_size=16, downsample_ratio=0.5))
    assert _extract_image_config(shuffle)["merge_size"] == 2


@pytest.mark.parametrize("sizes", [[(56, 56)], [(300, 200)], [(640, 480), (33, 97)]])
def test_estimate_matches_real_expansion(sizes):
    proc = S.qwen25_processor()
    conv = _conv(*sizes)
    text_only = len(
        proc.tokenizer(proc.apply_chat_template(conv, tokenize=False), add_special_tokens=False)["input_ids"]
    )
    real_extra = _real_length(conv, proc) - text_only
    assert _estimate_media_tokens(conv, proc) == real_extra
    # the config arithmetic alone (processor without _get_num_multimodal_tokens) agrees too
    bare = types.SimpleNamespace(image_processor=proc.image_processor, tokenizer=proc.tokenizer)
    assert _estimate_media_tokens(conv, bare) == real_extra


def test_estimate_unknown_media_and_paths(tmp_path):
    proc = S.qwen25_processor()
    path = tmp_path / "a.png"
    S.image(300, 200).save(path)
    by_path = [{"role": "user", "content": [{"type": "image", "image": str(path)}]}]
    assert _estimate_media_tokens(by_path, proc) == _estimate_media_tokens(_conv((300, 200)), proc)
    unknown = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": "https://example.com/x.png"},
                {"type": "video", "video": str(tmp_path / "v.mp4")},
            ],
        }
    ]
    assert _estimate_media_tokens(unknown, proc) == 0


def test_drop_overlong_samples():
    proc = S.qwen25_processor()
    convs = [_conv((300, 200)), _conv(), _conv((56, 56))]
    before = copy.deepcopy(convs)
    lengths = [_real_length(c, proc) for c in convs]
    kept, idx = _drop_overlong_samples(convs, proc, lengths[2])
    assert idx == [1, 2] and kept == [convs[1], convs[2]]
    assert convs == before
    with pytest.raises(ValueError, match=r"every sample exceeds max_length=5"):
        _drop_overlong_samples(convs, proc, 5)


def test_default_collate_drop_overlong_keeps_fake_flags_aligned():
    proc = S.qwen25_processor()
    from vlmspec.fake_image import inject_fake_image_into_conversation

    big = _conv((640, 480))
    fake = inject_fake_image_into_conversation(_conv())
    limit = _real_length(fake, proc)
    batch = default_collate_fn(
        [{"conversation": big}, {"conversation": fake, "_injected_fake": True}],
        proc,
        max_length=limit,
        drop_overlong=True,
    )
    assert batch["input_ids"].shape[0] == 1
    pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (batch["attention_mask"][0][batch["input_ids"][0] == pad] == 0).all()
