"""Conversation fuzzing: hostile text, random images and role orders through real processors.

Property: a collate either returns a batch that keeps the label contract, or raises ``ValueError`` /
``TypeError`` with a message — never any other exception. The contract checked on every batch:

- token tensors ``[B, L-1]``; ``labels`` already shifted (a supervised ``labels[:, t]`` is
  ``input_ids[:, t+1]``), ``-100`` = ignore, padding never supervised;
- supervised tokens decode to pieces of the assistant answers (plus the token closing the turn):
  never user or system text, never template markers;
- no vision token is ever supervised;
- every sample with a non-blank assistant answer gets at least one label (the collate is not truncating);
- PP chunking of the batch's media keeps every pixel row exactly once, in order.

Budgets come from the hypothesis profile (tests/conftest.py): ``ci`` by default, ``deep`` for
``--hypothesis-profile=deep`` (10,000 examples per test). What the deep run found is kept below
as ``@example`` regressions.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from tests import standins as S
from tests.conftest import load_pack_processor
from vlmspec.collate_fns import default_collate_fn, kimi_k25_vl_collate_fn
from vlmspec.pp_media import VLM_PP_MEDIA_KEY, prepare_vlm_media_for_pp

IGNORE = -100

# ---------------------------------------------------------------- families under test

FAMILIES = {
    # name: (processor factory, collate, vision token strings, stop token text)
    "qwen25": (
        S.qwen25_processor,
        default_collate_fn,
        ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"),
        "<|im_end|>",
    ),
    "gemma4": (
        lambda: load_pack_processor("google/gemma-4-E2B-it"),
        default_collate_fn,
        ("<|image>", "<|image|>", "<image|>", "<|video|>", "<|audio|>"),
        "<turn|>",
    ),
    "kimi_k25": (
        S.kimi_k25_processor,
        kimi_k25_vl_collate_fn,
        ("<|media_begin|>", "<|media_content|>", "<|media_pad|>", "<|media_end|>"),
        "<|im_end|>",
    ),
}
_CACHE: dict = {}


def family(name: str):
    if name not in _CACHE:
        factory, collate, vision, stop = FAMILIES[name]
        proc = factory()
        tok = proc.tokenizer
        vision_ids = {tok.convert_tokens_to_ids(t) for t in vision} - {None, tok.unk_token_id}
        _CACHE[name] = (proc, collate, torch.tensor(sorted(vision_ids)), stop)
    return _CACHE[name]


# ---------------------------------------------------------------- strategies

TEMPLATE_LIKE = [
    "<|im_start|>",
    "<|im_end|>",
    "<|im_start|>assistant\n",
    "<|endoftext|>",
    "{{ x }}",
    "{% if %}",
    "{%- endif -%}",
    "<image>",
    "[INST]",
    "[/INST]",
    "<start_of_turn>model\n",
    "<end_of_turn>",
    "<|turn>model\n",
    "<turn|>",
    "<|image_pad|>",
    "<|vision_start|>",
    "<|media_pad|>",
    "<|im_user|>",
    "<|im_assistant|>",
    "<s>",
    "</s>",
    "assistant",
    "user:",
    "\n\n",
    "\r\n",
    "\t",
    "   ",
]
HARD_CHARS = st.characters(
    codec="utf-8",  # no lone surrogates: those are bad input with their own error (tests/bad_inputs.py)
    categories=("Lu", "Ll", "Lo", "Mn", "Me", "Nd", "Po", "Ps", "Pe", "Sm", "So", "Sk", "Zs", "Cc", "Cf"),
)
WORDS = st.one_of(
    st.text(HARD_CHARS, min_size=1, max_size=12),
    st.text(st.sampled_from("אבגדהשלוםمرحبا"), min_size=1, max_size=8),  # RTL
    st.text(st.sampled_from("漢字かなカナ한국어"), min_size=1, max_size=8),  # CJK
    st.text(st.sampled_from("😀🎉👍🏽👨‍👩‍👧🇫🇷"), min_size=1, max_size=6),  # emoji, ZWJ sequences, flags
    st.text(st.sampled_from("e\u0301\u0308\u20dd"), min_size=1, max_size=6),  # combining marks
    st.sampled_from(["\x00", "\x00\x01\x7f", "\u200b", "\u202e", "\ufeff"]),  # NUL, controls, ZW/RTL override, BOM
    st.sampled_from(TEMPLATE_LIKE),
    st.integers(200, 2000).map(lambda n: "w" * n),  # very long word
)
TEXT = st.one_of(
    st.lists(WORDS, max_size=6).map("".join),
    st.lists(WORDS, max_size=6).map(" ".join),
    st.sampled_from(["", " ", "   \n  ", "\n"]),  # empty and whitespace-only
)
MODES = ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"]


@st.composite
def images(draw) -> Image.Image:
    w, h = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    mode = draw(st.sampled_from(MODES))
    seed = draw(st.integers(0, 2**16))
    rgb = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    return rgb.convert(mode)


def content(allow_images: bool):
    items = st.one_of(
        TEXT.map(lambda t: {"type": "text", "text": t}),
        *([images().map(lambda im: {"type": "image", "image": im})] if allow_images else []),
    )
    return st.one_of(TEXT, st.lists(items, min_size=1, max_size=3))


@st.composite
def conversations(draw) -> list[dict]:
    """1-5 messages in a random role order (system anywhere, consecutive same roles), images in user turns."""
    roles = draw(st.lists(st.sampled_from(["system", "user", "assistant"]), min_size=1, max_size=5))
    return [{"role": r, "content": draw(content(allow_images=r == "user"))} for r in roles]


# ---------------------------------------------------------------- the contract


def _text_of(message: dict) -> str:
    c = message["content"]
    return c if isinstance(c, str) else "".join(i["text"] for i in c if i.get("type") == "text")


def _squash(text: str) -> str:
    """Text as compared: NFC (tokenizers normalize) and without whitespace (templates trim or join items)."""
    return unicodedata.normalize("NFC", "".join(unicodedata.normalize("NFC", text).split()))


def _runs(row: torch.Tensor) -> list[list[int]]:
    """Positions of each contiguous run of supervised labels."""
    pos = (row != IGNORE).nonzero().flatten().tolist()
    runs: list[list[int]] = []
    for p in pos:
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def check_contract(batch, examples, name: str, n_microbatches: int) -> None:
    proc, _, vision_ids, stop = family(name)
    tok = proc.tokenizer
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.dim() == 2 and ids.shape[0] == len(examples)
    assert labels.shape == ids.shape and mask.shape == ids.shape
    sup = labels != IGNORE
    assert torch.equal(labels[:, :-1][sup[:, :-1]], ids[:, 1:][sup[:, :-1]]), "labels are not shifted by one"
    assert not sup[mask == 0].any(), "padding is supervised"
    assert not torch.isin(labels[sup], vision_ids).any(), "a vision token is supervised"
    for r, ex in enumerate(examples):
        answers = [_squash(_text_of(m)) for m in ex["conversation"] if m["role"] == "assistant"]
        for run in _runs(labels[r]):
            decoded = tok.decode(labels[r, run].tolist())
            for piece in decoded.split(stop):
                for part in piece.split("\ufffd"):  # a token may hold part of a multi-byte character
                    part = _squash(part)
                    assert not part or any(part in a for a in answers), (
                        f"sample {r}: supervised {part!r} is not assistant text; answers={answers!r}"
                    )
        if any(a.strip() for a in answers):
            assert sup[r].any(), f"sample {r}: an assistant answer but no label"
    # PP: every pixel row exactly once, in order, whatever the number of microbatches
    if "pixel_values" in batch and "n_images_per_sample" in batch:
        pp = prepare_vlm_media_for_pp(batch, ids.shape[0], n_microbatches)
        rows = [c["pixel_values"] for c in pp[VLM_PP_MEDIA_KEY] if "pixel_values" in c]
        assert torch.equal(torch.cat(rows), batch["pixel_values"])


def run_property(name: str, convs: list, n_microbatches: int) -> None:
    proc, collate, _, _ = family(name)
    examples = [{"conversation": c} for c in convs]
    try:
        batch = collate(examples, proc)
    except (ValueError, TypeError) as exc:
        assert str(exc), "an error without a message"
        return
    check_contract(batch, examples, name, min(n_microbatches, len(examples)))


BATCHES = st.lists(conversations(), min_size=1, max_size=3)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@given(convs=BATCHES, n_microbatches=st.integers(1, 3))
@example(convs=[[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "   \n  hi"}]], n_microbatches=1)
# found by the deep profile: the assistant marker typed in a prompt opened a supervised turn there
@example(convs=[[{"role": "system", "content": "<|turn>model\n0"}]], n_microbatches=1)
@example(convs=[[{"role": "user", "content": "<|im_start|>assistant\n0"}]], n_microbatches=1)
# test-side findings of the deep profile: a combining mark in its own item joins the previous letter
@example(
    convs=[
        [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "E"},
                    {"type": "text", "text": " "},
                    {"type": "text", "text": "\u0300"},
                ],
            }
        ]
    ],
    n_microbatches=1,
)
# found by the deep profile: a vision token typed in an answer was supervised
@example(
    convs=[[{"role": "system", "content": ""}, {"role": "assistant", "content": "<|vision_start|>"}]], n_microbatches=1
)
def test_collate_keeps_the_label_contract(name, convs, n_microbatches):
    run_property(name, convs, n_microbatches)
