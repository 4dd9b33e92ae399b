"""Family collates on SYNTHETIC stand-in processors (tests/standins.py): contract, labels, media, bad input.

Phi-4-MM, Qwen3-Omni, Kimi-K2.5 and Nemotron omni run transformers 5.23's real processor classes;
Kimi-VL, LLaVA-OneVision-1.5 and Nemotron-Parse run small stand-ins of their remote-code processors.
All tokenize with the real Qwen2.5-VL tokenizer plus the family's special tokens.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests import standins as S
from vlmspec.collate import qwen as qwen_mod
from vlmspec.collate_fns import (
    kimi_k25_vl_collate_fn,
    kimi_vl_collate_fn,
    llava_onevision_collate_fn,
    nemotron_omni_collate_fn,
    nemotron_parse_collate_fn,
    phi4_mm_collate_fn,
    qwen3_omni_collate_fn,
)
from vlmspec.fake_image import inject_fake_image_into_conversation


def conv(items=(), answer="Fine.", question="What is it?"):
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [*items, {"type": "text", "text": question}]},
        {"role": "assistant", "content": answer},
    ]


def supervised_text(batch, tok, row=0):
    lab = batch["labels"][row]
    return tok.decode(lab[lab != -100])


def check_contract(batch, n_images=None, n_videos=None):
    """Output contract: [B, L-1] token tensors, shifted labels, pixels bf16, media counts long [B]."""
    ids = batch["input_ids"]
    assert ids.dim() == 2
    assert batch["labels"].shape == ids.shape and batch["attention_mask"].shape == ids.shape
    lab, mask = batch["labels"], batch["attention_mask"]
    # shifted: a supervised label at t is the input token at t+1 (where t+1 is still in input_ids)
    sup = lab[:, :-1] != -100
    assert torch.equal(lab[:, :-1][sup], ids[:, 1:][sup])
    assert (lab[mask == 0] == -100).all()  # padding is never supervised
    for key in ("pixel_values", "pixel_values_videos"):
        if key in batch:
            assert batch[key].dtype == torch.bfloat16, key
    for key, want in (("n_images_per_sample", n_images), ("n_videos_per_sample", n_videos)):
        if want is None:
            assert key not in batch or not bool(batch[key].any()), key
        else:
            assert batch[key].dtype == torch.long and batch[key].tolist() == want, (key, batch[key])
    for row in range(ids.shape[0]):
        assert bool((lab[row] != -100).any()), f"row {row} has no supervised token"


def _equal(x, y):
    """Deep equality that also compares numpy arrays element-wise (PIL images compare by pixels)."""
    if isinstance(x, np.ndarray):
        return isinstance(y, np.ndarray) and np.array_equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(_equal(a, b) for a, b in zip(x, y))
    return x == y


def run_unmutated(collate, examples, *args, **kwargs):
    before = copy.deepcopy(examples)
    out = collate(examples, *args, **kwargs)
    assert _equal(examples, before)  # deep compare: nothing the caller passed was changed
    return out


# ---------------------------------------------------------------- Phi-4-MM


def test_phi4_audio_batch():
    proc = S.phi4_processor()
    examples = [
        {"conversation": conv([{"type": "audio", "audio": S.tone(0.5)}], "Hello there.")},
        {"conversation": conv([{"type": "audio", "audio": (S.tone(0.3, 8000), 8000)}], "Bye.")},
        {"conversation": conv([], "Text only.")},
    ]
    batch = run_unmutated(phi4_mm_collate_fn, examples, proc)
    check_contract(batch)
    tok = proc.tokenizer
    assert [supervised_text(batch, tok, r) for r in range(3)] == [
        "Hello there.<|end|>",
        "Bye.<|end|>",
        "Text only.<|end|>",
    ]
    assert batch["audio_input_features"].shape[0] == 2
    n_audio_tokens = (batch["input_ids"] == tok.convert_tokens_to_ids("<|audio|>")).sum(1)
    assert n_audio_tokens.tolist()[:2] == batch["audio_embed_sizes"].tolist()  # placeholders expanded per clip
    assert (
        batch["labels"][torch.isin(batch["input_ids"], torch.tensor([tok.convert_tokens_to_ids("<|audio|>")]))] == -100
    ).all()


def test_phi4_audio_file_and_missing_file(tmp_path):
    proc = S.phi4_processor()
    path = S.write_wav(tmp_path / "a.wav", S.tone(0.4, 22050), 22050)
    batch = phi4_mm_collate_fn([{"conversation": conv([{"type": "audio", "audio": path}])}], proc)
    assert batch["audio_input_features"].shape[0] == 1
    missing = str(tmp_path / "nope.wav")
    with pytest.raises(ValueError, match=r"sample 1: .*audio.*does not exist: .*nope\.wav"):
        phi4_mm_collate_fn(
            [
                {"conversation": conv([{"type": "audio", "audio": path}])},
                {"conversation": conv([{"type": "audio", "audio": missing}])},
            ],
            proc,
        )


def test_phi4_fake_image_masked():
    proc = S.phi4_processor()
    fake = inject_fake_image_into_conversation(conv([], "Plain."))
    batch = phi4_mm_collate_fn([{"conversation": fake, "_injected_fake": True}], proc)
    image_id = proc.tokenizer.convert_tokens_to_ids("<|image|>")
    vis = batch["input_ids"][0] == image_id
    assert vis.any() and (batch["attention_mask"][0][vis] == 0).all()
    assert batch["image_pixel_values"].dtype == torch.bfloat16
    assert supervised_text(batch, proc.tokenizer) == "Plain.<|end|>"


# ---------------------------------------------------------------- Qwen3-Omni


def test_qwen3_omni_audio_image_video():
    proc = S.qwen3_omni_processor()
    frames = [S.image(56, 56, (i * 40, 0, 0)) for i in range(4)]
    examples = [
        {"conversation": conv([{"type": "audio", "audio": S.tone(0.5)}, {"type": "image", "image": S.image()}])},
        {"conversation": conv([{"type": "video", "video": frames}], "A red fade.")},
    ]
    batch = run_unmutated(qwen3_omni_collate_fn, examples, proc)
    check_contract(batch, n_images=[1, 0], n_videos=[0, 1])
    tok = proc.tokenizer
    assert supervised_text(batch, tok, 0) == "Fine.<|im_end|>"
    assert supervised_text(batch, tok, 1) == "A red fade.<|im_end|>"
    assert batch["input_features"].shape[0] == 1
    # right padding: the shorter row ends in padding, never starts with it
    assert bool((batch["attention_mask"][:, 0] == 1).all())


def test_qwen3_omni_use_audio_in_video_needs_a_track_reader(monkeypatch):
    proc = S.qwen3_omni_processor()
    frames = [S.image(56, 56, (i * 40, 0, 0)) for i in range(4)]
    examples = [{"conversation": conv([{"type": "video", "video": frames}])}]
    monkeypatch.setattr(qwen_mod, "HAVE_QWEN_OMNI_UTILS", False)
    monkeypatch.setattr(qwen_mod, "_have_torchcodec", lambda: False)
    with pytest.raises(ImportError, match="neither is installed: pip install qwen-omni-utils"):
        qwen3_omni_collate_fn(examples, proc, use_audio_in_video=True)
    # without video the flag is irrelevant and the collate works without the package
    batch = qwen3_omni_collate_fn(
        [{"conversation": conv([{"type": "audio", "audio": S.tone()}])}], proc, use_audio_in_video=True
    )
    assert supervised_text(batch, proc.tokenizer) == "Fine.<|im_end|>"


def test_qwen3_omni_use_audio_in_video_interleaves(monkeypatch):
    proc = S.qwen3_omni_processor()
    frames = [S.image(56, 56, (i * 40, 0, 0)) for i in range(4)]
    seen = []

    def fake_process_audio_info(conversations, use_audio_in_video):  # qwen-omni-utils' signature
        videos = [c for m in conversations[0] for c in m["content"] if c["type"] == "video"]
        seen.append((use_audio_in_video, len(videos)))
        return [S.tone(1.0, hz=200.0) for _ in videos]

    monkeypatch.setattr(qwen_mod, "HAVE_QWEN_OMNI_UTILS", True)
    monkeypatch.setattr(qwen_mod, "process_audio_info", fake_process_audio_info)
    examples = [{"conversation": conv([{"type": "audio", "audio": S.tone(0.5)}, {"type": "video", "video": frames}])}]
    with_audio = qwen3_omni_collate_fn(examples, proc, use_audio_in_video=True)
    plain = qwen3_omni_collate_fn(examples, proc)
    assert seen == [(True, 1)]
    audio_id = proc.tokenizer.convert_tokens_to_ids("<|audio_pad|>")
    # the video's own track adds audio tokens inside the video span
    assert int((with_audio["input_ids"] == audio_id).sum()) > int((plain["input_ids"] == audio_id).sum())
    assert with_audio["input_features"].shape[0] == 2
    check_contract(with_audio, n_videos=[1])

    def silent(conversations, use_audio_in_video):
        raise AssertionError("Video must has audio track when use_audio_in_video=True")

    monkeypatch.setattr(qwen_mod, "process_audio_info", silent)
    with pytest.raises(ValueError, match="sample 0: qwen-omni-utils could not read the audio track of its 1 video"):
        qwen3_omni_collate_fn(examples, proc, use_audio_in_video=True)


def test_qwen3_omni_use_audio_in_video_reads_the_track_with_torchcodec(monkeypatch, tmp_path):
    from conformance.media import video_file

    pytest.importorskip("torchcodec")
    monkeypatch.setenv("VLMSPEC_MEDIA_DIR", str(tmp_path))
    monkeypatch.setattr(qwen_mod, "HAVE_QWEN_OMNI_UTILS", False)
    proc = S.qwen3_omni_processor()
    sounding = video_file(frames=4, width=56, height=56, seed=3, fps=2, sound={"sample_rate": 16000, "seed": 4})
    silent = video_file(frames=4, width=56, height=56, seed=3, fps=2)
    try:
        track = qwen_mod._track_by_torchcodec({"video": sounding}, 0, 0, 16000)
    except ValueError as exc:  # torchcodec without FFmpeg's libraries: an environment, not this collate
        pytest.skip(f"torchcodec cannot decode here: {exc}")
    # 4 frames at 2 fps = 2 s of sound at 16 kHz (AAC pads its last frame: at most 1024 samples more)
    assert 32000 <= track.size <= 32000 + 1024 and track.dtype == np.float32 and 0.1 < np.abs(track).max() <= 1.0
    examples = [
        {"conversation": conv([{"type": "audio", "audio": S.tone(0.5)}, {"type": "video", "video": sounding}])},
        {"conversation": conv([{"type": "text", "text": "Hi."}])},
    ]
    batch = qwen3_omni_collate_fn(examples, proc, use_audio_in_video=True)
    plain = qwen3_omni_collate_fn(examples, proc)
    assert batch["n_audios_per_sample"].tolist() == [2, 0]  # the standalone clip and the video's track
    assert batch["input_features"].shape[0] == 2 and plain["input_features"].shape[0] == 1
    audio_id = proc.tokenizer.convert_tokens_to_ids("<|audio_pad|>")
    assert int((batch["input_ids"] == audio_id).sum()) > int((plain["input_ids"] == audio_id).sum())
    check_contract(batch, n_videos=[1, 0])
    with pytest.raises(ValueError, match=r"sample 0: video 0 \(.*\): could not read its audio track"):
        qwen3_omni_collate_fn([{"conversation": conv([{"type": "video", "video": silent}])}], proc, True)
    frames = [S.image(56, 56, (i * 40, 0, 0)) for i in range(4)]
    with pytest.raises(ValueError, match="given as list .frames have no track.: pass the file's path"):
        qwen3_omni_collate_fn([{"conversation": conv([{"type": "video", "video": frames}])}], proc, True)


# ---------------------------------------------------------------- Kimi-VL


def test_kimi_vl_labels_and_media():
    proc = S.kimi_vl_processor()
    examples = [
        {
            "conversation": conv(
                [{"type": "image", "image": S.image(56, 56)}, {"type": "image", "image": S.image(84, 56)}]
            )
        },
        {"conversation": conv([], "Text.")},
    ]
    batch = run_unmutated(kimi_vl_collate_fn, examples, proc)
    check_contract(batch, n_images=[2, 0])
    assert supervised_text(batch, proc.tokenizer, 0) == "Fine.<|im_end|>"
    assert supervised_text(batch, proc.tokenizer, 1) == "Text.<|im_end|>"
    pads = int((batch["input_ids"] == proc.image_token_id).sum())
    assert pads == int((batch["image_grid_hws"].prod(-1) // 4).sum())


def test_kimi_vl_max_length_errors_name_sample():
    proc = S.kimi_vl_processor()
    examples = [
        {"conversation": conv([], "ok")},
        {"conversation": conv([{"type": "image", "image": S.image(112, 112)}], "x" * 5)},
    ]
    with pytest.raises(ValueError, match=r"sample 1: the prompt is \d+ tokens .* max_length=20"):
        kimi_vl_collate_fn(examples, proc, max_length=20)
    long_answer = [{"conversation": conv([], "word " * 40)}]
    batch = kimi_vl_collate_fn(long_answer, proc, max_length=30)
    assert batch["input_ids"].shape == (1, 29)


def test_kimi_vl_fake_image():
    proc = S.kimi_vl_processor()
    fake = inject_fake_image_into_conversation(conv([], "Plain."))
    batch = kimi_vl_collate_fn(
        [{"conversation": fake, "_injected_fake": True}, {"conversation": conv([], "Plain.")}], proc
    )
    vis = batch["input_ids"][0] == proc.image_token_id
    assert vis.any() and (batch["attention_mask"][0][vis] == 0).all()
    assert supervised_text(batch, proc.tokenizer, 0) == supervised_text(batch, proc.tokenizer, 1)


# ---------------------------------------------------------------- Kimi-K2.5 (pre-expanded, fixed length)


def _k25_examples():
    return [
        {
            "conversation": conv(
                [{"type": "image", "image": S.image(56, 56)}, {"type": "image", "image": S.image(112, 56)}]
            )
        },
        {"conversation": conv([], "Text.")},
    ]


def test_kimi_k25_pre_expands_and_pads_to_max_length():
    proc = S.kimi_k25_processor()
    batch = run_unmutated(kimi_k25_vl_collate_fn, _k25_examples(), proc, max_length=96)
    check_contract(batch, n_images=[2, 0])
    assert batch["input_ids"].shape == (2, 95)  # fixed: max_length - 1 after the shift
    grid = batch["image_grid_thw"]
    expected = int(((grid[:, 1] // 2) * (grid[:, 2] // 2)).sum())
    assert int((batch["input_ids"] == proc.image_token_id).sum()) == expected
    assert batch["pixel_values"].shape[0] == int(grid.prod(-1).sum())
    # the real processor, which expands by itself, gives the same token sequence for the image sample
    text = proc.apply_chat_template(_k25_examples()[0]["conversation"], tokenize=False)
    ref = proc(text=[text], images=[S.image(56, 56), S.image(112, 56)], return_tensors="pt", add_special_tokens=False)
    n = ref["input_ids"].shape[1]
    assert torch.equal(batch["input_ids"][0, : n - 1], ref["input_ids"][0, :-1])
    assert supervised_text(batch, proc.tokenizer, 0) == "Fine.<|im_end|>"


def test_kimi_k25_truncation_drops_whole_image_and_keeps_counts_consistent():
    proc = S.kimi_k25_processor()
    # turn 1 supervised early; the image of turn 2 straddles max_length
    c = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "image", "image": S.image(112, 112)}, {"type": "text", "text": "And?"}]},
        {"role": "assistant", "content": "Done."},
    ]
    full = kimi_k25_vl_collate_fn([{"conversation": c}], proc)
    start = int((full["input_ids"][0] == proc.image_token_id).nonzero()[0])
    batch = kimi_k25_vl_collate_fn([{"conversation": c}], proc, max_length=start + 5)
    assert batch["input_ids"].shape == (1, start + 4)
    assert not (batch["input_ids"] == proc.image_token_id).any()  # no partial image left
    assert "pixel_values" not in batch and "n_images_per_sample" not in batch
    assert supervised_text(batch, proc.tokenizer) == "Hello.<|im_end|>"
    # with a second sample that keeps its image, counts, grids and pixel rows still agree
    small = [
        {"role": "user", "content": [{"type": "image", "image": S.image()}]},
        {"role": "assistant", "content": "Ok."},
    ]
    two = kimi_k25_vl_collate_fn([{"conversation": c}, {"conversation": small}], proc, max_length=start + 5)
    assert two["n_images_per_sample"].tolist() == [0, 1]
    assert two["image_grid_thw"].shape[0] == 1 and two["pixel_values"].shape[0] == int(
        two["image_grid_thw"].prod(-1).sum()
    )
    assert int((two["input_ids"] == proc.image_token_id).sum()) == int(
        (two["image_grid_thw"][:, 1:] // 2).prod(-1).sum()
    )


def test_kimi_k25_drop_overlong():
    proc = S.kimi_k25_processor()
    batch = kimi_k25_vl_collate_fn(_k25_examples(), proc, max_length=40, drop_overlong=True)
    assert batch["input_ids"].shape == (1, 39)  # the image sample (> 40 tokens) is dropped
    assert supervised_text(batch, proc.tokenizer) == "Text.<|im_end|>"
    assert "n_images_per_sample" not in batch
    with pytest.raises(ValueError, match="every sample exceeds max_length=10"):
        kimi_k25_vl_collate_fn(_k25_examples(), proc, max_length=10, drop_overlong=True)


def test_kimi_k25_bad_input_names_sample_and_numbers():
    proc = S.kimi_k25_processor()
    with pytest.raises(ValueError, match=r"sample 0: the prompt is \d+ tokens after image expansion .* max_length=30"):
        kimi_k25_vl_collate_fn(_k25_examples(), proc, max_length=30)
    # a literal placeholder in the user text makes 2 placeholders for 1 grid
    bad = [{"conversation": conv([{"type": "image", "image": S.image()}], question="see <|media_pad|> here")}]
    with pytest.raises(ValueError, match=r"sample 0: 2 image placeholder tokens .* grid_thws has 1 rows"):
        kimi_k25_vl_collate_fn(bad, proc)


# ---------------------------------------------------------------- LLaVA-OneVision-1.5


def test_llava_onevision_without_qwen_vl_utils(monkeypatch):
    monkeypatch.setattr(qwen_mod, "HAVE_QWEN_VL_UTILS", False)
    proc = S.llava_onevision_processor()
    examples = [{"conversation": conv([{"type": "image", "image": S.image()}])}, {"conversation": conv([], "T.")}]
    batch = run_unmutated(llava_onevision_collate_fn, examples, proc)
    check_contract(batch, n_images=[1, 0])
    assert supervised_text(batch, proc.tokenizer, 1) == "T.<|im_end|>"


def test_llava_onevision_uses_qwen_vl_utils(monkeypatch):
    proc = S.llava_onevision_processor()
    calls = []

    def fake_process_vision_info(conversations):  # qwen-vl-utils: (images, videos) in conversation order
        calls.append(len(conversations))
        return [S.image(112, 112, (1, 2, 3))], None

    monkeypatch.setattr(qwen_mod, "HAVE_QWEN_VL_UTILS", True)
    monkeypatch.setattr(qwen_mod, "process_vision_info", fake_process_vision_info)
    examples = [{"conversation": conv([{"type": "image", "image": S.image(56, 56)}])}]
    batch = run_unmutated(llava_onevision_collate_fn, examples, proc)
    assert calls == [1]
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8]]  # the utils' 112x112 image, not the 56x56 one


# ---------------------------------------------------------------- Nemotron omni


def test_nemotron_omni_image_video_audio():
    proc = S.nemotron_omni_processor()
    frames = [S.image(64, 64, (i * 20, 0, 0)) for i in range(12)]
    examples = [
        {"conversation": conv([{"type": "audio", "audio": S.tone(0.5)}, {"type": "image", "image": S.image(64, 64)}])},
        {"conversation": conv([{"type": "video", "video": frames}, {"type": "audio", "audio": S.tone(1.0)}], "Video.")},
    ]
    batch = run_unmutated(nemotron_omni_collate_fn, examples, proc, max_video_frames=4)
    check_contract(batch, n_images=[1, 0], n_videos=[0, 1])
    assert batch["pixel_values_videos"].shape[0] == 4  # 12 frames -> at most 4
    assert batch["input_features"].shape[0] == 2 and batch["input_features_mask"].shape[0] == 2
    assert supervised_text(batch, proc.tokenizer, 1) == "Video.<|im_end|>"
    # each clip's mask covers its own length only (clips padded to the longest)
    lens = batch["input_features_mask"].sum(1).tolist()
    assert lens[0] < lens[1]


def test_nemotron_omni_bad_input(tmp_path):
    proc = S.nemotron_omni_processor()
    with pytest.raises(ValueError, match="max_video_frames"):
        nemotron_omni_collate_fn([{"conversation": conv()}], proc, max_video_frames=0)
    with pytest.raises(ValueError, match=r"sample 0: .*video.*does not exist"):
        nemotron_omni_collate_fn([{"conversation": conv([{"type": "video", "video": str(tmp_path / "v.mp4")}])}], proc)
    with pytest.raises(ValueError, match=r"sample 1: .*audio.*does not exist"):
        nemotron_omni_collate_fn(
            [{"conversation": conv()}, {"conversation": conv([{"type": "audio", "audio": str(tmp_path / "a.wav")}])}],
            proc,
        )


# ---------------------------------------------------------------- Nemotron-Parse


def test_nemotron_parse_masks_prompt():
    proc = S.nemotron_parse_processor()
    examples = [
        {"conversation": conv([{"type": "image", "image": S.image(80, 100)}], "# Title\nBody text")},
        {"conversation": conv([{"type": "image", "image": S.image()}], "x")},
    ]
    batch = run_unmutated(nemotron_parse_collate_fn, examples, proc)
    check_contract(batch, n_images=[1, 1])
    tok = proc.tokenizer
    assert supervised_text(batch, tok, 0) == "# Title\nBody text</s>"
    assert supervised_text(batch, tok, 1) == "x</s>"
    prompt = tok("</s><s><predict_bbox><predict_classes><output_markdown>", add_special_tokens=False)["input_ids"]
    assert batch["input_ids"][0, : len(prompt)].tolist() == prompt
    assert (batch["labels"][0, : len(prompt) - 1] == -100).all()
    custom = nemotron_parse_collate_fn(examples, proc, task_prompt="<s><predict_bbox>")
    assert custom["input_ids"].shape[1] == batch["input_ids"].shape[1] - 3
    assert batch["pixel_values"].shape == (2, 3, 32, 32)


def test_nemotron_parse_needs_one_image_and_an_answer():
    proc = S.nemotron_parse_processor()
    with pytest.raises(ValueError, match="sample 1: .*exactly one page image.*got 0"):
        nemotron_parse_collate_fn(
            [{"conversation": conv([{"type": "image", "image": S.image()}])}, {"conversation": conv([])}], proc
        )
    with pytest.raises(ValueError, match="sample 0: .*no assistant text"):
        nemotron_parse_collate_fn([{"conversation": conv([{"type": "image", "image": S.image()}], "")}], proc)
