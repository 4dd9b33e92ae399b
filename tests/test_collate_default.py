"""default_collate_fn / qwen2_5_collate_fn on the real Qwen2.5-VL processor: contract, bad input, no mutation."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from PIL import Image

from vlmspec.collate_fns import default_collate_fn, qwen2_5_collate_fn
from vlmspec.fake_image import inject_fake_image_into_conversation


def _img(w=56, h=56, color=(10, 20, 30)):
    return Image.new("RGB", (w, h), color)


def _conv(answer="Fine.", image=True):
    user = [{"type": "image", "image": _img()}, {"type": "text", "text": "How is it?"}] if image else "How is it?"
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
    ]


def test_output_contract(qwen25_processor):
    examples = [{"conversation": _conv()}, {"conversation": _conv("A much longer answer here.", image=False)}]
    before = copy.deepcopy([{k: v for k, v in e.items()} for e in examples])
    batch = qwen2_5_collate_fn(examples, qwen25_processor)
    b, l1 = batch["input_ids"].shape
    assert b == 2
    for key in ("attention_mask", "labels", "mm_token_type_ids"):
        assert batch[key].shape == (b, l1), key
    assert batch["pixel_values"].dtype == torch.bfloat16
    assert batch["n_images_per_sample"].tolist() == [1, 0]
    assert "n_videos_per_sample" not in batch
    # shifted: each supervised label is the next input token
    full = qwen25_processor.apply_chat_template([e["conversation"] for e in examples], tokenize=False)
    assert isinstance(full, list)
    for r in range(b):
        lab = batch["labels"][r]
        sup = (lab != -100).nonzero().flatten()
        assert len(sup) > 0
        assert torch.equal(lab[sup[:-1]], batch["input_ids"][r][sup[:-1] + 1])
    # padding is never supervised
    pad_rows = batch["attention_mask"] == 0
    assert (batch["labels"][pad_rows] == -100).all()
    assert [e["conversation"] for e in examples] == [e["conversation"] for e in before]


def test_decoded_labels(qwen25_processor):
    batch = default_collate_fn([{"conversation": _conv("Fine.")}], qwen25_processor)
    lab = batch["labels"][0]
    assert qwen25_processor.tokenizer.decode(lab[lab != -100]) == "Fine.<|im_end|>"


def test_fake_sample_vision_tokens_are_masked(qwen25_processor):
    conv = inject_fake_image_into_conversation(_conv(image=False))
    batch = default_collate_fn([{"conversation": conv, "_injected_fake": True}], qwen25_processor)
    tok = qwen25_processor.tokenizer
    vision = torch.isin(
        batch["input_ids"][0],
        torch.tensor([tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>")]),
    )
    assert vision.sum() == 6
    assert (batch["attention_mask"][0][vision] == 0).all()
    assert batch["n_images_per_sample"].tolist() == [1]


@pytest.mark.parametrize(
    "mutate, exc, field",
    [
        (lambda c: c[1].pop("role"), ValueError, "conversation[1].role"),
        (lambda c: c[1].__setitem__("role", "narrator"), ValueError, "unknown role"),
        (lambda c: c[1].__setitem__("content", None), ValueError, "conversation[1].content"),
        (lambda c: c[1]["content"].append({"type": "hologram"}), ValueError, "unknown item type"),
        (
            lambda c: c[1]["content"].__setitem__(0, {"type": "image", "image": "/nonexistent/x.png"}),
            ValueError,
            "does not exist",
        ),
        (lambda c: c[1].__setitem__("content", 42), TypeError, "must be str or list"),
    ],
)
def test_bad_input_names_sample_and_field(qwen25_processor, mutate, exc, field):
    bad = _conv()
    mutate(bad)
    examples = [{"conversation": _conv()}, {"conversation": bad}]
    snapshot = copy.deepcopy(examples)
    with pytest.raises(exc) as err:
        default_collate_fn(examples, qwen25_processor)
    assert "sample 1" in str(err.value) and field in str(err.value)
    assert examples == snapshot


def test_conversation_not_a_list(qwen25_processor):
    with pytest.raises(TypeError, match="sample 0: field 'conversation'"):
        default_collate_fn([{"conversation": "hello"}], qwen25_processor)


def test_empty_batch(qwen25_processor):
    with pytest.raises(ValueError, match="empty batch"):
        default_collate_fn([], qwen25_processor)


def test_corrupt_image_file(qwen25_processor, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    conv = _conv()
    conv[1]["content"][0] = {"type": "image", "image": str(path)}
    with pytest.raises(ValueError, match="sample 0: field 'image': cannot decode"):
        default_collate_fn([{"conversation": conv}], qwen25_processor)


def test_image_path_is_loaded(qwen25_processor, tmp_path):
    path = tmp_path / "ok.png"
    _img().save(path)
    conv = _conv()
    conv[1]["content"][0] = {"type": "image", "image": str(path)}
    batch = default_collate_fn([{"conversation": conv}], qwen25_processor)
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert conv[1]["content"][0]["image"] == str(path)


def test_zero_supervised_tokens_warns(qwen25_processor, caplog):
    # truncation cuts the whole assistant turn away: the sample has an assistant turn but no labels
    conv = _conv(image=False)
    with caplog.at_level(logging.WARNING, logger="vlmspec.collate_fns"):
        batch = default_collate_fn([{"conversation": conv}], qwen25_processor, max_length=10)
    assert (batch["labels"] == -100).all()
    assert any("sample 0 has an assistant turn but zero supervised tokens" in r.message for r in caplog.records)


def test_max_length_too_small(qwen25_processor):
    with pytest.raises(ValueError, match="max_length must be at least 2"):
        default_collate_fn([{"conversation": _conv(image=False)}], qwen25_processor, max_length=1)


def test_renders_with_the_tokenizer_template_when_the_processor_lost_it():
    """transformers 5.23 ``Phi4MultimodalProcessor.from_pretrained`` drops the processor's chat template (its
    ``__init__`` takes no ``chat_template``); the family's template is then on the tokenizer only."""
    from tests.standins import PHI4_TEMPLATE, phi4_processor
    from vlmspec.collate_fns import phi4_mm_collate_fn

    proc = copy.deepcopy(phi4_processor())
    proc.chat_template, proc.tokenizer.chat_template = None, PHI4_TEMPLATE
    batch = phi4_mm_collate_fn([{"conversation": _conv("Fine.")}], proc)
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    supervised = proc.tokenizer.decode(labels[labels != -100])
    assert supervised == "Fine.<|end|>"
    assert int((ids == proc.tokenizer.convert_tokens_to_ids("<|image|>")).sum()) > 0


def test_audio_counts_only_when_they_account_for_every_feature_row():
    """n_audios_per_sample follows the audio items of each conversation (or the caller's count, e.g. a
    video's own track); a count that does not match the feature rows is left out, never guessed."""
    from vlmspec.collate.default import finalize_media

    clip = {"type": "audio", "audio": "a.wav"}
    convs = [
        [{"role": "user", "content": [clip, clip]}],
        [{"role": "user", "content": "hi"}],
        [{"role": "user", "content": [clip]}],
    ]
    out = finalize_media({"input_features": torch.zeros(3, 4, 2)}, convs)
    assert out["n_audios_per_sample"].tolist() == [2, 0, 1]
    assert "n_audios_per_sample" not in finalize_media({"input_features": torch.zeros(4, 4, 2)}, convs)
    out = finalize_media({"audio_input_features": torch.zeros(4, 4, 2)}, convs, n_audios=[2, 1, 1])
    assert out["n_audios_per_sample"].tolist() == [2, 1, 1]
    assert "n_audios_per_sample" not in finalize_media({}, convs)
