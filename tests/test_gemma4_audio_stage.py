"""vlmspec's Gemma 4 stage-0 audio features (``_gemma4_audio_features``) on a tiny model built from the
pack's ``config.json`` (its SYNTHETIC audio tower; the text vocabulary cut to keep it fast): the features
are exactly the soft tokens HF's own ``Gemma4Model.forward`` scatters into the ``<|audio|>`` placeholders,
one per placeholder the processor writes, with each clip's padded frames dropped."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers

from vlmspec.hub.recipe import family_folder
from vlmspec.pipelining.forwards import _default_audio_features, _gemma4_audio_features

MODEL = "google/gemma-4-E2B-it"
SMALL_VOCAB = 512  # boa/eoa ids of the real vocabulary lie outside it, so the sequences use 1 and 3
BOA, EOA = 1, 3
N_MELS = 128  # Gemma4AudioFeatureExtractor's feature_size, what the pack's processor produces


@pytest.fixture(scope="module")
def model() -> transformers.Gemma4ForConditionalGeneration:
    data = json.loads(family_folder(MODEL).snapshot_files()["config.json"])  # the overlay's file, as packed
    data["text_config"]["vocab_size"] = data["text_config"]["vocab_size_per_layer_input"] = SMALL_VOCAB
    config = transformers.Gemma4Config.from_dict(data)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return transformers.Gemma4ForConditionalGeneration(config).eval()


def _clips(frames: list[int], width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_features [n, width, 128]`` (zero past each clip's frames, as the feature extractor pads) and
    ``input_features_mask [n, width]`` (bool, True = a real frame)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.arange(width)[None, :] < torch.tensor(frames)[:, None]
    return torch.randn(len(frames), width, N_MELS, generator=gen) * mask[..., None], mask


def _placeholders(mask: torch.Tensor) -> list[int]:
    """``<|audio|>`` tokens per clip, by transformers' own ``Gemma4Processor.replace_audio_token``."""
    marks = SimpleNamespace(boa_token="[", audio_token="A", eoa_token="]")
    inputs = {"input_features_mask": mask.numpy().astype(np.int64)}
    return [transformers.Gemma4Processor.replace_audio_token(marks, inputs, i).count("A") for i in range(len(mask))]


def _ids(model, counts: list[int], seed: int = 1) -> torch.Tensor:
    """One row per clip: text, ``BOA``, the clip's placeholders, ``EOA``, text; right-padded with pad ids."""
    gen = torch.Generator().manual_seed(seed)
    audio = model.config.audio_token_id
    rows = [
        torch.cat([torch.randint(4, SMALL_VOCAB, (5,), generator=gen), torch.tensor([BOA] + [audio] * n + [EOA])])
        for n in counts
    ]
    width = max(len(r) for r in rows) + 2
    pad = model.config.text_config.pad_token_id
    return torch.stack([torch.cat([r, torch.full((width - len(r),), pad)]) for r in rows])


def _hf_audio_soft_tokens(model, ids: torch.Tensor, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[n_audio_tokens, H]``: what HF's forward writes at the ``<|audio|>`` positions (the language model's
    ``inputs_embeds`` there, in sequence order)."""
    seen = {}
    hook = model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True
    )
    try:
        with torch.no_grad():
            model(input_ids=ids, input_features=features, input_features_mask=mask)
    finally:
        hook.remove()
    return seen["inputs_embeds"][ids == model.config.audio_token_id]


def test_gemma4_stage0_audio_features_are_the_soft_tokens_hf_scatters(model):
    # a 1 s and a 0.5 s clip (99 and 50 mel frames), the shorter padded to the longer, as a batch has them
    features, mask = _clips([99, 50], 99)
    counts = _placeholders(mask)
    with torch.no_grad():
        got = _gemma4_audio_features(model, features, {"input_features_mask": mask})
        via_dispatch = _default_audio_features(model, features, {"input_features_mask": mask})
    want = _hf_audio_soft_tokens(model, _ids(model, counts), features, mask)
    assert got.shape == (sum(counts), model.config.text_config.hidden_size)
    assert torch.equal(got, want)
    assert torch.equal(via_dispatch, want)


def test_gemma4_clip_padded_for_another_microbatch_keeps_its_own_count(model):
    # PP chunks clips by row: a microbatch may hold only the short clip, still padded to the batch's longest
    features, mask = _clips([99, 50], 99)
    short, short_mask = features[1:], mask[1:]
    (count,) = _placeholders(short_mask)
    with torch.no_grad():
        got = _gemma4_audio_features(model, short, {"input_features_mask": short_mask})
    assert got.shape[0] == count < short.shape[1] // 4  # its valid positions, not the padded width's
    assert torch.equal(got, _hf_audio_soft_tokens(model, _ids(model, [count]), short, short_mask))


def test_gemma4_integer_mask_selects_the_valid_positions_too(model):
    # a 0/1 long mask must select positions, not index rows 0 and 1
    features, mask = _clips([99, 50], 99)
    with torch.no_grad():
        as_bool = _gemma4_audio_features(model, features, {"input_features_mask": mask})
        as_long = _gemma4_audio_features(model, features, {"input_features_mask": mask.long()})
    assert torch.equal(as_long, as_bool)


def test_gemma4_audio_without_a_matching_mask_is_a_clear_error(model):
    features, mask = _clips([99], 99)
    with pytest.raises(ValueError, match="input_features_mask"):
        _gemma4_audio_features(model, features, {})
    with pytest.raises(ValueError, match=r"input_features_mask \(1, 98\) does not match"):
        _gemma4_audio_features(model, features, {"input_features_mask": mask[:, :98]})


def test_gemma4_staged_forward_merges_audio_like_hf(model):
    """vlmspec's Gemma 4 stage 0 scatters the clips' soft tokens: the model split into 2 stages, run per
    ``torch.tensor_split`` microbatch with the clips staged by ``stage_vlm_media_for_pp``, gives HF's logits
    (fp32 round-off). n=2 leaves the short clip alone in microbatch 1, still padded to the long one."""
    import vlmspec.pipelining as pl
    from vlmspec.pp_media import prepare_vlm_media_for_pp, stage_vlm_media_for_pp

    try:
        import pipelining_cases as cases
    except ImportError:  # tests/ imported as a package
        from tests import pipelining_cases as cases

    features, mask = _clips([99, 50], 99)
    long_clip, short_clip = _placeholders(mask)
    ids = _ids(model, [long_clip, 0, short_clip])  # the middle row: text only (an empty audio span)
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "input_features": features,
        "input_features_mask": mask,
        "n_audios_per_sample": torch.tensor([1, 0, 1]),
    }
    with torch.no_grad():
        ref = model(**{k: v for k, v in batch.items() if k != "n_audios_per_sample"}).logits
        stages = pl.split_hf_model_into_stages(model, 2)
        for n in (1, 2, 3):
            staged = stage_vlm_media_for_pp(None, [stages[0]], prepare_vlm_media_for_pp(batch, 3, n))
            out = cases.staged_forward(stages, staged, n)
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=0, msg=f"{n} microbatches")
