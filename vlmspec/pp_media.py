"""Pipeline-parallel (PP) media chunking for VLM batches.

``torch.distributed.pipelining`` splits every batch-dimension input with
``torch.tensor_split(x, n_microbatches, dim=0)``. That is right for text tensors (``input_ids``,
``attention_mask``, ``labels``: ``[B, L]``) but wrong for media tensors, whose leading dimension counts
images, frames or patches rather than samples. This module pre-chunks media so that
**media chunk k holds exactly the media of the samples in text microbatch k**, for every batch size
(divisible by ``n_microbatches`` or not) and every per-sample media count (0, 1 or several).

Conventions used throughout:

- Sample boundaries: microbatch ``k`` holds the samples ``torch.tensor_split(torch.arange(B), n)[k]``,
  i.e. the first ``B % n`` microbatches hold ``ceil(B / n)`` samples and the rest ``floor(B / n)``.
- ``n_images_per_sample`` / ``n_videos_per_sample``: long ``[B]``, how many images / videos each sample
  has, in batch order. Media items are stored in sample order (all of sample 0's, then sample 1's, ...).
- Flat patch layout: ``pixel_values [total_patches, D]``; media item ``i`` owns
  ``prod(grid[i])`` consecutive rows (``grid`` = ``image_grid_thw [n, 3]`` or ``image_grid_hws [n, 2]``).
- Chunks are views into the inputs (nothing is copied or written); batches are never mutated,
  functions return new dicts.
"""

from .pp.batch import prepare_vlm_media_for_pp, stage_vlm_media_for_pp, wrap_vlm_collate_for_pp
from .pp.chunking import (
    _VLM_MEDIA_KEYS,
    VLM_PP_MEDIA_INDEX_KEY,
    VLM_PP_MEDIA_KEY,
    _select_image_grid,
    chunk_step3_media,
    chunk_vlm_media,
)

__all__ = [
    "VLM_PP_MEDIA_KEY",
    "chunk_vlm_media",
    "prepare_vlm_media_for_pp",
    "stage_vlm_media_for_pp",
    "wrap_vlm_collate_for_pp",
]
