"""Labels for chat templates that close no turn (``USER: … ASSISTANT: answer USER: …``).

Most chat templates end every assistant turn with an end-of-turn token (``<|im_end|>``, ``<end_of_turn>``,
``</s>``), and labelling copies each turn up to and including it. Some templates write none: the answer
is followed by whitespace, by the next role prefix, or by nothing at all. There the first token after the
answer is ordinary text (often a lone SentencePiece ``▁``), and "copy up to that token" cuts answers at
their first ``▁`` (``"56"`` is ``▁ 5 6``; CJK starts with a lone ``▁``) or runs on into the next user turn.

Such a turn ends where the template's own text resumes, whichever comes first:

- the **separator** that opens the next turn (``" USER:"``), with the template's whitespace right before
  it (``lead``; a lead fused with the answer's last characters carries answer text and stays);
- the template's **suffix** after the final answer (``" "``), when it ends the row's real tokens;
- the next assistant marker.

Only the answer is supervised: there is no closing token to teach. All three pieces are derived from the
template itself by :func:`vlmspec.collate.labels._derive_turn_layout`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class OpenTurn:
    """How a template that closes no turn resumes after an answer (token ids)."""

    separator: tuple[int, ...]  # what opens the next turn, without leading whitespace: " USER", ":"
    lead: tuple[int, ...] = ()  # template whitespace between an answer and the separator: "\n"
    suffix: tuple[int, ...] = ()  # what follows the final answer at the end of the rendering: " "


def occurrences(row: np.ndarray, pattern: Sequence[int]) -> np.ndarray:
    """Start indices of *pattern* in the 1-D *row* (ascending)."""
    m = len(pattern)
    if m == 0 or row.size < m:
        return np.empty(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(row, m)
    return np.flatnonzero((windows == np.asarray(pattern, dtype=row.dtype)).all(1))


def real_length(row: np.ndarray, pad_id: int | None) -> int:
    """Index after the row's last token that is not right padding."""
    if pad_id is None:
        return int(row.size)
    kept = np.flatnonzero(row != pad_id)
    return int(kept[-1]) + 1 if kept.size else 0


def turn_ends(row: np.ndarray, marker: Sequence[int], turn: OpenTurn, pad_id: int | None) -> np.ndarray:
    """Sorted positions at which an open turn in *row* must end (exclusive); the last is the real end."""
    end = real_length(row, pad_id)
    n = len(turn.suffix)
    if n and end >= n and row[end - n : end].tolist() == list(turn.suffix):
        end -= n
    k = len(turn.lead)
    bounds = []
    for at in occurrences(row[:end], turn.separator).tolist():
        fused = not k or at < k or row[at - k : at].tolist() != list(turn.lead)
        bounds.append(at if fused else at - k)
    bounds.extend(occurrences(row[:end], marker).tolist())
    bounds.append(end)
    return np.unique(np.asarray(bounds, dtype=np.int64))


def label_open_turns(
    input_ids: torch.Tensor,
    starts: Sequence[tuple[int, int]],
    marker: Sequence[int],
    turn: OpenTurn,
    pad_id: int | None,
) -> torch.Tensor:
    """Labels ``[B, L]`` (unshifted, -100 = ignore) for a template that closes no turn.

    input_ids: ``[B, L]``; starts: ``(row, position)`` of each answer's first token (after its assistant
    marker). Each answer is copied from its start to the first end from :func:`turn_ends` at or after it.
    """
    ids = input_ids.detach().cpu().numpy()
    labels = np.full_like(ids, IGNORE_INDEX)
    rows: dict[int, list[int]] = {}
    for row, pos in starts:
        rows.setdefault(int(row), []).append(int(pos))
    for row, positions in rows.items():
        ends = turn_ends(ids[row], marker, turn, pad_id)
        for pos in positions:
            at = int(np.searchsorted(ends, pos, side="left"))
            stop = int(ends[at]) if at < ends.size else pos
            labels[row, pos:stop] = ids[row, pos:stop]
    return torch.from_numpy(labels).to(input_ids.device)
