"""The PP conformance checks must catch a media chunk that is off by one sample.

The break: ``vlmspec.pp.chunking._item_bounds`` moves the boundary between media chunks 0 and 1 one
sample later, so chunk 0 also carries sample ``end_0``'s images and chunk 1 lacks them (text
microbatches are untouched). Both the chunking check and the staged forward must fail, naming the
model, B, n and the microbatch.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import vlmspec.pp.chunking as chunking
from conformance.checks import CheckFailure
from conformance.pp import batches, staged
from conformance.pp import chunking as pp_chunking
from conformance.pp import spec as pp_spec
from conformance.registry import load_registry

MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"


def _shifted_item_bounds(items_per_sample, batch_size, n_microbatches):
    """Media-item ranges per microbatch with microbatch 0's last sample boundary one sample too late."""
    samples = chunking._sample_bounds(batch_size, n_microbatches)
    if n_microbatches > 1 and samples[0][1] < samples[1][1]:
        moved = samples[0][1] + 1
        samples = [(samples[0][0], moved), (moved, samples[1][1]), *samples[2:]]
    cum = [0, *itertools.accumulate(items_per_sample)]
    return [(cum[s], cum[e]) for s, e in samples]


@pytest.fixture()
def spec(monkeypatch):
    spec = load_registry()[MODEL]
    monkeypatch.setattr(chunking, "_item_bounds", _shifted_item_bounds)
    return spec


def test_shifted_media_chunk_fails_the_chunking_check(spec):
    with pytest.raises(CheckFailure) as err:
        pp_chunking.check_chunking(spec)
    message = str(err.value)
    assert f"[{MODEL} |" in message and "check pp_chunking" in message
    # B=3, n=2: samples [0, 1] | [2]; sample 2's two images (10 tokens) move into chunk 0.
    assert "B=3 n=2 microbatch k=0: text microbatch 0 has 4 <|image_pad|> tokens but its media chunk" in message
    assert "yields 14 = 4+4+6" in message


def test_shifted_media_chunk_fails_the_staged_forward(spec):
    batch = batches.collated(spec, pp_spec.fixture_ids(spec, 3, "staged_fixtures"))
    ref = staged.reference_logits(spec, batch)
    problems = staged.staged_problems(spec, 3, 2, 2, ref)
    assert problems and "B=3 n=2 K=2 microbatch k=0:" in problems[0]
    assert "placeholder tokens" in problems[0], problems[0]
    assert torch.equal(ref, staged.reference_logits(spec, batch))  # the unsplit reference is unaffected
