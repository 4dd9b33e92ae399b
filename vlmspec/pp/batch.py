"""PP media on batches: ``prepare_vlm_media_for_pp`` (collate side), ``stage_vlm_media_for_pp``
(training-loop side) and ``wrap_vlm_collate_for_pp``."""

from __future__ import annotations

import functools
from collections.abc import Callable, MutableMapping
from typing import Any

import torch

from .chunking import (
    _IMAGE_GRID_KEYS,
    _VLM_MEDIA_KEYS,
    AUDIO_CLIP_KEYS,
    AUDIO_FEATURE_KEYS,
    VLM_PP_MEDIA_INDEX_KEY,
    VLM_PP_MEDIA_KEY,
    _as_counts,
    _check_microbatching,
    _item_bounds,
    _resolve_layout,
    _row_offsets,
    _sample_bounds,
    _split_stream,
    chunk_step3_media,
    chunk_step3p7_media,
)


def _chunk_image_stream(batch: MutableMapping[str, Any], batch_size: int, n: int) -> list[dict[str, torch.Tensor]]:
    pixel_values = batch["pixel_values"]
    grids = {k: batch.get(k) for k in _IMAGE_GRID_KEYS if batch.get(k) is not None}
    # Flat layouts need a patch-count grid; prefer the one `_select_image_grid` would choose.
    grid_key = next((k for k in _IMAGE_GRID_KEYS if k in grids), None)
    items, rows = _resolve_layout(
        pixel_values,
        grids.get(grid_key) if grid_key else None,
        batch_size,
        batch.get("n_images_per_sample"),
        pixel_field="pixel_values",
        grid_field=grid_key or "image_grid_thw",
        count_field="n_images_per_sample",
    )
    for key, grid in grids.items():
        if grid.shape[0] != len(rows):
            raise ValueError(f"{key} has {grid.shape[0]} rows but pixel_values holds {len(rows)} images")
    n_images = batch.get("n_images_per_sample")
    counts = ("n_images_per_sample", n_images) if n_images is not None else None
    chunks = _split_stream(pixel_values, grids, items, rows, batch_size, n, counts)
    for c in chunks:
        c["pixel_values"] = c.pop("__pixels__")
    return chunks


_PHI4_IMAGE_KEYS = ("image_sizes", "image_attention_mask")


def _chunk_phi4_image_stream(batch: MutableMapping[str, Any], batch_size: int, n: int) -> list[dict[str, torch.Tensor]]:
    """Phi-4-multimodal: ``image_pixel_values [n_images, crops, C, H, W]`` with ``image_sizes [n_images, 2]``
    and ``image_attention_mask [n_images, crops, h, w]``, one leading row per image."""
    pixels = batch["image_pixel_values"]
    n_images = batch.get("n_images_per_sample")
    items, rows = _resolve_layout(
        pixels,
        None,
        batch_size,
        n_images,
        pixel_field="image_pixel_values",
        grid_field="image_sizes",
        count_field="n_images_per_sample",
    )
    per_image = {k: batch[k] for k in _PHI4_IMAGE_KEYS if batch.get(k) is not None}
    for key, t in per_image.items():
        if t.shape[0] != len(rows):
            raise ValueError(f"{key} has {t.shape[0]} rows but image_pixel_values holds {len(rows)} images")
    counts = ("n_images_per_sample", n_images) if n_images is not None else None
    chunks = _split_stream(pixels, per_image, items, rows, batch_size, n, counts)
    for c in chunks:
        c["image_pixel_values"] = c.pop("__pixels__")
    return chunks


def _items_per_sample(counts: Any, n_items: int, batch_size: int, count_field: str, holder: str) -> list[int]:
    """How many of ``holder``'s ``n_items`` items each sample owns: ``counts`` (long ``[batch_size]``), or one
    each when there are exactly ``batch_size`` items and no counts."""
    if counts is not None:
        items = _as_counts(counts, batch_size, count_field)
    elif n_items == batch_size:
        items = [1] * batch_size
    else:
        raise ValueError(
            f"{holder} holds {n_items} items for batch_size={batch_size} and {count_field} was not given; "
            f"pass {count_field} (long [batch_size]) so each item stays with its sample"
        )
    if sum(items) != n_items:
        raise ValueError(f"{count_field} sums to {sum(items)} but {holder} holds {n_items}")
    return items


def _chunk_video_stream(batch: MutableMapping[str, Any], batch_size: int, n: int) -> list[dict[str, torch.Tensor]]:
    pixel_values_videos = batch["pixel_values_videos"]
    grid = batch.get("video_grid_thw")
    counts = batch.get("n_videos_per_sample")
    frames = batch.get("num_frames_per_video")
    if pixel_values_videos.ndim > 2 and frames is not None:
        # Gemma4-style: frames of all videos concatenated along dim 0; video v owns frames[v] rows.
        n_videos = int(frames.numel())
        rows = [int(f) for f in frames.tolist()]
        if sum(rows) != pixel_values_videos.shape[0]:
            raise ValueError(
                f"num_frames_per_video sums to {sum(rows)} but pixel_values_videos has "
                f"{pixel_values_videos.shape[0]} frames"
            )
        items = _items_per_sample(counts, n_videos, batch_size, "n_videos_per_sample", "pixel_values_videos")
        per_frame = {"video_position_ids": batch.get("video_position_ids")}
    else:
        items, rows = _resolve_layout(
            pixel_values_videos,
            grid,
            batch_size,
            counts,
            pixel_field="pixel_values_videos",
            grid_field="video_grid_thw",
            count_field="n_videos_per_sample",
        )
        per_frame = {}
    per_video = {
        k: batch.get(k)
        for k in ("video_grid_thw", "second_per_grid_ts", "video_second_per_grid", "num_frames_per_video")
    }
    for key, tensor in per_video.items():
        if tensor is not None and tensor.shape[0] != len(rows):
            raise ValueError(f"{key} has {tensor.shape[0]} entries but pixel_values_videos holds {len(rows)} videos")
    count_pair = ("n_videos_per_sample", counts) if counts is not None else None
    chunks = _split_stream(pixel_values_videos, per_video, items, rows, batch_size, n, count_pair)
    offsets = _row_offsets(rows)
    for c, (i0, i1) in zip(chunks, _item_bounds(items, batch_size, n)):
        c["pixel_values_videos"] = c.pop("__pixels__")
        for key, tensor in per_frame.items():
            if tensor is not None:
                c[key] = tensor[offsets[i0] : offsets[i1]]
    return chunks


def _chunk_audio_stream(batch: MutableMapping[str, Any], batch_size: int, n: int) -> list[dict[str, torch.Tensor]]:
    """Audio clips (``input_features`` / ``audio_input_features [n_clips, ...]`` and their per-clip
    metadata) follow their samples: ``n_audios_per_sample`` says how many clips each sample owns."""
    present = [k for k in AUDIO_FEATURE_KEYS if batch.get(k) is not None]
    if len(present) > 1:
        raise ValueError(f"the batch has two audio feature tensors {present}; expected one")
    if not present:
        clip_meta = [k for k in (*AUDIO_CLIP_KEYS, "n_audios_per_sample") if batch.get(k) is not None]
        raise ValueError(
            f"the batch has audio metadata {clip_meta} but no audio features ({' / '.join(AUDIO_FEATURE_KEYS)})"
        )
    key = present[0]
    features = batch[key]
    if not isinstance(features, torch.Tensor) or features.ndim < 2:
        raise ValueError(f"{key} must be a [n_clips, ...] tensor, got {getattr(features, 'shape', type(features))}")
    n_clips = int(features.shape[0])
    counts = batch.get("n_audios_per_sample")
    items = _items_per_sample(counts, n_clips, batch_size, "n_audios_per_sample", key)
    per_clip = {k: batch.get(k) for k in AUDIO_CLIP_KEYS}
    for name, tensor in per_clip.items():
        if tensor is not None and tensor.shape[0] != n_clips:
            raise ValueError(f"{name} has {tensor.shape[0]} rows but {key} holds {n_clips} audio clips")
    count_pair = ("n_audios_per_sample", counts) if counts is not None else None
    chunks = _split_stream(features, per_clip, items, [1] * n_clips, batch_size, n, count_pair)
    for c in chunks:
        c[key] = c.pop("__pixels__")
    return chunks


def _spread(chunks: list[dict[str, torch.Tensor]], per_key: dict[str, list[torch.Tensor]]) -> None:
    """Move ``{key: [chunk_0, ..., chunk_n-1]}`` into the per-microbatch dicts ``chunks``."""
    for key, per_mb in per_key.items():
        for chunk, tensor in zip(chunks, per_mb):
            chunk[key] = tensor


def prepare_vlm_media_for_pp(
    batch: MutableMapping[str, Any],
    batch_size: int,
    n_microbatches: int,
) -> MutableMapping[str, Any]:
    """Move VLM media tensors into pre-chunked PP media storage on the batch.

    This is intended to run from VLM collate/dataloader code when PP is enabled.
    The returned batch no longer carries raw media tensors that PyTorch PP would
    chunk by row incorrectly; instead it carries ``VLM_PP_MEDIA_KEY`` with
    per-microbatch media chunks: ``list[dict[str, Tensor]]`` of length ``n_microbatches``, where dict
    ``k`` holds the model kwargs (``pixel_values``, ``image_grid_thw``, ``pixel_values_videos``, ...,
    plus the per-sample counts) of text microbatch ``k``. It also carries ``VLM_PP_MEDIA_INDEX_KEY``
    (long ``[B]``, the microbatch index of each sample).

    Step3 batches (``patch_pixel_values``/``num_patches``) go through ``chunk_step3_media``; Step3p7
    batches (``pixel_values_local``/``num_local_patches``, see ``chunk_step3p7_media``) keep each image's
    global view, its ``num_local_patches`` entry and its local crops with the image's sample.

    Audio clips (``input_features`` / ``audio_input_features`` with their per-clip masks or sizes) follow
    their samples through ``n_audios_per_sample``, like videos through ``n_videos_per_sample``.

    A batch without media is returned as a shallow copy, unchanged. The input batch is not mutated.
    """
    _check_microbatching(batch_size, n_microbatches)
    if not isinstance(batch, MutableMapping):
        raise TypeError(f"batch must be a dict of tensors, got {type(batch).__name__}")
    input_ids = batch.get("input_ids")
    if isinstance(input_ids, torch.Tensor) and input_ids.shape[0] != batch_size:
        raise ValueError(f"input_ids has {input_ids.shape[0]} rows but batch_size={batch_size}")
    out = type(batch)() if _is_constructible(batch) else {}
    out.update(batch)
    present = [k for k in _VLM_MEDIA_KEYS if batch.get(k) is not None]
    if not present:
        return out

    chunks: list[dict[str, torch.Tensor]] = [{} for _ in range(n_microbatches)]
    is_step3 = batch.get("patch_pixel_values") is not None or batch.get("num_patches") is not None
    is_step3p7 = batch.get("pixel_values_local") is not None or batch.get("num_local_patches") is not None
    if is_step3p7 and batch.get("pixel_values") is not None:
        # Step3p7: global views per image (n_images_per_sample) and local crops per image (num_local_patches)
        step3p7 = chunk_step3p7_media(
            batch["pixel_values"],
            batch_size,
            n_microbatches,
            n_images_per_sample=batch.get("n_images_per_sample"),
            num_local_patches=batch.get("num_local_patches"),
            pixel_values_local=batch.get("pixel_values_local"),
        )
        _spread(chunks, step3p7)
    elif is_step3p7 and (
        batch.get("pixel_values_local") is not None or int(torch.as_tensor(batch["num_local_patches"]).numel())
    ):
        raise ValueError(
            "the batch has pixel_values_local/num_local_patches but no pixel_values; pass the global views"
        )
    elif is_step3:
        step3 = chunk_step3_media(
            batch["pixel_values"],
            batch_size,
            n_microbatches,
            num_patches=batch.get("num_patches"),
            patch_pixel_values=batch.get("patch_pixel_values"),
            patch_newline_mask=batch.get("patch_newline_mask"),
        )
        _spread(chunks, step3)
    elif batch.get("pixel_values") is not None:
        for k, c in enumerate(_chunk_image_stream(batch, batch_size, n_microbatches)):
            chunks[k].update(c)
    elif batch.get("image_pixel_values") is not None:
        for k, c in enumerate(_chunk_phi4_image_stream(batch, batch_size, n_microbatches)):
            chunks[k].update(c)
    elif any(batch.get(k) is not None for k in _IMAGE_GRID_KEYS):
        raise ValueError("the batch has image metadata but no pixel_values; pass pixel_values or drop the metadata")

    if batch.get("pixel_values_videos") is not None:
        for k, c in enumerate(_chunk_video_stream(batch, batch_size, n_microbatches)):
            chunks[k].update(c)
    if any(batch.get(k) is not None for k in (*AUDIO_FEATURE_KEYS, *AUDIO_CLIP_KEYS, "n_audios_per_sample")):
        for k, c in enumerate(_chunk_audio_stream(batch, batch_size, n_microbatches)):
            chunks[k].update(c)

    for key in present:
        del out[key]
    out[VLM_PP_MEDIA_KEY] = chunks
    sizes = torch.tensor([e - s for s, e in _sample_bounds(batch_size, n_microbatches)])
    device = input_ids.device if isinstance(input_ids, torch.Tensor) else None
    out[VLM_PP_MEDIA_INDEX_KEY] = torch.repeat_interleave(torch.arange(n_microbatches), sizes).to(device)
    return out


def _is_constructible(batch: MutableMapping[str, Any]) -> bool:
    try:
        type(batch)()
    except TypeError:
        return False
    return True


def _first_stage_module(pp: Any, model_parts: list[torch.nn.Module]) -> torch.nn.Module | None:
    """The module of this rank that runs PP stage 0, or ``None`` if this rank holds no first stage."""
    if not model_parts:
        return None
    if pp is None:
        return model_parts[0]
    info = getattr(pp, "info", None)
    for holder in (info, pp):
        flag = getattr(holder, "has_first_stage", None)
        if isinstance(flag, bool):
            return model_parts[0] if flag else None
    stages = getattr(pp, "_stages", None) or ([pp._stage] if getattr(pp, "_stage", None) is not None else [])
    for stage in stages:
        if getattr(stage, "is_first", False):
            return getattr(stage, "submod", model_parts[0])
    if stages:
        return None
    return model_parts[0]


def stage_vlm_media_for_pp(
    pp: Any,
    model_parts: list[torch.nn.Module],
    batch: MutableMapping[str, Any],
) -> MutableMapping[str, Any]:
    """Attach dataloader-prepared VLM media chunks to PP stage 0 for one schedule call.

    ``pp`` is the pipeline handle (an object with ``info.has_first_stage`` / ``has_first_stage``, a
    ``torch.distributed.pipelining`` schedule, or ``None`` meaning ``model_parts[0]`` is stage 0).
    On the rank holding stage 0, sets on that module:

    - ``_vlm_media_chunks``: the ``list[dict]`` from ``batch[VLM_PP_MEDIA_KEY]`` (``[]`` if absent),
    - ``_vlm_pixel_values_chunks``: ``[chunk.get("pixel_values")]`` for models that keep their own forward,
    - ``_vlm_chunk_idx = 0``: counter used when ``VLM_PP_MEDIA_INDEX_KEY`` is not passed to the forward.

    Returns a new batch without ``VLM_PP_MEDIA_KEY``, ready for ``schedule.step(**batch)``.
    """
    if not isinstance(batch, MutableMapping):
        raise TypeError(f"batch must be a dict, got {type(batch).__name__}")
    chunks = batch.get(VLM_PP_MEDIA_KEY) or []
    if not isinstance(chunks, (list, tuple)) or not all(isinstance(c, dict) for c in chunks):
        raise TypeError(
            f"batch[{VLM_PP_MEDIA_KEY!r}] must be the list of per-microbatch dicts that "
            f"prepare_vlm_media_for_pp builds, got {chunks!r:.80}"
        )
    module = _first_stage_module(pp, model_parts)
    if module is not None:
        module._vlm_media_chunks = list(chunks)
        module._vlm_pixel_values_chunks = [c.get("pixel_values") for c in chunks]
        module._vlm_chunk_idx = 0
    return {k: v for k, v in batch.items() if k != VLM_PP_MEDIA_KEY}


def wrap_vlm_collate_for_pp(
    collate_fn: Callable[[Any], MutableMapping[str, Any]],
    n_microbatches: int,
) -> Callable[[Any], MutableMapping[str, Any]]:
    """Wrap a VLM collate function so it prepares media tensors for PP.

    The batch size is read from ``input_ids.shape[0]`` of the collated batch (else ``len(examples)``).
    """
    if not callable(collate_fn):
        raise TypeError(f"collate_fn must be callable, got {type(collate_fn).__name__}")
    if not isinstance(n_microbatches, int) or n_microbatches <= 0:
        raise ValueError(f"n_microbatches must be a positive int, got {n_microbatches!r}")

    @functools.wraps(collate_fn)
    def wrapped(examples: Any, *args: Any, **kwargs: Any) -> MutableMapping[str, Any]:
        batch = collate_fn(examples, *args, **kwargs)
        input_ids = batch.get("input_ids")
        batch_size = int(input_ids.shape[0]) if isinstance(input_ids, torch.Tensor) else len(examples)
        return prepare_vlm_media_for_pp(batch, batch_size, n_microbatches)

    return wrapped
