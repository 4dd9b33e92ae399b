"""_build_labels_from_markers against a plain per-token reference scan; turn-marker caching."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import standins as S
from vlmspec.collate import labels as labels_mod
from vlmspec.collate_fns import _build_labels_from_markers, build_labels_from_template

MARKER = [3, 4, 5]
STOP = 6
PAD = 0


def reference_labels(row: list[int], marker: list[int], stop: int) -> list[int]:
    """Per token: after a complete marker, copy tokens up to and including the next stop."""
    out, inside, m = [], False, len(marker)
    for t, token in enumerate(row):
        out.append(token if inside else -100)
        if inside and token == stop:
            inside = False
        if m and t >= m - 1 and row[t - m + 1 : t + 1] == marker:
            inside = True
    return out


# a row = segments: filler text, a full marker, a stop, or a partial marker; then truncation and padding
segment = st.one_of(
    st.lists(st.integers(1, 9), min_size=1, max_size=6),
    st.just(MARKER),
    st.just([STOP]),
    st.sampled_from([MARKER[:1], MARKER[:2], MARKER[1:]]),
)


@st.composite
def batches(draw):
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        tokens = [t for seg in draw(st.lists(segment, max_size=12)) for t in seg]
        tokens = tokens[: draw(st.integers(0, len(tokens)))]  # truncated turns
        rows.append(tokens)
    width = max(len(r) for r in rows) + draw(st.integers(0, 3))
    return [r + [PAD] * (width - len(r)) for r in rows]  # padding


@settings(max_examples=300, deadline=None)
@given(batches())
def test_markers_scan_equals_reference(rows):
    ids = torch.tensor(rows, dtype=torch.long).reshape(len(rows), -1)
    got = _build_labels_from_markers(ids, MARKER, STOP)
    assert got.shape == ids.shape and got.dtype == ids.dtype
    want = [reference_labels(r, MARKER, STOP) for r in rows]
    assert got.tolist() == want
    assert labels_mod._labels_from_markers_dense(ids, MARKER, STOP).tolist() == want


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 4), min_size=0, max_size=30), min_size=1, max_size=3),
    st.lists(st.integers(0, 4), min_size=1, max_size=3),
    st.integers(0, 4),
)
def test_random_markers_and_stops(rows, marker, stop):
    """Tiny vocabulary: overlapping markers, stops inside markers, marker == stop, empty rows."""
    width = max(len(r) for r in rows)
    rows = [r + [PAD] * (width - len(r)) for r in rows]
    ids = torch.tensor(rows, dtype=torch.long).reshape(len(rows), width)
    want = [reference_labels(r, marker, stop) for r in rows]
    assert _build_labels_from_markers(ids, marker, stop).tolist() == want
    assert labels_mod._labels_from_markers_dense(ids, marker, stop).tolist() == want  # the non-CPU path
    as_int32 = _build_labels_from_markers(ids.to(torch.int32), marker, stop)
    assert as_int32.dtype == torch.int32 and as_int32.tolist() == want


def test_turn_markers_computed_once_per_tokenizer_and_template(monkeypatch):
    calls = []
    real = labels_mod._derive_turn_layout

    def counting(processor):
        calls.append(processor)
        return real(processor)

    monkeypatch.setattr(labels_mod, "_derive_turn_layout", counting)
    tok = S.qwen_tokenizer()  # a fresh tokenizer: no cache yet; not an im_start processor -> general path
    tok.chat_template = S.qwen25_processor().chat_template
    ids = tok(["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"], return_tensors="pt")[
        "input_ids"
    ]
    first = build_labels_from_template(ids, [[]], tok)
    build_labels_from_template(ids, [[]], tok)
    assert len(calls) == 1
    assert tok.decode(first[0][first[0] != -100]) == "ok<|im_end|>"
    tok.chat_template = tok.chat_template + "{# edited #}"
    build_labels_from_template(ids, [[]], tok)
    assert len(calls) == 2  # a changed template is derived again


def test_fast_path_is_cached_too(monkeypatch):
    proc = S.qwen25_processor()
    ids = proc.tokenizer(["<|im_start|>assistant\nok<|im_end|>"], return_tensors="pt")["input_ids"]
    build_labels_from_template(ids, [[]], proc)
    calls = []
    monkeypatch.setattr(labels_mod, "_get_assistant_marker", lambda tok: calls.append(tok))
    out = build_labels_from_template(ids, [[]], proc)
    assert calls == [] and (out != -100).any()


# A thinking template that rewrites earlier turns (Step 3.5/3.7, Qwen3 style): an empty think block on
# assistant turns after the last user message only.
THINKING_TEMPLATE = (
    "{%- set ns = namespace(last=0) %}{%- for m in messages %}{%- if m.role == 'user' %}{%- set ns.last = loop.index0 %}"
    "{%- endif %}{%- endfor %}{%- for m in messages %}"
    "{%- set text = m.content if m.content is string else m.content[0].text %}"
    "{%- if m.role == 'assistant' and loop.index0 > ns.last %}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n' + text + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + m.role + '\\n' + text + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)


def _thinking_tokenizer():
    """A fresh Qwen3 tokenizer (``<think>``/``</think>`` are special tokens there) with the template."""
    from transformers import AutoTokenizer

    from vlmspec.hub import materialize

    tok = AutoTokenizer.from_pretrained(str(materialize("Qwen/Qwen3-VL-2B-Instruct").snapshot))
    tok.chat_template = THINKING_TEMPLATE
    return tok


def test_thinking_template_marker_opens_every_turn_and_scaffold_is_template_text():
    tok = _thinking_tokenizer()
    marker, stop = labels_mod._derive_turn_markers(tok)
    assert tok.decode(marker) == "<|im_start|>assistant\n" and tok.decode([stop]) == "<|im_end|>"
    assert tok.decode(labels_mod.resolve_turn_scaffold(tok)) == "<think>\n\n</think>\n"


def test_thinking_template_supervises_history_answers_and_not_the_scaffold():
    tok = _thinking_tokenizer()
    conv = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "First."},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "   \n  Second."},
    ]
    ids = tok(tok.apply_chat_template(conv, tokenize=False), add_special_tokens=False, return_tensors="pt")["input_ids"]
    labels = build_labels_from_template(ids, [conv], tok)
    runs, current = [], []
    for token, label in zip(ids[0].tolist(), labels[0].tolist()):
        if label != -100:
            current.append(token)
        elif current:
            runs.append(tok.decode(current))
            current = []
    # "</think>\n" + "   \n  Second." tokenizes as '</think>', '\n   \n', ...: the fused token holds reply text
    assert runs == ["First.<|im_end|>", "\n   \n  Second.<|im_end|>"]


def test_thinking_template_scaffold_newline_fused_with_the_reply():
    """``</think>\n`` + a reply starting with newlines: the scaffold's last ``\n`` fuses with the reply's;
    the fused token carries reply text and stays supervised, ``<think>``/``</think>`` do not."""
    tok = _thinking_tokenizer()
    conv = [{"role": "user", "content": "two"}, {"role": "assistant", "content": "\n\nSecond."}]
    ids = tok(tok.apply_chat_template(conv, tokenize=False), add_special_tokens=False, return_tensors="pt")["input_ids"]
    labels = build_labels_from_template(ids, [conv], tok)
    supervised = tok.decode(ids[0][labels[0] != -100])
    assert supervised.endswith("Second.<|im_end|>") and "think>" not in supervised
    assert supervised.strip("\n") == "Second.<|im_end|>"
