"""``fake_image`` on a framework's own dummy image (``check_framework_dummy_image``): a toy
``dummy_image_batch`` that appends a real image's vision tokens to a text-only row, masked, the way
LLaMA-Factory's collator does, passes; the same dummy left attended fails on the mask, and one put inside
the text of a model with sequence-index positions fails on the logits."""

from __future__ import annotations

import pytest
import torch

from conformance import impl
from conformance.checks import CheckFailure
from conformance.corpus import load_corpus
from conformance.fake_checks import check_framework_dummy_image, vision_token_ids
from conformance.loading import load_processor
from conformance.registry import load_registry
from vlmspec.collate_fns import default_collate_fn

GEMMA3 = "google/gemma-3-4b-it"
STEP37 = "stepfun-ai/Step-3.7-Flash"


def _toy(where: str, attended: bool):
    """A framework's ``dummy_image_batch``: the text row plus one real image's vision tokens and media, masked
    (or not: ``attended``), after the text or inside it (``where``)."""

    def dummy_image_batch(examples, processor, model=None):
        spec = next(s for s in load_registry().values() if s.processor_class == type(processor).__name__)
        corpus = {c.id: c for c in load_corpus()}
        text = default_collate_fn(examples=examples, processor=processor)
        image = default_collate_fn(
            examples=[{"conversation": corpus["single_turn_image"].conversation}], processor=processor
        )
        vis = torch.isin(image["input_ids"][0], torch.tensor(vision_token_ids(spec, processor)))
        n = int(vis.sum())
        own = {"attention_mask": torch.full((1, n), int(attended)), "labels": torch.full((1, n), -100)}
        at = text["input_ids"].shape[1] if where == "after" else 3  # 3: inside the text, after its first tokens
        out = {}
        for key, value in text.items():
            if value.dim() == 2 and value.shape == text["input_ids"].shape:  # token tensors: text + dummy columns
                dummy = own.get(key, image[key][:, vis] if key in image else torch.zeros(1, n, dtype=value.dtype))
                out[key] = torch.cat([value[:, :at], dummy, value[:, at:]], dim=1)
        out.update({k: v for k, v in image.items() if k not in out and k not in text})  # the image's media
        return out

    return dummy_image_batch


def _case(model_id: str):
    load_processor(model_id)
    return load_registry()[model_id], next(c for c in load_corpus() if c.id == "single_turn_text")


def test_a_trailing_masked_dummy_image_is_invisible(monkeypatch):
    monkeypatch.setattr(impl, "get", lambda documented, name: _toy("after", attended=False))
    check_framework_dummy_image(*_case(GEMMA3))


def test_an_attended_dummy_image_fails_on_its_mask(monkeypatch):
    monkeypatch.setattr(impl, "get", lambda documented, name: _toy("after", attended=True))
    with pytest.raises(CheckFailure, match="dummy-image vision tokens left attended"):
        check_framework_dummy_image(*_case(GEMMA3))


def test_a_dummy_image_inside_the_text_fails_on_the_logits(monkeypatch):
    # masked, but on Step-3.7 (1-D rotary positions from the sequence index) it still moves the text after it
    # away from the text before it (a uniform shift, a dummy before all of the text, would not: RoPE is relative)
    monkeypatch.setattr(impl, "get", lambda documented, name: _toy("inside", attended=False))
    with pytest.raises(CheckFailure, match="real-token logits differ from the same row without the dummy image"):
        check_framework_dummy_image(*_case(STEP37))
