"""PP media chunking: layouts, per-microbatch boundaries, ``chunk_vlm_media``, ``chunk_step3_media`` and
``chunk_step3p7_media``.

``torch.distributed.pipelining`` splits every batch-dimension input with
``torch.tensor_split(x, n_microbatches, dim=0)``. That is right for text tensors (``input_ids``,
``attention_mask``, ``labels``: ``[B, L]``) but wrong for media tensors, whose leading dimension counts
images, frames or patches rather than samples. This module pre-chunks media so that
**media chunk k holds exactly the media of the samples in text microbatch k**, for every batch size
(divisible by ``n_microbatches`` or not) and every per-sample media count (0, 1 or several).

Conventions used throughout:

- Sample boundaries: microbatch ``k`` holds the samples ``torch.tensor_split(torch.arange(B), n)[k]``,
  i.e. the first ``B % n`` microbatches hold ``ceil(B / n)`` samples and the rest ``floor(B / n)``.
- ``n_images_per_sample`` / ``n_videos_per_sample`` / ``n_audios_per_sample``: long ``[B]``, how many
  images / videos / audio clips each sample has, in batch order. Media items are stored in sample order
  (all of sample 0's, then sample 1's, ...).
- Audio layout: ``input_features`` / ``audio_input_features [n_clips, ...]`` plus per-clip metadata
  (``AUDIO_CLIP_KEYS``); clip ``i`` is row ``i`` of each, owned through ``n_audios_per_sample``.
- Step3p7 (Step-3.7) layout: ``pixel_values [n_images, C, H, W]`` (one global view per image, owned by
  samples through ``n_images_per_sample``) plus ``pixel_values_local [sum(num_local_patches), C, h, w]``,
  the local crops of all images in image order; ``num_local_patches`` (long ``[n_images]``) says how many
  crops each image owns. Unlike the older Step3 layout (``num_patches``, one image per sample), the crop
  counts are per image, so crops follow their images and images follow their samples.
- Flat patch layout: ``pixel_values [total_patches, D]``; media item ``i`` owns
  ``prod(grid[i])`` consecutive rows (``grid`` = ``image_grid_thw [n, 3]`` or ``image_grid_hws [n, 2]``).
- Chunks are views into the inputs (nothing is copied or written); batches are never mutated,
  functions return new dicts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

VLM_PP_MEDIA_KEY = "_vlm_pp_media_chunks"
"""Batch key holding ``list[dict[str, Tensor]]``: one dict of media kwargs per microbatch."""

VLM_PP_MEDIA_INDEX_KEY = "_vlm_pp_media_index"
"""Batch key holding a long ``[B]`` tensor whose value is the sample's microbatch index.

PP splits it like any text tensor, so microbatch ``k`` receives a tensor full of ``k``: the stage-0
forward uses it to pick its media chunk regardless of schedule order or extra (metadata-inference) calls.
"""

_VLM_MEDIA_KEYS = (
    "pixel_values",
    "patch_pixel_values",
    "num_patches",
    "patch_newline_mask",
    "image_grid_thw",
    "image_grid_hws",
    "image_grid_hw",
    "image_sizes",
    "image_position_ids",
    "n_images_per_sample",
    "pixel_values_videos",
    "video_grid_thw",
    "video_position_ids",
    "second_per_grid_ts",
    "video_second_per_grid",  # Qwen3-Omni's name for the seconds per temporal grid step, [n_videos]
    "num_frames_per_video",
    "n_videos_per_sample",
    "image_pixel_values",  # Phi-4-multimodal's image stream (with image_sizes, image_attention_mask)
    "image_attention_mask",
    "pixel_values_local",  # Step3p7: local crops of every image, with num_local_patches [n_images]
    "num_local_patches",
    # Audio: one leading row per clip (not per sample), so torch PP would cut it by row too.
    "input_features",  # Qwen3-Omni [n_clips, mels, T]; Gemma 4 / Nemotron omni [n_clips, T, mels]
    "feature_attention_mask",  # Qwen3-Omni [n_clips, T]
    "input_features_mask",  # Gemma 4 / Nemotron omni [n_clips, T]
    "audio_input_features",  # Phi-4-multimodal [n_clips, T, mels]
    "audio_embed_sizes",  # Phi-4-multimodal [n_clips]
    "audio_attention_mask",  # Phi-4-multimodal [n_clips, T], only with several clips
    "n_audios_per_sample",
)

AUDIO_FEATURE_KEYS = ("input_features", "audio_input_features")
"""Audio feature tensors: ``[n_clips, ...]``, the clips of all samples in sample order."""
AUDIO_CLIP_KEYS = ("feature_attention_mask", "input_features_mask", "audio_embed_sizes", "audio_attention_mask")
"""Per-clip audio metadata: one leading row per clip, like the features they describe."""

# Per-image metadata keys, in the order `_select_image_grid` prefers them.
_IMAGE_GRID_KEYS = ("image_grid_hws", "image_grid_hw", "image_grid_thw", "image_sizes", "image_position_ids")


# --------------------------------------------------------------------------------------------------
# Core arithmetic
# --------------------------------------------------------------------------------------------------
def _check_microbatching(batch_size: int, n_microbatches: int) -> None:
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(n_microbatches, int) or n_microbatches <= 0:
        raise ValueError(f"n_microbatches must be a positive int, got {n_microbatches!r}")
    if n_microbatches > batch_size:
        raise ValueError(
            f"n_microbatches={n_microbatches} > batch_size={batch_size}: torch.tensor_split would produce "
            f"empty text microbatches. Pass n_microbatches <= batch_size (or a larger local batch)."
        )


def _sample_bounds(batch_size: int, n_microbatches: int) -> list[tuple[int, int]]:
    """``[(start, end)]`` sample ranges of each microbatch, exactly as ``torch.tensor_split`` cuts ``[B]``."""
    base, extra = divmod(batch_size, n_microbatches)
    bounds, start = [], 0
    for k in range(n_microbatches):
        end = start + base + (1 if k < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def _as_counts(counts: torch.Tensor | Sequence[int], batch_size: int, field: str) -> list[int]:
    values = counts.tolist() if isinstance(counts, torch.Tensor) else list(counts)
    if isinstance(counts, torch.Tensor) and counts.ndim != 1:
        raise ValueError(f"{field} must be a 1-D [batch_size] tensor, got shape {tuple(counts.shape)}")
    if len(values) != batch_size:
        raise ValueError(f"{field} has {len(values)} entries but batch_size={batch_size}; pass one count per sample")
    for i, v in enumerate(values):
        if int(v) != v or v < 0:
            raise ValueError(f"{field}[{i}] = {v} (sample {i}) must be a non-negative integer")
    return [int(v) for v in values]


def _item_bounds(items_per_sample: list[int], batch_size: int, n_microbatches: int) -> list[tuple[int, int]]:
    """Media-item ranges ``[(first, last+1)]`` per microbatch, given per-sample item counts."""
    cum = [0]
    for c in items_per_sample:
        cum.append(cum[-1] + c)
    return [(cum[s], cum[e]) for s, e in _sample_bounds(batch_size, n_microbatches)]


def _row_offsets(rows_per_item: list[int]) -> list[int]:
    cum = [0]
    for r in rows_per_item:
        cum.append(cum[-1] + r)
    return cum


def _resolve_layout(
    pixel_values: torch.Tensor,
    image_grid: torch.Tensor | None,
    batch_size: int,
    counts: torch.Tensor | None,
    *,
    pixel_field: str,
    grid_field: str,
    count_field: str,
) -> tuple[list[int], list[int]]:
    """Return ``(items_per_sample [B], rows_per_item [n_items])`` for one media stream.

    Raises ``ValueError`` naming the field when the layout cannot be split per sample.
    """
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"{pixel_field} must be a torch.Tensor, got {type(pixel_values).__name__}")
    if pixel_values.ndim < 2:
        raise ValueError(f"{pixel_field} must have at least 2 dims, got shape {tuple(pixel_values.shape)}")
    if image_grid is not None and not isinstance(image_grid, torch.Tensor):
        raise TypeError(f"{grid_field} must be a torch.Tensor or None, got {type(image_grid).__name__}")
    n_rows = pixel_values.shape[0]
    # Patches kept as images ([total_patches, C, p, p], Kimi-K2.5) are flat too: the grid's patch counts add up to the rows.
    patch_images = (
        pixel_values.ndim > 2
        and image_grid is not None
        and image_grid.ndim == 2
        and image_grid.shape[0] != n_rows
        and int(image_grid.long().prod(dim=-1).sum()) == n_rows
    )

    if pixel_values.ndim == 2 or patch_images:
        # Layouts 3/4: flat patches; the grid is the only way to know where an item's rows end.
        if image_grid is None:
            raise ValueError(
                f"{pixel_field} has the flat patch layout {tuple(pixel_values.shape)} but no per-item grid was "
                f"given; pass {grid_field} (one row per item; item i owns prod({grid_field}[i]) rows)"
            )
        if image_grid.ndim != 2:
            raise ValueError(f"{grid_field} must be 2-D [n_items, k], got shape {tuple(image_grid.shape)}")
        rows_per_item = [int(r) for r in image_grid.long().prod(dim=-1).tolist()]
        if sum(rows_per_item) != n_rows:
            raise ValueError(
                f"{grid_field} describes {sum(rows_per_item)} patch rows but {pixel_field} has {n_rows} rows; "
                f"{grid_field} must have one row per item in {pixel_field} order"
            )
        n_items = len(rows_per_item)
    else:
        # Layouts 1/2: one leading row per item ([N, C, H, W] or [N, max_patches, D]).
        n_items = n_rows
        rows_per_item = [1] * n_items
        if image_grid is not None and image_grid.shape[0] != n_items:
            raise ValueError(
                f"{grid_field} has {image_grid.shape[0]} rows but {pixel_field} holds {n_items} items "
                f"(shape {tuple(pixel_values.shape)}); they must describe the same items"
            )

    if counts is not None:
        items_per_sample = _as_counts(counts, batch_size, count_field)
        if sum(items_per_sample) != n_items:
            raise ValueError(
                f"{count_field} sums to {sum(items_per_sample)} but {pixel_field}/{grid_field} hold {n_items} items"
            )
    elif n_items == batch_size:
        items_per_sample = [1] * batch_size  # layouts 1, 2 and legacy 4: one item per sample
    else:
        raise ValueError(
            f"cannot tell which sample owns which item: {pixel_field} holds {n_items} items for batch_size="
            f"{batch_size} and {count_field} was not given; pass {count_field} (long [batch_size])"
        )
    return items_per_sample, rows_per_item


def _split_stream(
    pixel_values: torch.Tensor,
    per_item: dict[str, torch.Tensor | None],
    items_per_sample: list[int],
    rows_per_item: list[int],
    batch_size: int,
    n_microbatches: int,
    counts: tuple[str, torch.Tensor] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Cut one media stream into per-microbatch dicts ``{pixel_key: rows, meta_key: items, ...}``."""
    rows = _row_offsets(rows_per_item)
    out: list[dict[str, torch.Tensor]] = []
    sample_bounds = _sample_bounds(batch_size, n_microbatches)
    for (i0, i1), (s0, s1) in zip(_item_bounds(items_per_sample, batch_size, n_microbatches), sample_bounds):
        chunk = {"__pixels__": pixel_values[rows[i0] : rows[i1]]}
        for key, tensor in per_item.items():
            if tensor is not None:
                chunk[key] = tensor[i0:i1]
        if counts is not None:
            chunk[counts[0]] = counts[1][s0:s1]
        out.append(chunk)
    return out


# --------------------------------------------------------------------------------------------------
# Documented API
# --------------------------------------------------------------------------------------------------
def _select_image_grid(
    image_grid_hws: torch.Tensor | None,
    image_grid_thw: torch.Tensor | None,
    image_sizes: torch.Tensor | None,
    image_position_ids: torch.Tensor | None,
) -> torch.Tensor | None:
    """Return the per-image metadata tensor used to chunk images, or ``None``.

    Preference order: ``image_grid_hws [n, 2]`` (Kimi-VL), ``image_grid_thw [n, 3]`` (Qwen-VL),
    ``image_sizes [n, 2]`` (LLaVA/Pixtral), ``image_position_ids [n, max_patches, 2]`` (Gemma4).
    """
    for grid in (image_grid_hws, image_grid_thw, image_sizes, image_position_ids):
        if grid is not None:
            return grid
    return None


def chunk_vlm_media(
    pixel_values: torch.Tensor,
    image_grid: torch.Tensor | None,
    batch_size: int,
    n_microbatches: int,
    n_images_per_sample: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """Split VLM pixel values and media metadata into PP microbatch chunks.

    Handles four layouts:

    1. ``[N, C, H, W]`` with ``N == batch_size`` -- one full image per sample.
    2. ``[N, max_patches, D]`` with ``N == batch_size`` -- padded patches per image.
    3. Flat patches ``[total_patches, D]`` with per-sample media counts from ``n_images_per_sample``;
       image ``i`` owns ``prod(image_grid[i])`` rows.
    4. Flat patches with ``n_images == batch_size`` -- legacy one-image-per-sample.

    Layouts 1/2 also accept ``n_images_per_sample`` (then ``N`` may differ from ``batch_size``).
    ``image_grid`` (``[N, k]`` or ``[N, P, 2]``) is split per image; it may be ``None`` for layouts 1/2,
    in which case the returned grid chunks are ``None``.

    Returns ``(pixel_chunks, grid_chunks)``, each of length ``n_microbatches``; chunk ``k`` holds exactly
    the media of samples ``torch.tensor_split(arange(batch_size), n_microbatches)[k]`` (possibly 0 rows).

    Raises:
        ValueError: ``n_microbatches`` not in ``1..batch_size``; flat layout without ``image_grid``;
            grid rows not matching ``pixel_values`` rows; ambiguous item ownership without
            ``n_images_per_sample``; counts not summing to the number of images.
    """
    _check_microbatching(batch_size, n_microbatches)
    items, rows = _resolve_layout(
        pixel_values,
        image_grid,
        batch_size,
        n_images_per_sample,
        pixel_field="pixel_values",
        grid_field="image_grid",
        count_field="n_images_per_sample",
    )
    chunks = _split_stream(pixel_values, {"grid": image_grid}, items, rows, batch_size, n_microbatches)
    return [c["__pixels__"] for c in chunks], [c.get("grid") for c in chunks]


def chunk_step3_media(
    pixel_values: torch.Tensor,
    batch_size: int,
    n_microbatches: int,
    num_patches: torch.Tensor | None = None,
    patch_pixel_values: torch.Tensor | None = None,
    patch_newline_mask: torch.Tensor | None = None,
) -> dict[str, list[torch.Tensor]]:
    """Chunk Step3-style image tensors for PP microbatches.

    Step3 processors emit one full image per sample in ``pixel_values`` (``[B, C, H, W]``) and a
    flat list of optional crop patches in ``patch_pixel_values`` (``[sum(num_patches), C, h, w]``).
    ``num_patches`` (long ``[B]``) maps samples to the flat patch tensor; ``patch_newline_mask``
    has one leading entry per patch.

    Returns ``{"pixel_values": [...], "num_patches": [...], "patch_pixel_values": [...],
    "patch_newline_mask": [...]}`` (only the keys that were given), each a list of ``n_microbatches``.
    """
    _check_microbatching(batch_size, n_microbatches)
    if pixel_values.shape[0] != batch_size:
        raise ValueError(
            f"Step3 pixel_values must hold one full image per sample: got {pixel_values.shape[0]} images "
            f"for batch_size={batch_size}"
        )
    bounds = _sample_bounds(batch_size, n_microbatches)
    out: dict[str, list[torch.Tensor]] = {"pixel_values": [pixel_values[s:e] for s, e in bounds]}
    has_patches = patch_pixel_values is not None or patch_newline_mask is not None
    if num_patches is None:
        if has_patches:
            raise ValueError(
                "patch_pixel_values/patch_newline_mask were given without num_patches; pass num_patches "
                "(long [batch_size], crop patches per sample) so patches can follow their samples"
            )
        return out
    counts = _as_counts(num_patches, batch_size, "num_patches")
    out["num_patches"] = [num_patches[s:e] for s, e in bounds]
    item_bounds = _item_bounds(counts, batch_size, n_microbatches)
    for key, tensor in (("patch_pixel_values", patch_pixel_values), ("patch_newline_mask", patch_newline_mask)):
        if tensor is None:
            continue
        if tensor.shape[0] != sum(counts):
            raise ValueError(f"{key} has {tensor.shape[0]} patches but num_patches sums to {sum(counts)}")
        out[key] = [tensor[a:b] for a, b in item_bounds]
    return out


def chunk_step3p7_media(
    pixel_values: torch.Tensor,
    batch_size: int,
    n_microbatches: int,
    n_images_per_sample: torch.Tensor | None = None,
    num_local_patches: torch.Tensor | None = None,
    pixel_values_local: torch.Tensor | None = None,
) -> dict[str, list[torch.Tensor]]:
    """Chunk Step3p7-style (Step-3.7) image tensors for PP microbatches.

    ``pixel_values [n_images, C, H, W]`` holds one global view per image; samples own
    ``n_images_per_sample`` (long ``[B]``) consecutive images (it may be omitted only when
    ``n_images == batch_size``: one image per sample). ``pixel_values_local
    [sum(num_local_patches), C, h, w]`` holds the local crops of all images in image order, image ``i``
    owning ``num_local_patches[i]`` consecutive rows (long ``[n_images]``).

    Chunk ``k`` holds the images of the samples of text microbatch ``k``, their ``num_local_patches``
    entries and their crops (possibly 0 rows). Returns ``{"pixel_values": [...],
    "n_images_per_sample": [...], "num_local_patches": [...], "pixel_values_local": [...]}`` (only the
    keys that were given), each a list of ``n_microbatches``.

    Raises:
        ValueError: ``n_microbatches`` not in ``1..batch_size``; ambiguous image ownership without
            ``n_images_per_sample``; counts not matching ``pixel_values``; ``pixel_values_local`` without
            ``num_local_patches`` or with a different number of crops than ``num_local_patches`` sums to.
    """
    _check_microbatching(batch_size, n_microbatches)
    images, _ = _resolve_layout(
        pixel_values,
        None,
        batch_size,
        n_images_per_sample,
        pixel_field="pixel_values",
        grid_field="num_local_patches",
        count_field="n_images_per_sample",
    )
    image_bounds = _item_bounds(images, batch_size, n_microbatches)
    out: dict[str, list[torch.Tensor]] = {"pixel_values": [pixel_values[a:b] for a, b in image_bounds]}
    if n_images_per_sample is not None:
        out["n_images_per_sample"] = [n_images_per_sample[s:e] for s, e in _sample_bounds(batch_size, n_microbatches)]
    if num_local_patches is None:
        if pixel_values_local is not None:
            raise ValueError(
                "pixel_values_local was given without num_local_patches; pass num_local_patches "
                "(long [n_images], local crops per image) so crops can follow their images"
            )
        return out
    n_images = pixel_values.shape[0]
    if not isinstance(num_local_patches, torch.Tensor):
        num_local_patches = torch.as_tensor(num_local_patches, dtype=torch.long)
    if num_local_patches.ndim != 1 or num_local_patches.shape[0] != n_images:
        raise ValueError(
            f"num_local_patches must be a 1-D [n_images] tensor with one count per image of pixel_values "
            f"({n_images} images), got shape {tuple(num_local_patches.shape)}"
        )
    crops = [int(c) for c in num_local_patches.tolist()]
    if any(c < 0 for c in crops):
        raise ValueError(f"num_local_patches {crops} must be non-negative crop counts")
    out["num_local_patches"] = [num_local_patches[a:b] for a, b in image_bounds]
    if pixel_values_local is None:
        if sum(crops):
            raise ValueError(f"num_local_patches sums to {sum(crops)} but pixel_values_local was not given")
        return out
    if pixel_values_local.shape[0] != sum(crops):
        raise ValueError(
            f"pixel_values_local has {pixel_values_local.shape[0]} crops but num_local_patches sums to {sum(crops)}"
        )
    offsets = _row_offsets(crops)
    out["pixel_values_local"] = [pixel_values_local[offsets[a] : offsets[b]] for a, b in image_bounds]
    return out
