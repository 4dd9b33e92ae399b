"""Label building for every chat-template style, on real tokenizers (SentencePiece and byte-level BPE).

Each style is a synthetic template on the Gemma 3 (SentencePiece, ``▁`` pieces) and Qwen2.5 (byte-level
BPE) vocabularies. For every conversation, three things must agree:

- vlmspec's ``build_labels_from_template``;
- the conformance oracle (character spans, no marker scanning);
- the answers themselves: per assistant turn, the supervised tokens decode to the answer (plus the
  closing token where the template has one), apart from whitespace the answer shares with the template.
"""

from __future__ import annotations

import functools

import pytest
import torch

from conformance.oracle import OracleError, answer_char_spans, oracle_supervised_positions
from vlmspec.collate import labels as labels_mod
from vlmspec.collate_fns import _derive_turn_markers, build_labels_from_template

_TEXT = "{% set t = m.content if m.content is string else m.content[0].text %}"

STYLES = {
    # no end-of-turn token: the answer is followed by a space and the next role's plain-word prefix
    "llava": (
        "{% for m in messages %}" + _TEXT + "{{ m.role.upper() }}: {{ t }} {% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}",
        None,
    ),
    # no end-of-turn token: a newline, then the next role
    "newline": (
        "{% for m in messages %}" + _TEXT + "{{ m.role|capitalize }}: {{ t }}\n{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}",
        None,
    ),
    # no end-of-turn token and nothing at all after the final answer
    "bare": (
        "{% for m in messages %}" + _TEXT + "{% if not loop.first %} {% endif %}{{ m.role.upper() }}: {{ t }}"
        "{% endfor %}{% if add_generation_prompt %} ASSISTANT:{% endif %}",
        None,
    ),
    # Llama 2 style: a space between the marker and the answer and between the answer and </s>-like stop
    "spaced-stop": (
        "{% for m in messages %}" + _TEXT + "{% if m.role == 'user' %}[INST] {{ t }} [/INST]"
        "{% elif m.role == 'assistant' %} {{ t }} {{ stop }}{% endif %}{% endfor %}",
        "stop",
    ),
    # a template that drops system turns and renders only string content
    "drops-system-and-lists": (
        "{% for m in messages %}{% if m.role != 'system' and m.content is string %}"
        "<<{{ m.role }}>>{{ m.content }}{{ stop }}\n{% endif %}{% endfor %}",
        "stop",
    ),
}

TOKENIZERS = {"sentencepiece": "google/gemma-3-4b-it", "bpe": "Qwen/Qwen2.5-VL-3B-Instruct"}
STOPS = {"sentencepiece": "<end_of_turn>", "bpe": "<|im_end|>"}

CONVERSATIONS = {
    "two-turns": [
        {"role": "user", "content": "How wide is it?"},
        {"role": "assistant", "content": "It is 56 pixels wide."},
        {"role": "user", "content": "Is it large?"},
        {"role": "assistant", "content": "No, it is small."},
    ],
    "digits-first": [{"role": "user", "content": "Width?"}, {"role": "assistant", "content": "56 pixels wide"}],
    "cjk": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "颜色?"},
        {"role": "assistant", "content": "这是一个红色的正方形。"},
    ],
    "spaces-inside": [
        {"role": "user", "content": "Spell it"},
        {"role": "assistant", "content": "a b  c 1 2 3"},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "x"},
    ],
}


@functools.cache
def _base_tokenizer(kind: str):
    from transformers import AutoTokenizer

    from vlmspec.hub import materialize

    return AutoTokenizer.from_pretrained(str(materialize(TOKENIZERS[kind]).snapshot))


def _tokenizer(kind: str, style: str):
    """The kind's tokenizer (loaded once) with *style*'s template; turn layouts are cached per template."""
    tok = _base_tokenizer(kind)
    template, stop = STYLES[style]
    tok.chat_template = template.replace("{{ stop }}", STOPS[kind]) if stop else template
    return tok


def _as_strings(conversation):
    return [dict(m) for m in conversation]


def _rows(tok, conversation):
    text = tok.apply_chat_template(conversation, tokenize=False)
    return text, tok(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def kind(request):
    return request.param


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_vlmspec_oracle_and_answers_agree(kind, style, name):
    tok = _tokenizer(kind, style)
    conversation = _as_strings(CONVERSATIONS[name])
    _, ids = _rows(tok, conversation)
    labels = build_labels_from_template(torch.tensor([ids]), [conversation], tok)[0].tolist()
    got = [i for i, v in enumerate(labels) if v != -100]
    turns = oracle_supervised_positions(tok, conversation, ids)
    want = sorted(p for t in turns for p in t.tokens)
    decode = lambda positions: [tok.decode([ids[i]]) for i in positions]  # noqa: E731
    assert decode(got) == decode(want) and got == want
    answers = [m["content"] for m in conversation if m["role"] == "assistant"]
    assert len(turns) == len(answers)
    closer = STOPS[kind] if STYLES[style][1] else ""
    for turn, answer in zip(turns, answers):
        text = tok.decode([ids[i] for i in turn.tokens])
        assert text.strip() == answer + closer or text.strip() == f"{answer} {closer}".strip(), (text, answer)


@pytest.mark.parametrize("style", ["llava", "newline", "bare"])
def test_templates_that_close_no_turn_have_no_end_of_turn_id(kind, style):
    tok = _tokenizer(kind, style)
    layout = labels_mod._derive_turn_layout(tok)
    assert layout.stop is None and layout.open_turn is not None
    assert tok.decode(list(layout.open_turn.separator)).strip() in ("USER:", "User:")
    with pytest.raises(ValueError, match="closes no assistant turn"):
        _derive_turn_markers(tok)


def test_a_spaced_stop_is_the_end_of_turn_id_and_its_space_is_template_text(kind):
    tok = _tokenizer(kind, "spaced-stop")
    marker, stop = _derive_turn_markers(tok)
    assert tok.decode([stop]) == STOPS[kind] and tok.decode(marker).strip() == "[/INST]"
    layout = labels_mod._derive_turn_layout(tok)
    assert layout.gap == " " and tok.decode(list(layout.pre_stop)).strip() == ""


def test_a_template_that_renders_string_content_as_nothing_is_named(kind):
    tok = _tokenizer(kind, "llava")
    tok.chat_template = (
        "{% for m in messages %}{% if m.content is not string %}{{ m.role }}: {{ m.content[0].text }}"
        "{{ '" + STOPS[kind] + "' }}{% endif %}{% endfor %}"
    )
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(OracleError, match="renders string content as nothing"):
        answer_char_spans(tok, conversation)
    # vlmspec derives its markers from list content, which this template renders
    marker, stop = _derive_turn_markers(tok)
    assert tok.decode([stop]) == STOPS[kind]


def test_open_turns_in_a_padded_batch(kind):
    """Right padding after a final answer: the template's suffix and the padding stay unsupervised."""
    tok = _tokenizer(kind, "llava")
    convs = [_as_strings(CONVERSATIONS["two-turns"]), _as_strings(CONVERSATIONS["digits-first"])]
    rows = [_rows(tok, c)[1] for c in convs]
    width = max(map(len, rows)) + 2
    pad = tok.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    labels = build_labels_from_template(ids, convs, tok)
    for row, conversation in enumerate(convs):
        want = oracle_supervised_positions(tok, conversation, rows[row])
        assert [i for i, v in enumerate(labels[row].tolist()) if v != -100] == sorted(p for t in want for p in t.tokens)
