"""What the PP checks know about a family (its record's ``"pp"`` block) and the rules written there.

A family's record says, under ``"pp"``::

    "pp": {
      "image_token": "<|image_pad|>",                    # the placeholder that receives image features
      "tokens_per_image": {"kind": "grid", "merge": 2},   # how many of them one image yields
      "position_ids": "mrope",                            # optional: 3-D M-RoPE positions (Qwen-VL)
      "layers_per_stage": {"3": [1, 0, 1]},               # optional: when K stages > decoder layers
      "staged_fixtures": [...],                           # optional: corpus rows for the staged forward
      "distributed_fixtures": [...],                      #   and the distributed run (default: DEFAULT_FIXTURES)
      "video_fixtures": [...],                            # optional: the video chunking batch ([] = none)
      "audio_fixtures": [...],                            # optional: the audio chunking batch
      "media_staged_fixtures": [...],                     # optional: the staged/distributed media batch
      "video_tubelets": {"frames": 2, "patch": 16, "merge": 2},  # optional: stacked-frame videos written
                                                          #   as image-token chunks (Nemotron omni)
      "notes": "..."                                      # why the record deviates from the defaults
    }

``staged_fixtures`` may also map each B to its own list (``{"1": [...], ..., "5": [...]}``): with a
262k vocabulary and 256+ tokens per image (Gemma), every padded row costs, so images go where they
are cheap. The chunking check uses ``DEFAULT_FIXTURES`` (0, 1 and 2 images per sample) and
``IMAGE_FIXTURES``, plus ``VIDEO_FIXTURES`` / ``AUDIO_FIXTURES`` for the media a record declares; the
staged and distributed runs add ``media_staged_fixtures`` (default: ``VIDEO_BATCH`` for video families).

``tokens_per_image`` kinds (the processor's arithmetic, written down independently of any implementation):

- ``grid``: ``prod(image_grid_thw[i]) / merge**2`` (Qwen-VL patch merger; ``grid_key`` names another
  grid field, e.g. Kimi's ``image_grid_hws``);
- ``fixed``: ``tokens`` per ``pixel_values`` row (Gemma 3: 256 soft tokens per image);
- ``valid_patches``: non-padding rows of ``image_position_ids[i]`` / ``pool**2`` (Gemma 4 pooling);
- ``image_sizes``: ``(h // pixels) * (w // pixels)`` from ``image_sizes[i]`` (Pixtral: patch x merge);
- ``phi4_hd``: Phi-4-multimodal's HD transform, ``global**2 + global + 1`` for the global view plus the
  valid cells and valid rows of the 2x2-pooled ``image_attention_mask[i]`` crop grid (``crop`` pixels a crop);
- ``local_crops``: ``global + per_crop * num_local_patches[i]`` (Step-3.7: ``global`` tokens for the image's
  global view plus ``per_crop`` for each of its local crops in ``pixel_values_local``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch

from .. import impl
from ..checks import CheckFailure, header
from ..loading import load_processor
from ..registry import FamilySpec

GRID: tuple[tuple[int, int], ...] = tuple((b, n) for b in range(1, 6) for n in range(1, 5) if n <= b)
"""(batch size B, n_microbatches n) pairs the PP checks cover."""
STAGE_COUNTS = (2, 3)
ATOL = 1e-5  # fp32 round-off: the staged model computes the same function as the unsplit one
DEFAULT_FIXTURES = ("single_turn_image", "text_only_plain", "two_images_one_turn", "multi_turn_text", "wide_image")
IMAGE_FIXTURES = ("single_turn_image", "wide_image", "two_images_one_turn", "image_grayscale", "image_in_second_turn")
"""A second chunking batch in which every sample owns media: with text-only samples in the batch, a
``torch.chunk``-style split can land on the same images as ``torch.tensor_split`` by luck (B=4, n=3 over
DEFAULT_FIXTURES differs only in a sample without images)."""
VIDEO_FIXTURES = (
    "video_short_clip",
    "single_turn_text",
    "video_and_image_one_turn",
    "video_two_across_turns",
    "image_in_second_turn",
)
"""A third chunking batch, for families whose record declares video: videos, images and a text-only sample
mixed, one sample with two videos (a record's ``pp.video_fixtures`` may replace it)."""
AUDIO_FIXTURES = ("single_turn_text", "audio_question", "audio_and_image", "audio_in_history", "video_short_clip")
"""A fourth chunking batch, for families whose record declares audio: a text-only sample first (so that a
row-wise split of the clips cannot land on the right microbatches by luck), clips alone, next to an image
and in a history turn, and a video where the family's video batch runs (else ``two_images_one_turn``).
A record's ``pp.audio_fixtures`` may replace it."""
AUDIO_KEYS = ("input_features", "audio_input_features")
"""Audio feature tensors of the collates' output, ``[n_clips, ...]`` in sample order."""
AUDIO_CLIP_KEYS = ("feature_attention_mask", "input_features_mask", "audio_embed_sizes", "audio_attention_mask")
"""Per-clip audio metadata: one leading row per clip."""
MEDIA_KEYS = (
    "pixel_values",
    "image_pixel_values",
    "image_attention_mask",
    "image_grid_thw",
    "image_grid_hws",
    "image_grid_hw",
    "image_sizes",
    "image_position_ids",
    "n_images_per_sample",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",  # Qwen2.5-VL: one time step per video, [n_videos]
    "video_second_per_grid",  # Qwen3-Omni's name for it
    "n_videos_per_sample",
    "num_frames_per_video",
    "pixel_values_local",
    "num_local_patches",
    *AUDIO_KEYS,
    *AUDIO_CLIP_KEYS,
    "n_audios_per_sample",
)
"""Batch keys that carry media (the collates' output); PP must route them per microbatch, not by row."""
COUNT_KEYS = ("n_images_per_sample", "n_videos_per_sample", "n_audios_per_sample")
"""Per-sample bookkeeping: a media chunk may carry its samples' counts, but stage 0 needs no more than the media."""


def pp_api(name: str) -> Any:
    """A documented name from ``pp_media`` or ``pipelining`` of the implementation under test."""
    for module in ("pp_media", "pipelining"):
        try:
            return impl.get(module, name)
        except impl.NotImplementedInImpl:
            continue
    raise impl.NotImplementedInImpl(f"not implemented: {impl.active()} provides no '{name}'")


def pp_record(spec: FamilySpec) -> dict[str, Any]:
    record = spec.extra.get("pp") or {}
    if "image_token" not in record or "tokens_per_image" not in record:
        raise CheckFailure(
            f'{spec.model_id}: the family record has no "pp" entry with image_token and tokens_per_image'
        )
    return record


def fixture_ids(spec: FamilySpec, batch_size: int, purpose: str = "fixtures") -> tuple[str, ...]:
    """The fixture ids of the batch of size ``batch_size`` for ``purpose`` (a key of the record's ``pp``).

    A list means: its first ``batch_size`` entries (cycled); a mapping gives each batch size its own list
    (``{"2": [...], ...}``), for families whose every image costs hundreds of tokens of a large vocabulary.
    """
    ids = (spec.extra.get("pp") or {}).get(purpose) or DEFAULT_FIXTURES
    if isinstance(ids, dict):
        chosen = ids.get(str(batch_size))
        if chosen is None or len(chosen) != batch_size:
            raise CheckFailure(f"{spec.model_id}: pp.{purpose} has no list of {batch_size} fixtures for B={batch_size}")
        return tuple(chosen)
    return tuple(itertools.islice(itertools.cycle(ids), batch_size))


def layers_per_stage(spec: FamilySpec, n_stages: int) -> list[int] | None:
    layout = (spec.extra.get("pp") or {}).get("layers_per_stage", {}).get(str(n_stages))
    return list(layout) if layout is not None else None


def uses_mrope(spec: FamilySpec) -> bool:
    return (spec.extra.get("pp") or {}).get("position_ids") == "mrope"


def image_token_id(spec: FamilySpec) -> int:
    tok = load_processor(spec.model_id).tokenizer
    token = pp_record(spec)["image_token"]
    tid = tok.convert_tokens_to_ids(token)
    if tid is None or tid == tok.unk_token_id:
        raise CheckFailure(f"{spec.model_id}: pp.image_token {token!r} is not in the tokenizer")
    return int(tid)


def tokens_per_image(spec: FamilySpec, media: dict[str, torch.Tensor]) -> list[int]:
    """Placeholder tokens each image of ``media`` yields, by the record's ``pp.tokens_per_image`` rule."""
    rule = pp_record(spec)["tokens_per_image"]
    kind = rule["kind"]
    if media.get("pixel_values") is None and media.get("image_pixel_values") is None:
        return []
    if kind == "grid":
        grid = media[rule.get("grid_key", "image_grid_thw")]
        return [whole_tokens(p, rule["merge"] ** 2, "patches / merge²") for p in grid.prod(-1).tolist()]
    if kind == "fixed":
        return [int(rule["tokens"])] * media["pixel_values"].shape[0]
    if kind == "valid_patches":
        valid = (media["image_position_ids"][..., 0] >= 0).sum(-1).tolist()
        return [whole_tokens(v, rule["pool"] ** 2, "valid patches / pool²") for v in valid]
    if kind == "image_sizes":
        unit = int(rule["pixels"])
        return [(h // unit) * (w // unit) for h, w in media["image_sizes"].tolist()]
    if kind == "phi4_hd":
        return [
            _phi4_tokens(size, mask, int(rule["crop"]), int(rule["global"]))
            for size, mask in zip(media["image_sizes"].tolist(), media["image_attention_mask"])
        ]
    if kind == "local_crops":
        return [int(rule["global"]) + int(rule["per_crop"]) * c for c in media["num_local_patches"].tolist()]
    raise CheckFailure(f"{spec.model_id}: unknown pp.tokens_per_image kind {kind!r}")


def _phi4_tokens(size: list[int], mask: torch.Tensor, crop: int, g: int) -> int:
    """Phi-4-multimodal HD transform: the g x g global view plus a separator after each of its rows, one
    separator between views, and the valid cells of the 2x2-pooled crop grid plus one separator per valid row."""
    rows, cols = size[0] // crop, size[1] // crop
    pooled = mask[1 : 1 + rows * cols, 0::2, 0::2]  # crop 0 is the global view
    grid = pooled.reshape(rows, cols, g, g).transpose(1, 2).reshape(rows * g, cols * g) > 0
    return g * g + g + 1 + int(grid.sum()) + int(grid.any(-1).sum())


def whole_tokens(a: int, b: int, what: str) -> int:
    if a % b:
        raise CheckFailure(f"{what} = {a} / {b} is not a whole number of tokens")
    return a // b


def shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) + " " + str(t.dtype).removeprefix("torch.")


def where(
    spec: FamilySpec,
    check: str,
    ids: Sequence[str],
    batch_size: int,
    n: int,
    k: int | None = None,
    stages: int | None = None,
) -> str:
    bits = [
        f"B={batch_size}",
        f"n={n}",
        *([f"K={stages}"] if stages else []),
        *([f"microbatch k={k}"] if k is not None else []),
    ]
    return f"{header(spec, '+'.join(ids), check)} {' '.join(bits)}:"


def raise_all(problems: list[str], what: str) -> None:
    if problems:
        shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
        raise CheckFailure(f"{len(problems)} {what}:\n" + "\n".join(shown))
