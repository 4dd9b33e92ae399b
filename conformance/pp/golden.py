"""Check ``pp_golden``: a readable record of the PP layout per model, compared with ``golden/``: the media
chunks of every (B, n) and the decoder layers and modules of each harness stage for K = 2, 3."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..checks import CheckFailure
from ..loading import fixture_class
from ..registry import FamilySpec
from .batches import collated, describe_error, media_chunks, prepare, present_media
from .spec import COUNT_KEYS, GRID, STAGE_COUNTS, fixture_ids, shape, tokens_per_image
from .staged import stages_for

_SMALL = (
    "image_grid_thw",
    "image_sizes",
    "n_images_per_sample",
    "video_grid_thw",
    "n_videos_per_sample",
    "num_local_patches",
)
"""Chunk entries small enough to print their values."""


def golden_record(spec: FamilySpec) -> dict[str, Any]:
    """Readable PP layout: media chunk shapes per (B, n) and the layers/modules of each stage for K = 2, 3."""
    ids = fixture_ids(spec, max(b for b, _ in GRID))
    batch = collated(spec, ids)
    counts = batch.get("n_images_per_sample")
    record: dict[str, Any] = {
        "model": spec.model_id,
        "fixture_class": fixture_class(spec),
        "samples": [f"{i}: {c} ({int(counts[i]) if counts is not None else 0} images)" for i, c in enumerate(ids)],
        "media_chunks": {},
        "stages": {},
    }
    for batch_size, n in GRID:
        sub = collated(spec, fixture_ids(spec, batch_size))
        rows = torch.tensor_split(torch.arange(batch_size), n)
        try:
            chunks = media_chunks(prepare(sub, batch_size, n), sub, n)[0] if present_media(sub) else [{}] * n
        except Exception as exc:  # the golden shows the crash in place of the chunks: a readable diff
            record["media_chunks"][f"B={batch_size} n={n}"] = [f"prepare_vlm_media_for_pp raised {describe_error(exc)}"]
            continue
        record["media_chunks"][f"B={batch_size} n={n}"] = [
            f"k={k} samples {rows[k].tolist()}: " + _chunk_summary(spec, _with_counts(chunk, sub, n, k))
            for k, chunk in enumerate(chunks)
        ]
    for n_stages in STAGE_COUNTS:
        record["stages"][f"K={n_stages}"] = [_stage_summary(stage) for stage in stages_for(spec, n_stages)]
    return record


def _with_counts(
    chunk: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], n: int, k: int
) -> dict[str, torch.Tensor]:
    """The chunk, with the per-sample counts of microbatch ``k`` where the implementation carries none:
    counts are bookkeeping the pages do not require in a chunk, so their absence is no golden difference."""
    if not chunk:
        return chunk
    missing = {key: torch.tensor_split(batch[key], n)[k] for key in COUNT_KEYS if key not in chunk and key in batch}
    return {**chunk, **missing} if missing else chunk


def _chunk_summary(spec: FamilySpec, chunk: dict[str, torch.Tensor]) -> str:
    if not chunk:
        return "no media"
    parts = [
        f"{key} {shape(chunk[key])}" + (f" {chunk[key].tolist()}" if key in _SMALL else "") for key in sorted(chunk)
    ]
    try:
        tokens = tokens_per_image(spec, chunk)
    except KeyError as exc:
        raise CheckFailure(
            f"{spec.model_id}: a media chunk lacks {exc}, which the record's tokens_per_image rule reads"
        ) from None
    parts.append(f"image tokens {sum(tokens)}")
    return "; ".join(parts)


def _stage_summary(stage: nn.Module) -> dict[str, Any]:
    """Decoder layers (global indices) and the other parameter-holding modules a stage keeps."""
    layers: set[int] = set()
    modules: set[str] = set()
    for name, _ in stage.named_parameters():
        parts = name.split(".")
        if "layers" in parts[:-1] and parts[parts.index("layers") + 1].isdigit() and "language_model" in name:
            layers.add(int(parts[parts.index("layers") + 1]))
            continue
        depth = 3 if parts[:2] == ["model", "language_model"] else 2 if parts[0] == "model" else 1
        modules.add(".".join(parts[:depth]))
    ordered = sorted(layers)
    span = "none" if not ordered else str(ordered[0]) if len(ordered) == 1 else f"{ordered[0]}-{ordered[-1]}"
    return {"layers": span, "modules": sorted(modules), "parameters": sum(p.numel() for p in stage.parameters())}
