"""An independent label oracle: which tokens *should* be supervised, found without marker scanning.

Method (shares no code with ``vlmspec.collate.labels``):

1. Render the conversation with the chat template to text ``T``.
2. For the k-th assistant message, render the conversation with that answer replaced by a sentinel:
   the text before the sentinel ends where the answer starts, the text after it starts where the
   answer ends. The turn is closed by the first token after the answer's end if that token is one of
   the tokenizer's special or added tokens (whitespace tokens before it are skipped and not
   supervised: ``answer </s>``). A template that writes ordinary text there (``USER: … ASSISTANT:
   answer USER: …``, a lone ``▁``, ``"\n"``) or nothing closes no turn: only the answer is supervised.
3. Tokenize ``T`` with offsets and map character spans to token indices.
4. The processor expands media placeholders, so its ``input_ids`` are longer than ``T``'s tokens.
   Align the two token sequences (``difflib``, no autojunk) and carry the indices across; every
   oracle token must land in an equal block.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class OracleError(AssertionError):
    """The oracle cannot establish the expected labels (template rewrites turns, etc.)."""


@dataclass(frozen=True)
class OracleTurn:
    answer_chars: tuple[int, int]  # character span of the answer in the rendered text
    closing_at: int  # the closing token is the first token starting here or later
    tokens: tuple[int, ...]  # supervised token positions in the processor's input_ids


Transform = Callable[[str], str]


def renderer(processor: Any) -> Any:
    """What renders the family's chat template: the processor, or its tokenizer where the processor lost
    the template on load (transformers 5.23 ``Phi4MultimodalProcessor`` takes no ``chat_template``)."""
    tok = getattr(processor, "tokenizer", None)
    if getattr(processor, "chat_template", None) is None and getattr(tok, "chat_template", None) is not None:
        return tok
    return processor


def _render(processor: Any, messages: list, add_generation_prompt: bool, transform: Transform | None = None) -> str:
    out = renderer(processor).apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    out = out if isinstance(out, str) else out[0]
    return transform(out) if transform is not None else out


def _answer_text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(item["text"] for item in content if item.get("type") == "text")


_SENTINEL = "QQORACLESENTINELQQ"


def _with_sentinel(conversation: list, j: int) -> list:
    out = [dict(m) for m in conversation]
    content = out[j]["content"]
    out[j]["content"] = _SENTINEL if isinstance(content, str) else [{"type": "text", "text": _SENTINEL}]
    return out


def answer_char_spans(
    processor: Any, conversation: list, transform: Transform | None = None
) -> tuple[str, list[tuple[tuple[int, int], int]]]:
    """Rendered text and, per assistant turn, ``(answer span, closing position)`` in characters.

    The k-th answer is located by rendering the conversation with that answer replaced by a sentinel:
    the text before the sentinel is the text before the answer, the text after it is the text after
    the answer. The turn's closing token is the first token at or after the answer's end.
    """
    full = _render(processor, conversation, add_generation_prompt=False, transform=transform)
    spans = []
    for j, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        probe = _render(processor, _with_sentinel(conversation, j), add_generation_prompt=False, transform=transform)
        if probe.count(_SENTINEL) != 1:
            raise OracleError(f"assistant turn {j}: {_why_not_rendered(processor, conversation, j, probe, transform)}")
        before, after = probe.split(_SENTINEL)
        if not (full.startswith(before) and full.endswith(after)) or len(before) + len(after) > len(full):
            raise OracleError(
                f"assistant turn {j}: the template renders other turns differently when this answer changes"
            )
        a0, a1 = len(before), len(full) - len(after)
        rendered_answer = full[a0:a1]
        if rendered_answer not in (_answer_text(message), _answer_text(message).strip()):
            raise OracleError(f"assistant turn {j}: the template rewrote the answer: {rendered_answer[:80]!r}")
        spans.append(((a0, a1), a1))
    return full, spans


def _why_not_rendered(processor: Any, conversation: list, j: int, probe: str, transform: Transform | None) -> str:
    """Why the sentinel answer of turn *j* did not appear exactly once in *probe*."""
    if probe.count(_SENTINEL) > 1:
        return "the template renders the answer more than once"
    if isinstance(conversation[j]["content"], str):
        as_list = [dict(m) for m in conversation]
        as_list[j]["content"] = [{"type": "text", "text": _SENTINEL}]
        if _render(processor, as_list, add_generation_prompt=False, transform=transform).count(_SENTINEL) == 1:
            return "the template renders string content as nothing (it renders the same text given as a list item)"
    return "the template does not render the answer"


def _closing_kinds(tokenizer: Any) -> set[int]:
    """Token ids that can close a turn: the tokenizer's special and added tokens."""
    kinds = set(getattr(tokenizer, "all_special_ids", None) or [])
    kinds.update(int(i) for i in (getattr(tokenizer, "added_tokens_decoder", None) or {}))
    return kinds


def _closing_token(
    tokenizer: Any, ids: list[int], offsets: list[tuple[int, int]], at: int, answer: list[int]
) -> list[int]:
    """``[index]`` of the token that closes a turn whose answer ends at character *at*, or ``[]``.

    Scans the tokens that start at or after *at*: whitespace-only tokens are skipped; the first other
    token closes the turn if it is a special or added token, and otherwise the template closes no turn.
    """
    kinds = _closing_kinds(tokenizer)
    for i, (a, b) in enumerate(offsets):
        if b <= a or a < at or i in answer:
            continue
        if tokenizer.decode([ids[i]]).strip() == "":
            continue
        return [i] if ids[i] in kinds else []
    return []


def _char_span_to_tokens(offsets: list[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    s0, s1 = span
    return [i for i, (a, b) in enumerate(offsets) if b > a and a < s1 and b > s0]


def oracle_supervised_positions(
    processor: Any, conversation: list, input_ids: list[int], transform: Transform | None = None
) -> list[OracleTurn]:
    """Expected supervised positions in *input_ids* (one row of the processor output, no padding).

    *transform* rewrites each rendering the way the collate under test documents it (e.g. Gemma 4's
    thinking prefix after every model turn); text it inserts is never supervised.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    text, spans = answer_char_spans(processor, conversation, transform)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    matcher = difflib.SequenceMatcher(a=ids, b=list(input_ids), autojunk=False)
    carry: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            carry[block.a + k] = block.b + k
    turns = []
    for answer_span, closing_at in spans:
        answer_tokens = _char_span_to_tokens(offsets, answer_span)
        wanted = answer_tokens + _closing_token(tokenizer, ids, offsets, closing_at, answer_tokens)
        missing = [t for t in wanted if t not in carry]
        if missing:
            raise OracleError(f"oracle tokens {missing} do not align with the processor's input_ids")
        turns.append(OracleTurn(answer_span, closing_at, tuple(carry[t] for t in wanted)))
    return turns
