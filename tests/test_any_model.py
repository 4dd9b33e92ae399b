"""Models nobody registered: records derived from the processor, tiny models shrunk from the real config,
and a whole conformance run from a user's HF cache (no record, no pack)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers

from conformance import tiny
from conformance.corpus import load_corpus
from conformance.derive import derive_record, tokens_per_image_rule, vision_tokens
from conformance.loading import load_processor
from conformance.pp.spec import tokens_per_image
from conformance.registry import FamilySpec, load_registry

from .hf_cache import QWEN25_REAL_TEXT, QWEN25_REAL_VISION, cache_with_qwen25_under, real_size_qwen25_config

ROOT = Path(__file__).resolve().parents[1]
# one registered family per tokens_per_image kind (and Kimi-VL for a grid under another key)
REVIEWED = (
    "Qwen/Qwen2.5-VL-3B-Instruct",
    "google/gemma-3-4b-it",
    "google/gemma-4-E2B-it",
    "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
    "microsoft/Phi-4-multimodal-instruct",
    "stepfun-ai/Step-3.7-Flash",
    "moonshotai/Kimi-VL-A3B-Instruct",
)


def _corpus_media(processor):
    """(processor output, image count) of every corpus conversation that has images."""
    from conformance.checks import _images_in
    from conformance.oracle import renderer

    for case in load_corpus():
        conversation = case.conversation
        images = [im.convert("RGB") for im in _images_in(conversation)]
        if images and case.media == {"image"}:
            text = renderer(processor).apply_chat_template(conversation, tokenize=False)
            yield processor(text=[text], images=images, return_tensors="pt", add_special_tokens=False), len(images)


@pytest.mark.parametrize("model_id", REVIEWED)
def test_derived_vision_tokens_and_image_rule_agree_with_the_reviewed_record(model_id):
    """The probe finds the record's vision tokens and placeholder, and its rule counts every corpus image's
    placeholders as the reviewed rule does (Phi-4's crop size is not observable on these images)."""
    spec = load_registry()[model_id]
    processor = load_processor(model_id)
    names, placeholder = vision_tokens(processor)
    assert set(spec.vision_tokens) <= set(names)
    assert placeholder == spec.pp["image_token"]
    rule = tokens_per_image_rule(processor, placeholder)
    assert rule is not None
    derived = FamilySpec(
        model_id=model_id,
        family="",
        processor_class="",
        collate="auto",
        checks=(),
        extra={"pp": {"image_token": placeholder, "tokens_per_image": rule}},
    )
    tid = processor.tokenizer.convert_tokens_to_ids(placeholder)
    for media, n_images in _corpus_media(processor):
        media = dict(media)
        assert tokens_per_image(derived, media) == tokens_per_image(spec, media), rule
        assert sum(tokens_per_image(derived, media)) == int((media["input_ids"] == tid).sum())
        assert len(tokens_per_image(derived, media)) == n_images


def test_shrinking_a_real_config_keeps_ids_vocabulary_and_rope_and_builds_nothing_large():
    tiny_config = json.loads((load_processor_pack_dir() / "config.json").read_text())
    real = transformers.Qwen2_5_VLConfig.from_dict(real_size_qwen25_config(tiny_config))
    cls = transformers.Qwen2_5_VLForConditionalGeneration
    assert tiny.count_parameters(cls, real) > 3_000_000_000  # counted on the meta device
    model = tiny.tiny_model(cls, real)
    size = sum(p.numel() for p in model.parameters())
    assert size < 20_000_000
    text, vision = model.config.text_config, model.config.vision_config
    assert text.vocab_size == real.text_config.vocab_size and model.config.image_token_id == real.image_token_id
    assert text.rope_parameters["mrope_section"] == [2, 3, 3]  # sums to head_dim / 2 = 8
    assert (vision.patch_size, vision.spatial_merge_size, vision.window_size) == (14, 2, 112)
    assert vision.fullatt_block_indexes == [vision.depth - 1] and vision.out_hidden_size == text.hidden_size
    assert text.num_hidden_layers < QWEN25_REAL_TEXT["num_hidden_layers"]
    assert vision.depth < QWEN25_REAL_VISION["depth"]
    model(input_ids=torch.tensor([[1, 2, 3]]))  # it runs


def load_processor_pack_dir() -> Path:
    from vlmspec.hub import materialize

    return materialize("Qwen/Qwen2.5-VL-3B-Instruct").snapshot


def test_a_config_that_stays_large_is_refused(monkeypatch):
    tiny_config = json.loads((load_processor_pack_dir() / "config.json").read_text())
    real = transformers.Qwen2_5_VLConfig.from_dict(real_size_qwen25_config(tiny_config))
    monkeypatch.setattr(tiny, "MAX_PARAMETERS", 1_000_000)
    with pytest.raises(tiny.NotShrinkable, match="still has .* parameters"):
        tiny.tiny_model(transformers.Qwen2_5_VLForConditionalGeneration, real)


def test_derived_record_of_a_cached_model(tmp_path, monkeypatch):
    model_id = "someone/qwen25-vl-finetune"
    cache_with_qwen25_under(model_id, tmp_path / "hub")
    # transformers and huggingface_hub read this constant at call time (HF_HUB_CACHE is read at import)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_id, cache_dir=str(tmp_path / "hub"))
    derived = derive_record(model_id, processor, "cache")
    spec, reviewed = derived.spec, load_registry()["Qwen/Qwen2.5-VL-3B-Instruct"]
    assert set(spec.vision_tokens) == set(reviewed.vision_tokens)
    assert spec.pp["tokens_per_image"] == reviewed.pp["tokens_per_image"] and spec.pp["position_ids"] == "mrope"
    assert spec.model_class == reviewed.model_class and spec.vision_module == reviewed.vision_module
    assert set(spec.checks) == {
        "labels",
        "label_consistency",
        "vision_tokens",
        "fake_image",
        "golden",
        "pp_chunking",
        "pp_staged_forward",
    }
    assert set(derived.not_run) == {"fake_image_mixed_batch", "template_behaviour", "pp_distributed", "pp_golden"}
    assert all(derived.not_run.values())


@pytest.mark.slow  # two conformance runs in subprocesses
def test_an_unregistered_model_from_the_hf_cache_runs_every_derivable_check(tmp_path):
    """Acceptance of issue 15: a registered family's real-size files under a new id, no record, no pack."""
    model_id = "someone/qwen25-vl-finetune"
    cache_with_qwen25_under(model_id, tmp_path / "hub")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "VLMSPEC_GOLDEN_DIR": str(tmp_path / "golden")}
    checks = (
        "labels",
        "label_consistency",
        "vision_tokens",
        "fake_image",
        "golden",
        "pp_chunking",
        "pp_staged_forward",
    )
    for update in (["--snapshot-update"], []):
        started = time.monotonic()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "conformance",
                "-p",
                "no:cacheprovider",
                "-q",
                "--model",
                model_id,
                "--conformance-report",
                str(tmp_path / "report"),
                *update,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        elapsed = time.monotonic() - started
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
        assert elapsed < 120, f"{elapsed:.0f} s"
        row = json.loads((tmp_path / "report" / "conformance-report.json").read_text())["models"][model_id]
        assert row["fixture_class"] == "REAL (cache)"
        assert {c: row["checks"][c]["status"] for c in checks} == dict.fromkeys(checks, "pass")
        assert "Not run: fake_image_mixed_batch (needs a registered record" in out.stdout
    assert len(list((tmp_path / "golden" / "someone--qwen25-vl-finetune").glob("*"))) >= 25


def test_audio_tokens_are_named_from_the_processor():
    from conformance.derive import audio_tokens

    assert set(audio_tokens(load_processor("Qwen/Qwen3-Omni-30B-A3B-Instruct"))) == {
        "<|audio_start|>",
        "<|audio_end|>",
        "<|audio_pad|>",
    }
    assert audio_tokens(load_processor("Qwen/Qwen2.5-VL-3B-Instruct")) == []
