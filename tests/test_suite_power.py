"""The conformance checks must catch realistic label and fake-image bugs (they can fail).

Each test breaks vlmspec on purpose (monkeypatch) and asserts that the right check fails with a
readable message, and that the stored golden no longer matches.
"""

from __future__ import annotations

import json

import pytest
import torch

import vlmspec.collate.default as default_mod
import vlmspec.collate.labels as labels_mod
from conformance import checks
from conformance.checks import CheckFailure, check_labels_vs_oracle, golden_record
from conformance.corpus import load_corpus
from conformance.golden import GOLDEN_DIR
from conformance.registry import load_registry

MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"


@pytest.fixture()
def spec(monkeypatch):
    monkeypatch.setattr(checks, "_COLLATED", {})  # no results cached from the unbroken code
    return load_registry()[MODEL]


def _case(case_id):
    return next(c for c in load_corpus() if c.id == case_id)


def _stored_golden(spec, case_id):
    return json.loads((GOLDEN_DIR / spec.folder / f"test_golden-{case_id}.json").read_text())


def test_dropping_the_stop_token_fails_oracle_and_golden(spec, monkeypatch):
    original = labels_mod._build_labels_from_markers

    def broken(input_ids, marker, stop):
        return original(input_ids, marker, stop).masked_fill(input_ids == stop, -100)

    monkeypatch.setattr(labels_mod, "_build_labels_from_markers", broken)
    case = _case("multi_turn_text")
    with pytest.raises(CheckFailure) as err:
        check_labels_vs_oracle(spec, case)
    assert "left unsupervised" in str(err.value) and "'<|im_end|>'" in str(err.value)
    assert f"[{MODEL} | DERIVED | fixture multi_turn_text | check labels]" in str(err.value)
    assert golden_record(spec, case) != _stored_golden(spec, case.id)


def test_unshifted_labels_fail(spec, monkeypatch):
    def no_shift(batch, labels):
        out = {
            k: (v[:, :-1] if isinstance(v, torch.Tensor) and v.shape == batch["input_ids"].shape else v)
            for k, v in batch.items()
        }
        out["labels"] = labels[:, :-1]
        return out

    monkeypatch.setattr(default_mod, "shift_for_next_token", no_shift)
    with pytest.raises(CheckFailure, match="not shifted by one"):
        check_labels_vs_oracle(spec, _case("single_turn_text"))


def test_labelling_the_marker_fails(spec, monkeypatch):
    original = labels_mod._build_labels_from_markers

    def greedy(input_ids, marker, stop):
        return original(input_ids, marker[:1], stop)  # supervises "assistant\n" too

    monkeypatch.setattr(labels_mod, "_build_labels_from_markers", greedy)
    with pytest.raises(CheckFailure, match="supervised but not an answer"):
        check_labels_vs_oracle(spec, _case("single_turn_text"))


def test_fake_image_left_attended_fails(spec, monkeypatch):
    from conformance.fake_checks import check_fake_image_invisible

    monkeypatch.setattr(default_mod, "mask_fake_vision_tokens_batch", lambda batch, processor, idx: batch)
    with pytest.raises(CheckFailure, match="left attended"):
        check_fake_image_invisible(spec, _case("single_turn_text"))
