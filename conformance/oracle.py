"""An independent label oracle: which tokens *should* be supervised, found without marker scanning.

Method (shares no code with ``vlmspec.collate.labels``):

1. Render the conversation with the chat template to text ``T``.
2. For the k-th assistant message, render the messages before it with ``add_generation_prompt=True``:
   that text is a prefix of ``T`` and the answer starts right after it. The answer's character span
   is ``[len(prefix), len(prefix) + len(answer))``. Rendering through the assistant message gives
   the end of the turn; the first token after the answer inside that tail is the closing token.
3. Tokenize ``T`` with offsets and map character spans to token indices.
4. The processor expands media placeholders, so its ``input_ids`` are longer than ``T``'s tokens.
   Align the two token sequences (``difflib``, no autojunk) and carry the indices across; every
   oracle token must land in an equal block.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any


class OracleError(AssertionError):
    """The oracle cannot establish the expected labels (template rewrites turns, etc.)."""


@dataclass(frozen=True)
class OracleTurn:
    answer_chars: tuple[int, int]   # character span of the answer in the rendered text
    closing_chars: tuple[int, int]  # character span of the turn's closing text (e.g. "<|im_end|>\n")
    tokens: tuple[int, ...]         # supervised token positions in the processor's input_ids


def _render(processor: Any, messages: list, add_generation_prompt: bool) -> str:
    out = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return out if isinstance(out, str) else out[0]


def _answer_text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(item["text"] for item in content if item.get("type") == "text")


def answer_char_spans(processor: Any, conversation: list) -> tuple[str, list[tuple[tuple[int, int], tuple[int, int]]]]:
    """Rendered text and, per assistant turn, ``(answer span, closing span)`` in characters."""
    full = _render(processor, conversation, add_generation_prompt=False)
    spans = []
    for j, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        prefix = _render(processor, conversation[:j], add_generation_prompt=True)
        through = _render(processor, conversation[: j + 1], add_generation_prompt=False)
        answer = _answer_text(message)
        if not full.startswith(prefix):
            raise OracleError(f"assistant turn {j}: generation-prompt prefix is not a prefix of the full rendering")
        start = len(prefix)
        # Templates may strip the answer; find it where the template put it.
        stripped = answer.strip()
        if full.startswith(answer, start):
            a0, a1 = start, start + len(answer)
        elif stripped and full.startswith(stripped, start):
            a0, a1 = start, start + len(stripped)
        elif not stripped:
            a0 = a1 = start
        else:
            raise OracleError(f"assistant turn {j}: answer text not found right after the generation prompt")
        if not full.startswith(through) or len(through) <= a1:
            raise OracleError(f"assistant turn {j}: turn has no closing text after the answer")
        spans.append(((a0, a1), (a1, len(through))))
    return full, spans


def _char_span_to_tokens(offsets: list[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    s0, s1 = span
    return [i for i, (a, b) in enumerate(offsets) if b > a and a < s1 and b > s0]


def oracle_supervised_positions(processor: Any, conversation: list, input_ids: list[int]) -> list[OracleTurn]:
    """Expected supervised positions in *input_ids* (one row of the processor output, no padding)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    text, spans = answer_char_spans(processor, conversation)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    matcher = difflib.SequenceMatcher(a=ids, b=list(input_ids), autojunk=False)
    carry: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            carry[block.a + k] = block.b + k
    turns = []
    for answer_span, closing_span in spans:
        answer_tokens = _char_span_to_tokens(offsets, answer_span)
        closing = _char_span_to_tokens(offsets, closing_span)
        closing = [c for c in closing if c not in answer_tokens]
        if not closing:
            raise OracleError(f"no closing token after answer span {answer_span}")
        wanted = answer_tokens + closing[:1]
        missing = [t for t in wanted if t not in carry]
        if missing:
            raise OracleError(f"oracle tokens {missing} do not align with the processor's input_ids")
        turns.append(OracleTurn(answer_span, closing_span, tuple(carry[t] for t in wanted)))
    return turns
