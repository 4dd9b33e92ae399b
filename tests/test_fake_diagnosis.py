"""The fake-image check names every cause it finds, not only the first (changed tokens, shifted
positions, state carried through the masked tokens), on families whose findings show each."""

from __future__ import annotations

import pytest

from conformance import fake_checks
from conformance.checks import CheckFailure
from conformance.corpus import load_corpus
from conformance.fake_checks import check_fake_image_invisible
from conformance.registry import load_registry

CASE = next(c for c in load_corpus() if c.id == "single_turn_text")


@pytest.fixture(autouse=True)
def fresh_diagnoses(monkeypatch):
    """Conformance items in the same session may already have used this cell's full diagnoses."""
    monkeypatch.setattr(fake_checks, "_DIAGNOSES", {})


def test_later_failures_quote_the_measured_causes(monkeypatch):
    """After DIAGNOSED_CASES full diagnoses of a cell, a failure quotes what they found."""
    monkeypatch.setattr(fake_checks, "DIAGNOSED_CASES", 1)
    spec = load_registry()["microsoft/Phi-4-multimodal-instruct"]
    other = next(c for c in load_corpus() if c.id == "multi_turn_text")
    messages = []
    for case in (CASE, other):
        with pytest.raises(CheckFailure) as info:
            check_fake_image_invisible(spec, case)
        messages.append(str(info.value))
    assert "2. shifted positions" in messages[0]
    assert "2. further causes measured on single_turn_text (not re-measured here): shifted positions" in messages[1]


def _failure(model_id: str) -> str:
    with pytest.raises(CheckFailure) as info:
        check_fake_image_invisible(load_registry()[model_id], CASE)
    return str(info.value)


def test_positions_alone_are_named_for_phi4():
    message = _failure("microsoft/Phi-4-multimodal-instruct")
    assert "2 causes" in message and "shifted positions" in message
    assert "state carried through the masked tokens" not in message  # mask-derived positions fix it


def test_changed_tokens_do_not_hide_the_position_shift_on_gemma3():
    message = _failure("google/gemma-3-4b-it")
    assert "1. the real tokens of the fake-image sample differ" in message
    assert "2. shifted positions" in message


def test_recurrent_state_is_named_for_nemotron_h():
    message = _failure("nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16")
    assert "state carried through the masked tokens" in message and "shifted positions" not in message


def test_an_invisible_fake_image_passes():
    check_fake_image_invisible(load_registry()["Qwen/Qwen2.5-VL-3B-Instruct"], CASE)
