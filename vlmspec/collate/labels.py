"""Label building: which tokens of a tokenized chat batch are supervised.

Convention: labels returned here are ``[B, L]`` aligned with ``input_ids`` (not yet shifted), ``-100`` =
ignore. Supervised = the content tokens of every assistant turn plus the token that closes the turn.
The collate functions shift them afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from .open_turns import OpenTurn, label_open_turns

logger = logging.getLogger("vlmspec.collate_fns")

IGNORE_INDEX = -100

# Processors whose chat template wraps turns in <|im_start|>role\n ... <|im_end|>.
_IMSTART_TEMPLATE_PROCESSORS = frozenset(
    {
        "Qwen2VLProcessor",
        "Qwen2_5_VLProcessor",
        "Qwen2_5OmniProcessor",
        "Qwen3VLProcessor",
        "Qwen3VLMoeProcessor",
        "Qwen3OmniMoeProcessor",
        "LlavaOnevision1_5Processor",
    }
)

_SENTINEL = "VLMSPECSENTINELREPLY"


def _tokenizer_of(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def _token_id(tokenizer: Any, token: str) -> int | None:
    """Id of a single (special) token, or None when the tokenizer does not know it."""
    try:
        tid = tokenizer.convert_tokens_to_ids(token)
    except Exception:
        return None
    if not isinstance(tid, int) or tid < 0:
        return None
    unk = getattr(tokenizer, "unk_token_id", None)
    if tid == unk and getattr(tokenizer, "unk_token", None) != token:
        return None
    return tid


def _encode(tokenizer: Any, text: str) -> list[int]:
    out = tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(out)


def _decode_single_token(tokenizer: Any, token_id: int) -> str:
    """Decode a single token id across tokenizer implementations.

    Some tokenizers accept an int, others need a list of ids; as a last resort the raw token string.
    """
    for arg in (token_id, [token_id]):
        try:
            text = tokenizer.decode(arg)
        except Exception:
            continue
        if isinstance(text, str):
            return text
    token = tokenizer.convert_ids_to_tokens(token_id)
    return token if isinstance(token, str) else str(token)


def _get_stop_token_id(tokenizer: Any) -> int | None:
    """Return the token id of the turn-ending marker ``<|im_end|>``, or None when absent."""
    return _token_id(_tokenizer_of(tokenizer), "<|im_end|>")


def _get_assistant_marker(tokenizer: Any) -> list[int] | None:
    """Return the token-id sequence that opens an assistant turn: ``[<|im_start|>, assistant, \\n]``.

    None when the tokenizer does not use the ``<|im_start|>`` convention.
    """
    tokenizer = _tokenizer_of(tokenizer)
    start = _token_id(tokenizer, "<|im_start|>")
    if start is None:
        return None
    role = _encode(tokenizer, "assistant\n")
    return [start, *role] if role else None


def _find_subsequence(seq: Sequence[int], sub: Sequence[int], start: int = 0) -> int:
    n, m = len(seq), len(sub)
    for i in range(start, n - m + 1):
        if list(seq[i : i + m]) == list(sub):
            return i
    return -1


def _render_pair(renderer: Any, conversation: list[dict[str, Any]]) -> tuple[str, str]:
    """(rendering of ``conversation``, rendering of it without its last (assistant) message)."""
    try:
        full_text = renderer.apply_chat_template(conversation, tokenize=False)
        prefix_text = renderer.apply_chat_template(conversation[:-1], tokenize=False)
    except Exception as exc:
        raise ValueError(f"cannot derive turn markers: chat template failed: {exc}") from exc
    # apply_chat_template may return a BatchEncoding; we only need strings here.
    if not isinstance(full_text, str) or not isinstance(prefix_text, str):
        raise ValueError("cannot derive turn markers: chat template did not render to text")
    return full_text, prefix_text


class TurnLayout(NamedTuple):
    """How a chat template frames assistant turns (token ids).

    marker: opens every assistant turn; stop: the end-of-turn token (None: the template closes no turn,
    see :mod:`vlmspec.collate.open_turns`); scaffold: template text after the marker of the final turn
    only; gap: template text between the marker and the answer (``" "`` in ``ASSISTANT: answer``);
    pre_stop: template whitespace between an answer and its stop (``answer </s>``).
    """

    marker: list[int]
    stop: int | None
    scaffold: list[int]
    gap: str = ""
    pre_stop: tuple[int, ...] = ()
    open_turn: OpenTurn | None = None


class _Probe(NamedTuple):
    """A rendering with a sentinel reply, tokenized."""

    text: str
    marker: list[int]  # tokens between the end of the user turn and the sentinel
    gap: str  # characters between the marker's last token and the sentinel
    after: list[int]  # token ids after the sentinel's last token
    after_ends: list[int]  # their end offsets in ``text``
    sentinel_end: int  # character index just after the sentinel


def _probe(tok: Any, full_text: str, prefix_text: str, sentinel: str, user_text: str) -> _Probe:
    """Tokenize a rendering whose assistant reply is *sentinel* and take it apart around the reply."""
    pos = full_text.find(sentinel)
    if pos < 0:
        raise ValueError("cannot derive turn markers: sentinel reply not found in the rendered template")
    # The rendering without the reply must be a prefix of the full one up to the assistant turn.
    common = 0
    while common < min(len(prefix_text), pos) and prefix_text[common] == full_text[common]:
        common += 1
    enc = tok(full_text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    sent_first = next((i for i, (s, e) in enumerate(offsets) if e > pos), None)
    sent_last = next((i for i, (s, e) in enumerate(offsets) if e >= pos + len(sentinel)), None)
    if sent_first is None or sent_last is None:
        raise ValueError("cannot derive turn markers: the sentinel reply has no token span")
    marker_start = next((i for i, (s, e) in enumerate(offsets) if s >= common), sent_first)
    if marker_start >= sent_first:
        # The user turn's rendering already ends with the assistant opener (Mistral's
        # "[INST]hi[/INST]"): the marker is what follows the user's text.
        user_end = full_text.rfind(user_text, 0, pos) + len(user_text)
        marker_start = next((i for i, (s, e) in enumerate(offsets) if s >= user_end), sent_first)
    marker = ids[marker_start:sent_first]
    gap = full_text[offsets[sent_first - 1][1] : pos] if marker else ""
    return _Probe(
        full_text, marker, gap, ids[sent_last + 1 :], [e for _, e in offsets[sent_last + 1 :]], pos + len(sentinel)
    )


def _structural_ids(tok: Any) -> set[int]:
    """Ids of the tokenizer's special and added tokens: the only tokens that can close a turn."""
    ids = {int(i) for i in (getattr(tok, "all_special_ids", None) or [])}
    ids.update(int(i) for i in (getattr(tok, "added_tokens_decoder", None) or {}))
    return ids


def _is_blank(tok: Any, token_id: int) -> bool:
    return _decode_single_token(tok, token_id).strip() == ""


def _closing_token(tok: Any, after: list[int]) -> tuple[int | None, tuple[int, ...]]:
    """(end-of-turn id, template whitespace before it) from the tokens after a reply.

    A turn is closed by a special or added token (not whitespace) that follows the reply, possibly after whitespace
    (``answer </s>``). Anything else after the reply (a lone ``▁``, ``"\n"``, the next role's name, or
    nothing) means the template closes no turn: ``(None, ())``.
    """
    structural = _structural_ids(tok)
    for k, token in enumerate(after):
        if _is_blank(tok, token):  # whitespace, even as an added token (Gemma's "\n"), closes nothing
            continue
        if token in structural:
            return token, tuple(after[:k])
        break
    return None, ()


def _open_turn(tok: Any, history: _Probe, final: _Probe, next_user: str) -> OpenTurn:
    """What a template that closes no turn writes after an answer (see :mod:`vlmspec.collate.open_turns`)."""
    user_at = history.text.find(next_user, history.sentinel_end)
    between = [t for t, end in zip(history.after, history.after_ends) if end <= user_at] if user_at >= 0 else []
    lead = 0
    while lead < len(between) and _is_blank(tok, between[lead]):
        lead += 1
    if lead == len(between):
        raise ValueError(
            "cannot derive turn markers: the template closes no assistant turn and writes no role "
            "prefix before the next user turn, so an answer's end cannot be found"
        )
    return OpenTurn(separator=tuple(between[lead:]), lead=tuple(between[:lead]), suffix=tuple(final.after))


def _render_probes(renderer: Any, tok: Any, content: Any) -> tuple[_Probe, _Probe]:
    """(final-turn probe, history-turn probe) with message content built by *content*."""
    turn = lambda role, text: {"role": role, "content": content(text)}  # noqa: E731
    final = _probe(tok, *_render_pair(renderer, [turn("user", "hi"), turn("assistant", _SENTINEL)]), _SENTINEL, "hi")
    # A history turn (one followed by another user message) may open differently.
    history_conv = [turn("user", "hi"), turn("assistant", _SENTINEL), turn("user", "ok"), turn("assistant", "done")]
    full_text, _ = _render_pair(renderer, history_conv)
    prefix_text = renderer.apply_chat_template(history_conv[:1], tokenize=False)
    return final, _probe(tok, full_text, prefix_text, _SENTINEL, "hi")


def _derive_turn_layout(tokenizer: Any) -> TurnLayout:
    """The template's :class:`TurnLayout`, derived from sentinel renderings (see :func:`_derive_turn_markers`).

    ``scaffold`` is what the template adds after the marker of the *final* assistant turn only
    (thinking templates: ``<think>\n\n</think>\n`` after the last user message, nothing on history
    turns). It is template text, not reply: labelling masks it. Empty for ordinary templates.
    Templates are probed with list content (``[{"type": "text", ...}]``) and, when that renders no
    reply, with string content.
    """
    tok = _tokenizer_of(tokenizer)
    # A processor carries the chat template when its tokenizer does not; render with whichever has it.
    renderer = tokenizer if getattr(tok, "chat_template", None) is None else tok
    try:
        final, history = _render_probes(renderer, tok, lambda text: [{"type": "text", "text": text}])
    except ValueError as list_error:
        try:
            final, history = _render_probes(renderer, tok, lambda text: text)
        except ValueError:
            raise list_error from None
    if not final.marker:
        raise ValueError("cannot derive turn markers: the assistant marker is empty")
    stop, pre_stop = _closing_token(tok, final.after)
    history_stop, _ = _closing_token(tok, history.after)
    open_turn = _open_turn(tok, history, final, "ok") if stop is None else None
    marker, scaffold = final.marker, []
    if history.marker and history.marker != final.marker and history_stop == stop:
        if final.marker[: len(history.marker)] == history.marker:
            marker, scaffold = history.marker, final.marker[len(history.marker) :]
        elif history.marker[-len(final.marker) :] != final.marker:
            raise ValueError(
                "cannot derive turn markers: history and final assistant turns open with unrelated "
                f"tokens ({history.marker} vs {final.marker})"
            )
        # else: history turns carry extra text (e.g. an empty think block) before the marker
    return TurnLayout(
        marker, stop, scaffold, gap=final.gap if final.gap.strip() == "" else "", pre_stop=pre_stop, open_turn=open_turn
    )


def _derive_turn_markers(tokenizer: Any) -> tuple[list[int], int]:
    """Derive the assistant-turn start marker and end-of-turn id from the tokenizer's chat template.

    Renders ``[user: "hi", assistant: SENTINEL]`` and ``[user: "hi"]``; the tokens between the end of
    the user-only rendering and the sentinel form the marker, and the first token after the sentinel
    is the end-of-turn id. Works for any template that wraps assistant turns in fixed token sequences
    (Gemma's ``<start_of_turn>model\n`` … ``<end_of_turn>``). Thinking templates that rewrite earlier
    turns (an empty ``<think></think>`` block on the final turn only) get the marker that opens
    *every* assistant turn: the one of a history turn, of which the final turn's is an extension.

    The end-of-turn id is the special or added token that follows the reply, possibly after template
    whitespace (``answer </s>``).

    Raises ``ValueError`` when the sentinel cannot be located or the marker comes out empty, and when
    the template closes no turn (``USER: … ASSISTANT: answer USER: …``): the token after the reply is
    then ordinary text (a lone ``▁``), and using it as a stop would cut answers at their first ``▁``.
    :func:`build_labels_from_template` handles such templates (:mod:`vlmspec.collate.open_turns`).
    """
    layout = _derive_turn_layout(tokenizer)
    if layout.stop is None:
        raise ValueError(
            "cannot derive turn markers: the template closes no assistant turn (no special or added "
            "token follows the reply), so there is no end-of-turn id"
        )
    return layout.marker, layout.stop


def _build_labels_from_markers(
    input_ids_batch: torch.Tensor, assistant_marker: list[int], stop_id: int
) -> torch.Tensor:
    """Copy every token after an assistant marker up to and including the next ``stop_id``.

    input_ids_batch: ``[B, L]``. Returns labels ``[B, L]`` with ``-100`` elsewhere. A turn with no
    stop (truncated) is supervised to the end of the row; the caller masks padding.
    A position is inside a turn iff the last content start at or before it comes after the last stop
    strictly before it. CPU tensors take a sparse numpy scan (markers are rare, and numpy runs
    single-threaded, so a loaded 2-core machine does not stall on OpenMP barriers); other devices
    take the equivalent dense torch scan.
    """
    if input_ids_batch.dim() != 2:
        raise ValueError(f"input_ids_batch must be [B, L], got shape {tuple(input_ids_batch.shape)}")
    if input_ids_batch.device.type == "cpu" and not input_ids_batch.dtype.is_floating_point:
        return _labels_from_markers_numpy(input_ids_batch, [int(t) for t in assistant_marker], int(stop_id))
    return _labels_from_markers_dense(input_ids_batch, assistant_marker, stop_id)


def _labels_from_markers_dense(
    input_ids_batch: torch.Tensor, assistant_marker: list[int], stop_id: int
) -> torch.Tensor:
    """Dense torch scan (any device): prefix maxima of the last content start and the last stop."""
    m = len(assistant_marker)
    bsz, length = input_ids_batch.shape
    labels = torch.full_like(input_ids_batch, IGNORE_INDEX)
    if m == 0 or length < m:
        return labels
    marker = torch.as_tensor(assistant_marker, dtype=input_ids_batch.dtype, device=input_ids_batch.device)
    hits = (input_ids_batch.unfold(1, m, 1) == marker).all(-1)  # [B, L-m+1]: marker starts
    pos = torch.arange(length, device=input_ids_batch.device).expand(bsz, length)
    opens = torch.full((bsz, length), -1, dtype=torch.long, device=input_ids_batch.device)
    if length > m:
        # content starts right after the marker
        content_start = torch.zeros(bsz, length, dtype=torch.bool, device=input_ids_batch.device)
        content_start[:, m:] = hits[:, : length - m]
        opens = torch.where(content_start, pos, opens)
    last_open = opens.cummax(1).values
    is_stop = input_ids_batch == stop_id
    stops = torch.where(is_stop, pos, torch.full_like(pos, -1)).cummax(1).values
    last_stop_before = torch.cat([torch.full((bsz, 1), -1, dtype=stops.dtype, device=stops.device), stops[:, :-1]], 1)
    inside = (last_open >= 0) & (last_open > last_stop_before)
    return torch.where(inside, input_ids_batch, labels)


def _pattern_starts(flat: np.ndarray, length: int, pattern: Sequence[int], room: int = 0) -> np.ndarray:
    """Flat indices where *pattern* starts in the rows of a flattened ``[B, length]`` array.

    Only starts whose pattern (plus *room* further positions) fits inside the same row count.
    Sparse: candidates are the (rare) occurrences of the first token, then each further token filters.
    """
    m = len(pattern)
    cand = np.flatnonzero(flat == pattern[0])
    if m + room > 1 and cand.size:
        cand = cand[cand % length <= length - m - room]
    for k in range(1, m):
        if not cand.size:
            break
        cand = cand[flat[cand + k] == pattern[k]]
    return cand


def _labels_from_markers_numpy(input_ids: torch.Tensor, marker: list[int], stop_id: int) -> torch.Tensor:
    ids = input_ids.numpy()
    bsz, length = ids.shape
    if not marker or length <= len(marker) or bsz == 0:
        return torch.full_like(input_ids, IGNORE_INDEX)
    return torch.from_numpy(_scan_rows(ids, marker, stop_id))


def _scan_rows(ids: np.ndarray, marker: list[int], stop_id: int) -> np.ndarray:
    """Labels ``[b, L]`` for a block of rows (sparse: work is proportional to markers and stops)."""
    bsz, length = ids.shape
    m = len(marker)
    flat = np.ascontiguousarray(ids).reshape(-1)
    ignore = np.asarray(IGNORE_INDEX, dtype=ids.dtype)
    starts = _pattern_starts(flat, length, marker, room=1) + m  # first content position of each turn
    if not starts.size:
        return np.full((bsz, length), ignore, dtype=ids.dtype)
    stops = np.flatnonzero(flat == stop_id)
    # each turn runs to the first stop at or after its start in the same row, else to the row's end
    row_last = (starts // length) * length + (length - 1)
    nxt = np.searchsorted(stops, starts)
    ends = row_last.copy()
    has = nxt < stops.size
    cand_end = stops[np.minimum(nxt, max(stops.size - 1, 0))] if stops.size else row_last
    has &= cand_end <= row_last
    ends[has] = cand_end[has]
    # merge overlapping turns (several markers before one stop); ends never decrease along starts
    first = np.ones(starts.size, dtype=bool)
    first[1:] = starts[1:] > ends[:-1]
    group_start = starts[first]
    group_end = ends[np.r_[np.flatnonzero(first)[1:] - 1, starts.size - 1]]
    # alternate outside/inside runs; np.repeat writes the mask in one pass (a cumsum is ~4x slower)
    bounds = np.empty(2 * group_start.size + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, flat.size
    bounds[1:-1:2], bounds[2:-1:2] = group_start, group_end + 1
    runs = np.diff(bounds)
    inside = np.repeat(np.arange(runs.size) % 2 == 1, runs)
    return np.where(inside, flat, ignore).reshape(bsz, length)


def _extract_assistant_text(message: dict[str, Any]) -> str:
    """The text of an assistant message: the string content or its text items joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            item.get("text", "") for item in content if isinstance(item, dict) and item.get("type") == "text"
        )
    return ""


def _find_pattern_indices(template, pattern, search_start_index=0, allow_first_token_mismatch=False):
    """First ``(start, end)`` (end exclusive) where *pattern* occurs in *template* at or after
    *search_start_index*; ``(-1, -1)`` when absent.

    With *allow_first_token_mismatch* the first token may differ: BPE often merges a reply's first
    token with the preceding whitespace, so only ``pattern[1:]`` must match exactly.
    """
    template = [int(t) for t in template]
    pattern = [int(t) for t in pattern]
    n, m = len(template), len(pattern)
    if m == 0:
        return -1, -1
    # a one-token pattern with its only token waived would match anywhere
    allow_first_token_mismatch = allow_first_token_mismatch and m > 1
    for i in range(max(0, search_start_index), n - m + 1):
        if template[i + 1 : i + m] != pattern[1:]:
            continue
        if template[i] == pattern[0] or allow_first_token_mismatch:
            return i, i + m
    return -1, -1


def _check_label_inputs(input_ids_batch: Any, conversations: Any) -> None:
    """``input_ids_batch`` is a ``[B, L]`` tensor and ``conversations`` has one entry per row."""
    if not isinstance(input_ids_batch, torch.Tensor):
        raise TypeError(f"input_ids_batch must be a torch.Tensor [B, L], got {type(input_ids_batch).__name__}")
    if input_ids_batch.dim() != 2:
        raise ValueError(f"input_ids_batch must be [B, L], got shape {tuple(input_ids_batch.shape)}")
    if not isinstance(conversations, Sequence) or isinstance(conversations, (str, bytes)):
        raise TypeError(
            f"conversations must be a list with one conversation per row, got {type(conversations).__name__}"
        )
    if len(conversations) != input_ids_batch.shape[0]:
        raise ValueError(
            f"conversations has {len(conversations)} entries but input_ids_batch has "
            f"{input_ids_batch.shape[0]} rows; pass one conversation per row"
        )


def build_labels(
    input_ids_batch: torch.Tensor, conversations: Sequence[Sequence[dict[str, Any]]], processor: Any
) -> torch.Tensor:
    """Legacy labels by BPE pattern matching: re-tokenize each assistant reply and search for it.

    Returns labels ``[B, L]`` (unshifted, -100 = ignore): the matched reply tokens plus the stop token
    right after them. Fragile: a reply tokenized differently in context is missed (and then a sample
    may end with no supervised tokens), and a reply that also occurs earlier (e.g. the user's words
    repeated) can be matched at the wrong place. Prefer :func:`build_labels_from_template`.
    """
    _check_label_inputs(input_ids_batch, conversations)
    tok = _tokenizer_of(processor)
    stop_id = _get_stop_token_id(tok)
    if stop_id is None:
        stop_id = getattr(tok, "eos_token_id", None)
    labels = torch.full_like(input_ids_batch, IGNORE_INDEX)
    for row, conversation in enumerate(conversations):
        ids = input_ids_batch[row].tolist()
        cursor = 0
        for message in conversation:
            if message.get("role") != "assistant":
                continue
            text = _extract_assistant_text(message).strip()
            if not text:
                continue
            pattern = _encode(tok, text)
            start, end = _find_pattern_indices(ids, pattern, cursor)
            if start < 0:
                start, end = _find_pattern_indices(ids, pattern, cursor, allow_first_token_mismatch=True)
            if start < 0:
                continue
            if end < len(ids) and stop_id is not None and ids[end] == stop_id:
                end += 1
            labels[row, start:end] = input_ids_batch[row, start:end]
            cursor = end
    return labels


def _template_identity(template: Any) -> Any:
    if template is None or isinstance(template, str):
        return template
    if isinstance(template, dict):  # named templates
        return tuple(sorted((str(k), str(v)) for k, v in template.items()))
    return repr(template)


def _resolve_turn_layout(processor: Any) -> TurnLayout | None:
    """The :class:`TurnLayout` of *processor*, or None when neither strategy applies.

    Computed once per (tokenizer, chat template): the result is cached on the tokenizer under a key
    made of the strategy, both chat templates (processor's and tokenizer's) and the vocabulary size,
    so editing a template or adding tokens re-derives instead of reusing stale markers.
    """
    tok = _tokenizer_of(processor)
    fast = type(processor).__name__ in _IMSTART_TEMPLATE_PROCESSORS
    key = (
        fast,
        _template_identity(getattr(processor, "chat_template", None)),
        _template_identity(getattr(tok, "chat_template", None)),
        len(tok) if hasattr(tok, "__len__") else None,
    )
    cache = getattr(tok, "_vlmspec_turn_markers", None)
    if isinstance(cache, dict) and key in cache:
        return cache[key]
    result = None
    if fast:
        marker, stop = _get_assistant_marker(tok), _get_stop_token_id(tok)
        if marker is not None and stop is not None:
            result = TurnLayout(marker, stop, [])
    if result is None:
        try:
            result = _derive_turn_layout(processor)
        except ValueError as exc:
            logger.warning("could not derive turn markers for %s: %s", type(processor).__name__, exc)
    if not isinstance(cache, dict):
        cache = {}
        try:  # deriving renders the template and tokenizes twice; the fast path still encodes once
            tok._vlmspec_turn_markers = cache
        except AttributeError:
            pass
    cache[key] = result
    return result


def resolve_turn_markers(processor: Any) -> tuple[list[int], int] | None:
    """(assistant_marker, stop_id) for *processor*, or None when neither strategy applies (cached).

    ``stop_id`` is -1 (a token that never occurs) when the template closes no turn.
    """
    layout = _resolve_turn_layout(processor)
    if layout is None:
        return None
    return layout.marker, (-1 if layout.stop is None else layout.stop)


def resolve_turn_scaffold(processor: Any) -> list[int]:
    """Template text that opens only the final assistant turn (see :func:`_derive_turn_layout`); [] if none."""
    layout = _resolve_turn_layout(processor)
    return [] if layout is None else layout.scaffold


def build_labels_from_template(
    input_ids_batch: torch.Tensor, conversations: Sequence[Sequence[dict[str, Any]]], processor: Any
) -> torch.Tensor:
    """Labels ``[B, L]`` (unshifted, -100 = ignore) from the chat template's role markers.

    1. Fast path: processors in ``_IMSTART_TEMPLATE_PROCESSORS`` resolve ``<|im_start|>assistant\\n`` /
       ``<|im_end|>`` directly.
    2. General path: :func:`_derive_turn_markers` renders a sentinel conversation (Gemma and others).
    3. If both fail, the legacy :func:`build_labels` with a warning: it is sensitive to tokenization
       context and may leave samples with no supervised tokens.

    Templates that close no turn (no special token after the reply: ``USER: … ASSISTANT: answer``)
    supervise each answer up to where the template's text resumes (:mod:`vlmspec.collate.open_turns`).
    Template whitespace between the marker and the answer, or between the answer and its stop, is
    never supervised unless BPE fused it with answer characters.
    """
    _check_label_inputs(input_ids_batch, conversations)
    # marker and stop through resolve_turn_markers, scaffold through resolve_turn_scaffold: the seams
    # that the strategy selection above describes (and that tests/mutants/ replace)
    markers = resolve_turn_markers(processor)
    if markers is None:
        logger.warning("falling back to legacy pattern-matching labels for %s", type(processor).__name__)
        return build_labels(input_ids_batch, conversations, processor)
    marker, stop = markers
    layout = _resolve_turn_layout(processor)  # cached: the rest of the layout (open turns, template whitespace)
    tok = _tokenizer_of(processor)
    if layout is not None and layout.open_turn is not None:
        starts = _exact_starts(input_ids_batch, marker) + _straddled_starts(input_ids_batch, marker, tok)
        labels = label_open_turns(input_ids_batch, starts, marker, layout.open_turn, getattr(tok, "pad_token_id", None))
    else:
        labels = _build_labels_from_markers(input_ids_batch, marker, stop)
        labels = _label_straddled_turns(labels, input_ids_batch, marker, stop, tok)
    if layout is not None and (layout.gap or layout.pre_stop):
        labels = _mask_template_whitespace(labels, input_ids_batch, layout._replace(marker=marker), tok)
    return _mask_scaffold(labels, input_ids_batch, marker + resolve_turn_scaffold(processor), len(marker))


def _exact_starts(input_ids: torch.Tensor, marker: list[int]) -> list[tuple[int, int]]:
    """``(row, position)`` of the first token after every complete *marker* in ``input_ids [B, L]``."""
    length = input_ids.shape[1]
    if not marker or length <= len(marker):
        return []
    flat = np.ascontiguousarray(input_ids.cpu().numpy()).reshape(-1)
    found = _pattern_starts(flat, length, [int(t) for t in marker], room=1) + len(marker)
    return [(int(f) // length, int(f) % length) for f in found]


def _mask_template_whitespace(
    labels: torch.Tensor, input_ids: torch.Tensor, layout: TurnLayout, tok: Any
) -> torch.Tensor:
    """Unsupervise the template's whitespace around answers that tokenized on its own.

    labels, input_ids: ``[B, L]`` (unshifted). ``layout.gap`` (``ASSISTANT: answer``): a token right
    after a marker whose text is exactly the gap (a lone ``▁`` before ``"56"``); ``layout.pre_stop``
    (``answer </s>``): those tokens right before a supervised stop.
    """
    labels = labels.clone()
    if layout.gap:
        for row, pos in _exact_starts(input_ids, layout.marker):
            if _decode_single_token(tok, int(input_ids[row, pos])) == layout.gap:
                labels[row, pos] = IGNORE_INDEX
    k = len(layout.pre_stop)
    if k and layout.stop is not None:
        head = torch.as_tensor(layout.pre_stop, dtype=input_ids.dtype, device=input_ids.device)
        for row, pos in ((input_ids == layout.stop) & (labels != IGNORE_INDEX)).nonzero().tolist():
            if pos >= k and bool((input_ids[row, pos - k : pos] == head).all()):
                labels[row, pos - k : pos] = IGNORE_INDEX
    return labels


def _mask_scaffold(labels: torch.Tensor, input_ids: torch.Tensor, opener: list[int], marker_len: int) -> torch.Tensor:
    """Set labels to -100 on template scaffold, ``opener[marker_len:]``, wherever the opener occurs.

    labels, input_ids: ``[B, L]`` (unshifted). A no-op when the opener has no scaffold. As with the
    marker, the scaffold's last token may have fused with a reply that starts with whitespace; that
    fused token carries reply text and stays supervised.
    """
    n = len(opener)
    length = input_ids.shape[1]
    if n == marker_len or length < n - 1:
        return labels
    head = torch.as_tensor(opener[:-1], dtype=input_ids.dtype, device=input_ids.device)
    starts = (input_ids.unfold(1, n - 1, 1) == head).all(-1).nonzero().tolist()
    if not starts:
        return labels
    labels = labels.clone()
    for row, pos in starts:
        end = pos + n - 1
        if end < length and int(input_ids[row, end]) == opener[-1]:
            end += 1
        labels[row, pos + marker_len : end] = IGNORE_INDEX
    return labels


def _straddled_starts(input_ids: torch.Tensor, marker: list[int], tokenizer: Any) -> list[tuple[int, int]]:
    """``(row, position)`` of turns whose marker's last token fused with the reply's first characters.

    BPE can fuse the marker's trailing ``"\n"`` with a reply that starts with whitespace
    (``assistant\n`` + ``"   \nhi"`` -> ``'\n   \n'``), so the exact marker never occurs. Such a turn opens
    with ``marker[:-1]`` followed by a token whose text starts with the marker's last token's text,
    compared as decoded text or as vocabulary pieces (SentencePiece ``▁`` + ``▁It`` decodes to
    ``""``/``"It"``); the position is that fused token, which carries reply characters.
    """
    if len(marker) < 2:
        return []
    k = len(marker) - 1
    length = input_ids.shape[1]
    if length <= k:
        return []
    if input_ids.device.type == "cpu" and not input_ids.dtype.is_floating_point:
        flat = np.ascontiguousarray(input_ids.numpy()).reshape(-1)
        found = _pattern_starts(flat, length, [int(t) for t in marker[:-1]], room=1)
        found = found[flat[found + k] != int(marker[-1])]
        candidates = [[int(f) // length, int(f) % length] for f in found]
    else:
        head = torch.as_tensor(marker[:-1], dtype=input_ids.dtype, device=input_ids.device)
        starts = (input_ids.unfold(1, k, 1)[:, : length - k] == head).all(-1)
        nxt = input_ids[:, k:]
        candidates = (starts & (nxt != marker[-1])).nonzero().tolist()
    if not candidates:
        return []
    tails = (_decode_single_token(tokenizer, marker[-1]), _piece(tokenizer, marker[-1]))
    out = []
    for row, pos in candidates:
        token = int(input_ids[row, pos + k])
        for tail, fused in zip(tails, (_decode_single_token(tokenizer, token), _piece(tokenizer, token))):
            if tail and fused.startswith(tail) and fused != tail:
                out.append((row, pos + k))
                break
    return out


def _piece(tokenizer: Any, token_id: int) -> str:
    """The vocabulary piece of *token_id* (``"▁It"``, ``"ĊĊ"``); ``""`` when the tokenizer has none."""
    try:
        piece = tokenizer.convert_ids_to_tokens(int(token_id))
    except Exception:
        return ""
    return piece if isinstance(piece, str) else ""


def _label_straddled_turns(
    labels: torch.Tensor, input_ids: torch.Tensor, marker: list[int], stop: int, tokenizer: Any
) -> torch.Tensor:
    """Label turns whose marker's last token merged with the reply (see :func:`_straddled_starts`).

    labels, input_ids: ``[B, L]`` (unshifted). Each such turn is copied from the fused token up to and
    including the next ``stop`` (to the row's end when none follows).
    """
    starts = _straddled_starts(input_ids, marker, tokenizer)
    if not starts:
        return labels
    labels = labels.clone()
    for row, first in starts:
        stops = (input_ids[row, first:] == stop).nonzero()
        end = first + int(stops[0]) + 1 if len(stops) else input_ids.shape[1]
        labels[row, first:end] = input_ids[row, first:end]
    return labels
