"""``fake_image`` on a framework's dummy image *and* dummy audio clip (``check_framework_dummy_image``): in a
text-only batch LLaMA-Factory appends, for a template with an audio token (Gemma 4's ``gemma4n``), a silent
clip's tokens after the dummy image's, masked, with the clip's features. The row without the dummy must
then lose the clip too: a toy batch built that way passes on the pack's tiny Gemma 4 (which has an audio
tower); with the clip's features kept in that row, HF's forward refuses features without placeholders."""

from __future__ import annotations

import torch

from conformance import impl
from conformance.corpus import load_corpus
from conformance.fake_checks import check_framework_dummy_image, vision_token_ids
from conformance.loading import load_processor
from conformance.registry import load_registry
from vlmspec.collate_fns import default_collate_fn

GEMMA4 = "google/gemma-4-E2B-it"
_AUDIO_MEDIA = ("input_features", "input_features_mask")


def _toy():
    """A framework's ``dummy_image_batch``: the text row, then one real image's vision tokens and one real
    clip's audio tokens (``<|audio>``, ``<|audio|>``..., ``<audio|>``), masked; the media are the image's and
    the clip's."""

    def dummy_image_batch(examples, processor, model=None):
        spec = load_registry()[GEMMA4]
        corpus = {c.id: c for c in load_corpus()}
        text = default_collate_fn(examples=examples, processor=processor)
        image = default_collate_fn(
            examples=[{"conversation": corpus["single_turn_image"].conversation}], processor=processor
        )
        audio = default_collate_fn(
            examples=[{"conversation": corpus["audio_question"].conversation}], processor=processor
        )
        tok = processor.tokenizer
        clip_ids = [
            tok.convert_tokens_to_ids(t) for t in (processor.boa_token, processor.audio_token, processor.eoa_token)
        ]
        parts = [
            (image, torch.isin(image["input_ids"][0], torch.tensor(vision_token_ids(spec, processor)))),
            (audio, torch.isin(audio["input_ids"][0], torch.tensor(clip_ids))),
        ]
        out = {}
        for key, value in text.items():
            if value.dim() == 2 and value.shape == text["input_ids"].shape:  # token tensors: text + dummy columns
                pieces = [value]
                for source, span in parts:
                    n = int(span.sum())
                    own = {"attention_mask": torch.zeros(1, n, dtype=torch.long), "labels": torch.full((1, n), -100)}
                    pieces.append(
                        own.get(key, source[key][:, span] if key in source else torch.zeros(1, n, dtype=value.dtype))
                    )
                out[key] = torch.cat(pieces, dim=1)
        out.update({k: v for k, v in image.items() if k not in out and k not in text})
        out.update({k: audio[k] for k in _AUDIO_MEDIA})
        return out

    return dummy_image_batch


def _case():
    load_processor(GEMMA4)
    return load_registry()[GEMMA4], next(c for c in load_corpus() if c.id == "single_turn_text")


def test_gemma4_masked_dummy_image_and_clip_are_invisible(monkeypatch):
    monkeypatch.setattr(impl, "get", lambda documented, name: _toy())
    check_framework_dummy_image(*_case())
