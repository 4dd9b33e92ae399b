"""Batches for the PP checks, and the documented PP media calls made the way any conforming
implementation accepts them.

Calling conventions (the API pages document positional-or-keyword parameters and leave open whether
a call mutates its batch or what ``stage_vlm_media_for_pp`` returns):

- every documented function is called with its documented parameters **by keyword**;
- every batch handed to an implementation is a fresh shallow copy (an implementation may legally
  pop media from the batch it is given: the page says it *moves* them);
- ``VLM_PP_MEDIA_KEY`` may hold ``list[dict]`` (one dict of media per microbatch) or
  ``dict[str, list]`` (one list of microbatch chunks per media key); both are read the same way;
- ``stage_vlm_media_for_pp`` may return the batch to step with, or a context manager that keeps the
  media attached while the schedule runs (and leaves the batch to step with in place).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import impl
from ..checks import IGNORE, CheckFailure
from ..corpus import load_corpus
from ..loading import collate_for, load_processor
from ..registry import FamilySpec
from .spec import AUDIO_CLIP_KEYS, AUDIO_KEYS, COUNT_KEYS, MEDIA_KEYS, pp_api, pp_record, uses_mrope

_GRID_ALIASES = ("image_grid_hws", "image_grid_thw", "image_grid_hw", "image_sizes", "image_position_ids")
"""The image-grid fields ``_select_image_grid`` chooses from: an implementation may carry the chosen one
under another of these names in its media chunks."""

_BATCHES: dict[tuple[str, tuple[str, ...]], dict[str, torch.Tensor]] = {}
_FALLBACKS: dict[str, str] = {}


def collated(spec: FamilySpec, ids: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The family collate's batch for these fixtures (cached per process; never hand it out uncopied).

    The implementation's own collate builds it. When that collate raises on these examples (a collate
    deviation, judged by the label and golden checks), the reference collate of the same documented
    name builds it instead, so that the PP checks still judge the implementation's PP functions; a
    failing PP check then says so (:func:`fallback_note`). A missing dependency is not papered over.
    """
    key = (spec.label, ids)
    if key not in _BATCHES:
        corpus = {c.id: c for c in load_corpus()}
        examples = [{"conversation": corpus[i].conversation} for i in ids]
        processor = load_processor(spec.model_id)
        try:
            _BATCHES[key] = collate_for(spec)(examples=examples, processor=processor)
        except Exception as exc:
            if impl.missing_dependency(exc) is not None or "vlmspec" in impl.names():
                raise  # an environment problem, or the reference itself (or a mutant of it) failing
            from vlmspec import collate_fns as reference

            name = spec.collate if spec.collate != "auto" else None
            fn = (
                getattr(reference, name)
                if name
                else reference.COLLATE_FNS.get(spec.processor_class, reference.default_collate_fn)
            )
            _BATCHES[key] = fn(examples=examples, processor=processor, **dict(spec.collate_kwargs))
            _FALLBACKS.setdefault(
                spec.label,
                f"the batches were built by vlmspec's reference {name or 'collate'}: "
                f"{impl.active()}'s raised {describe_error(exc)} on {'+'.join(ids)}",
            )
    return _BATCHES[key]


def fallback_note(spec: FamilySpec) -> list[str]:
    """``[note]`` when some batch of ``spec`` came from the reference collate, else ``[]``."""
    note = _FALLBACKS.get(spec.label)
    return [f"note: {note}"] if note else []


def prepare(batch: Mapping[str, Any], batch_size: int, n: int) -> dict[str, Any]:
    """``prepare_vlm_media_for_pp`` on a shallow copy of ``batch`` (documented parameters by keyword)."""
    out = pp_api("prepare_vlm_media_for_pp")(batch=dict(batch), batch_size=batch_size, n_microbatches=n)
    if not isinstance(out, Mapping):
        raise CheckFailure(f"prepare_vlm_media_for_pp returned {type(out).__name__}, not the batch mapping")
    return dict(out)


def describe_error(exc: BaseException) -> str:
    """``Type: message (file.py:line)`` of the innermost frame: evidence for a crash inside an implementation."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    loc = f" ({tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno})" if tb is not None else ""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}{loc}"


def wrapped_collate(spec: FamilySpec, ids: tuple[str, ...], n: int) -> dict[str, Any]:
    """The family collate wrapped by ``wrap_vlm_collate_for_pp``, called on the examples of ``ids``."""
    corpus = {c.id: c for c in load_corpus()}
    examples = [{"conversation": corpus[i].conversation} for i in ids]
    collate = functools.partial(collate_for(spec), processor=load_processor(spec.model_id))
    wrapped = pp_api("wrap_vlm_collate_for_pp")(collate_fn=collate, n_microbatches=n)
    return dict(wrapped(examples))


def media_chunks(
    prepared: Mapping[str, Any], batch: Mapping[str, Any], n: int
) -> tuple[list[dict[str, torch.Tensor]], list[str]]:
    """The ``n`` per-microbatch media dicts of a prepared batch, keyed like ``batch``, and notes on what
    was read how. Raises ``CheckFailure`` when ``VLM_PP_MEDIA_KEY`` holds neither documented-compatible form.

    Accepted: ``list[dict]`` of length ``n``, or ``dict[str, list]`` whose lists have length ``n``. An image
    grid carried under another ``_select_image_grid`` name (``image_grid_thw`` stored as ``image_grid_hws``)
    is read back under the batch's name.
    """
    key = pp_api("VLM_PP_MEDIA_KEY")
    value = prepared.get(key)
    if isinstance(value, (list, tuple)) and len(value) == n and all(isinstance(c, Mapping) for c in value):
        chunks = [dict(c) for c in value]
    elif isinstance(value, Mapping) and all(isinstance(v, (list, tuple)) and len(v) == n for v in value.values()):
        chunks = [{k: v[i] for k, v in value.items() if v[i] is not None} for i in range(n)]
    elif value is None:
        left = [k for k in MEDIA_KEYS if prepared.get(k) is not None]
        raise CheckFailure(
            f"no media chunks under {key!r}"
            + (f"; the media {left} are left in the batch, where torch PP would cut them by row" if left else "")
        )
    else:
        got = type(value).__name__ + (f" of length {len(value)}" if isinstance(value, (list, tuple, Mapping)) else "")
        raise CheckFailure(
            f"expected {n} media chunks under {key!r} (a list of {n} dicts or a dict of {n}-long lists), got {got}"
        )
    notes = []
    batch_grids = [g for g in _GRID_ALIASES if batch.get(g) is not None]
    for chunk in chunks:
        for grid in batch_grids:
            if grid in chunk:
                continue
            others = [g for g in _GRID_ALIASES if g in chunk and g not in batch_grids]
            if len(others) == 1:
                chunk[grid] = chunk.pop(others[0])
                note = f"{grid} read from the chunks' {others[0]}"
                if note not in notes:
                    notes.append(note)
    return chunks, notes


@dataclass
class PipelineInfo:
    """What a training loop knows about this rank's part of the pipeline."""

    has_first_stage: bool
    has_last_stage: bool
    schedule: Any = None
    stages: list[Any] = field(default_factory=list)


@dataclass
class PipelineHandle:
    """The ``pp`` argument of ``stage_vlm_media_for_pp``: ``pp.info`` describes this rank's stages."""

    info: PipelineInfo

    @property
    def has_first_stage(self) -> bool:
        return self.info.has_first_stage


@contextlib.contextmanager
def staged_media(
    pp: PipelineHandle, model_parts: list[nn.Module], prepared: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """Attach the prepared media with ``stage_vlm_media_for_pp`` for the duration of the block and yield
    the tensors to step with (the batch without ``VLM_PP_MEDIA_KEY``), whichever form the page allows the
    implementation to return."""
    batch = dict(prepared)
    media_key = pp_api("VLM_PP_MEDIA_KEY")
    result = pp_api("stage_vlm_media_for_pp")(pp=pp, model_parts=model_parts, batch=batch)
    if isinstance(result, Mapping):
        yield {k: v for k, v in result.items() if k != media_key}
    elif hasattr(result, "__enter__") and hasattr(result, "__exit__"):
        with result as entered:
            source = entered if isinstance(entered, Mapping) else batch
            yield {k: v for k, v in source.items() if k != media_key}
    elif result is None:
        yield {k: v for k, v in batch.items() if k != media_key}
    else:
        raise CheckFailure(
            f"stage_vlm_media_for_pp returned {type(result).__name__}: neither a batch nor a context manager"
        )


def stage_inputs(spec: FamilySpec, batch: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The collated batch without labels, plus what PP stages need that HF derives inside its forward.

    M-RoPE: HF computes 3-D positions from the media inside the forward; PP stages cannot (only stage 0
    sees media), so they come from the model's own ``get_rope_index`` and travel batch-first as
    ``mrope_position_ids [B, 3, L]``, which PP splits on dim 0 like any text tensor. (The pages document
    no position input; an implementation that ignores this one falls back to 1-D positions, which the
    staged check detects on every stage.)
    """
    out = {k: v for k, v in batch.items() if k != "labels"}
    if uses_mrope(spec):
        rope_index = model.model.get_rope_index
        kwargs = {
            "image_grid_thw": batch.get("image_grid_thw"),
            "video_grid_thw": batch.get("video_grid_thw"),
            "attention_mask": batch.get("attention_mask"),
        }
        params = inspect.signature(rope_index).parameters
        if "mm_token_type_ids" in params:  # Qwen-VL; Qwen3-Omni has none
            kwargs["mm_token_type_ids"] = batch["mm_token_type_ids"]
        # a video's temporal positions follow its seconds per grid step (Qwen2.5-VL, Qwen3-Omni), and
        # Qwen3-Omni's audio positions follow each clip's feature length, as in their forwards
        seconds = next((batch[k] for k in ("second_per_grid_ts", "video_second_per_grid") if k in batch), None)
        for name in ("second_per_grid_ts", "second_per_grids"):
            if name in params and seconds is not None:
                kwargs[name] = seconds
        if "audio_seqlens" in params and batch.get("feature_attention_mask") is not None:
            kwargs["audio_seqlens"] = batch["feature_attention_mask"].sum(-1)
        positions, _ = rope_index(batch["input_ids"], **kwargs)
        out["mrope_position_ids"] = positions.transpose(0, 1).contiguous()
    return out


def microbatches(pp_batch: Mapping[str, Any], n: int) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """``(input_ids, kwargs)`` per microbatch, every tensor cut with ``torch.tensor_split(x, n, dim=0)``."""
    split = {k: torch.tensor_split(v, n, dim=0) for k, v in pp_batch.items() if isinstance(v, torch.Tensor)}
    out = []
    for k in range(n):
        kwargs = {key: parts[k] for key, parts in split.items()}
        out.append((kwargs.pop("input_ids"), kwargs))
    return out


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor, n_targets: int) -> torch.Tensor:
    """Cross-entropy summed over ``labels != -100`` (already shifted), divided by ``n_targets``."""
    keep = labels != IGNORE
    return nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum") / n_targets


def microbatch_inputs(spec: FamilySpec, batch: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
    """The batch cut into the ``n`` text microbatches, each with its own samples' media, for the unsplit model.

    Image ownership comes from ``n_images_per_sample`` and the record's layout (``grid``: image i owns
    ``prod(image_grid_thw[i])`` rows of ``pixel_values``; other kinds: one row per image; Step-3.7's
    ``pixel_values_local``: ``num_local_patches[i]`` rows per image), not from the chunking under test.
    Videos likewise: ``n_videos_per_sample``, video i owning ``prod(video_grid_thw[i])`` rows of
    ``pixel_values_videos``; audio clips one feature row each, by ``n_audios_per_sample``.
    """
    size = batch["input_ids"].shape[0]
    counts = batch["n_images_per_sample"].tolist() if "n_images_per_sample" in batch else [0] * size
    grid_layout = pp_record(spec)["tokens_per_image"]["kind"] == "grid"
    rows = batch["image_grid_thw"].prod(-1).tolist() if grid_layout and "image_grid_thw" in batch else [1] * sum(counts)
    per_image = ("image_grid_thw", "image_sizes", "image_position_ids", "image_attention_mask", "num_local_patches")
    pixel_key = "image_pixel_values" if "image_pixel_values" in batch else "pixel_values"  # Phi-4-multimodal
    local = batch["num_local_patches"].tolist() if "num_local_patches" in batch else [0] * sum(counts)
    streams = [
        _Stream(counts, rows, pixel_key, per_image),
        _Stream(counts, local, "pixel_values_local", ()),
    ]
    if batch.get("pixel_values_videos") is not None:
        if "n_videos_per_sample" not in batch or "video_grid_thw" not in batch:
            raise CheckFailure("a video batch without n_videos_per_sample and video_grid_thw cannot be cut per sample")
        per_video = ("video_grid_thw", "second_per_grid_ts", "video_second_per_grid")
        streams.append(
            _Stream(
                batch["n_videos_per_sample"].tolist(),
                batch["video_grid_thw"].prod(-1).tolist(),
                "pixel_values_videos",
                per_video,
            )
        )
    audio = next((k for k in AUDIO_KEYS if batch.get(k) is not None), None)
    if audio is not None:
        if "n_audios_per_sample" not in batch:
            raise CheckFailure(f"an audio batch ({audio}) without n_audios_per_sample cannot be cut per sample")
        clips = batch["n_audios_per_sample"].tolist()
        streams.append(_Stream(clips, [1] * sum(clips), audio, AUDIO_CLIP_KEYS))
    owned = {s.pixels for s in streams} | {k for s in streams for k in s.per_item} | set(COUNT_KEYS)
    out = []
    for part in torch.tensor_split(torch.arange(size), n):
        s0, s1 = int(part[0]), int(part[-1]) + 1
        mb = {k: v[s0:s1] for k, v in batch.items() if k not in owned}
        for stream in streams:
            mb.update(stream.slice(batch, s0, s1))
        out.append(mb)
    return out


@dataclass
class _Stream:
    """One media stream of a batch: items per sample, pixel rows per item, and per-item metadata keys."""

    items_per_sample: list[int]
    rows_per_item: list[int]
    pixels: str
    per_item: tuple[str, ...]

    def slice(self, batch: dict[str, torch.Tensor], s0: int, s1: int) -> dict[str, torch.Tensor]:
        """Samples ``s0:s1``'s items (nothing when they own none)."""
        item_at = list(itertools.accumulate(self.items_per_sample, initial=0))
        row_at = list(itertools.accumulate(self.rows_per_item, initial=0))
        i0, i1 = item_at[s0], item_at[s1]
        if row_at[i1] == row_at[i0] or batch.get(self.pixels) is None:
            return {k: batch[k][i0:i1] for k in self.per_item if k in batch} if i1 > i0 else {}
        out = {self.pixels: batch[self.pixels][row_at[i0] : row_at[i1]]}
        out.update({k: batch[k][i0:i1] for k in self.per_item if k in batch})
        return out


def present_media(batch: Mapping[str, Any]) -> list[str]:
    return [k for k in MEDIA_KEYS if batch.get(k) is not None]
