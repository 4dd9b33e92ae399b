"""Edges of vlmspec.pp.chunking that the family batches never reach (found by ./dev mutate).

Each test names the behaviour it pins; the mutants it kills are in the comment above it. The layout
contract itself (chunk k = the media of tensor_split microbatch k) is the conformance check
``pp_layouts``; these are the argument handling and the error messages around it.
"""

from __future__ import annotations

import re

import pytest
import torch

from vlmspec.pp.chunking import chunk_step3_media, chunk_step3p7_media, chunk_vlm_media


def names(message: str, *fields: str) -> bool:
    """The message names each field as a whole word (``XXfieldXX`` or ``FIELD`` do not count)."""
    return all(re.search(rf"(?<![A-Za-z0-9_]){re.escape(f)}(?![A-Za-z0-9_])", message) for f in fields)


# _check_microbatching: `or` -> `and`, `<= 0` -> `< 0`
@pytest.mark.parametrize("batch_size", [0, -1, 2.0])
def test_batch_size_must_be_a_positive_int(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        chunk_vlm_media(pixel_values=torch.zeros(2, 3, 4, 4), image_grid=None, batch_size=batch_size, n_microbatches=1)


# _as_counts: a tensor's counts are read as numbers, not 0-d tensors, in the message
def test_negative_count_names_the_value_and_the_sample():
    with pytest.raises(ValueError) as err:
        chunk_vlm_media(
            pixel_values=torch.zeros(3, 6),
            image_grid=torch.tensor([[1, 1, 3]]),
            batch_size=2,
            n_microbatches=1,
            n_images_per_sample=torch.tensor([3, -1]),
        )
    assert "n_images_per_sample[1] = -1 (sample 1)" in str(err.value)


# _as_counts: counts given as a Python sequence (tolist() on a list, list(None))
def test_counts_may_be_a_sequence():
    pixels = torch.arange(12.0).reshape(3, 4)  # two images: 1 row and 2 rows
    grid = torch.tensor([[1, 1, 1], [1, 1, 2]])
    got_pixels, got_grid = chunk_vlm_media(
        pixel_values=pixels, image_grid=grid, batch_size=2, n_microbatches=2, n_images_per_sample=[0, 2]
    )
    assert [p.shape[0] for p in got_pixels] == [0, 3]
    assert torch.equal(got_grid[1], grid)


# _resolve_layout: grid.shape[0] -> shape[1] (a 3-row patch-image batch, grid rows 2)
def test_patch_images_whose_row_count_equals_the_grid_width():
    pixels = torch.arange(3 * 3 * 2 * 2, dtype=torch.float32).reshape(3, 3, 2, 2)  # [total_patches, C, p, p]
    grid = torch.tensor([[1, 1, 1], [1, 1, 2]])  # image 0: 1 patch, image 1: 2 patches
    got, _ = chunk_vlm_media(pixel_values=pixels, image_grid=grid, batch_size=2, n_microbatches=2)
    assert torch.equal(got[0], pixels[:1]) and torch.equal(got[1], pixels[1:])


# _resolve_layout: `ndim > 2` -> `ndim > 3` (patches kept as 3-D images are flat too)
def test_three_dim_patch_images_are_flat():
    pixels = torch.arange(6 * 2 * 2, dtype=torch.float32).reshape(6, 2, 2)
    grid = torch.tensor([[1, 1, 2], [1, 2, 2]])  # 2 + 4 rows
    got, _ = chunk_vlm_media(pixel_values=pixels, image_grid=grid, batch_size=2, n_microbatches=2)
    assert torch.equal(got[0], pixels[:2]) and torch.equal(got[1], pixels[2:])


# chunk_vlm_media: pixel_field / grid_field reach the message (None, "XX...XX", upper case)
def test_flat_layout_without_grid_names_both_fields():
    with pytest.raises(ValueError) as err:
        chunk_vlm_media(pixel_values=torch.zeros(4, 6), image_grid=None, batch_size=2, n_microbatches=1)
    assert names(str(err.value), "pixel_values", "image_grid"), str(err.value)


# chunk_step3_media: the count field's name (None, "XX...XX", upper case)
def test_step3_count_mismatch_names_num_patches():
    with pytest.raises(ValueError) as err:
        chunk_step3_media(
            pixel_values=torch.zeros(2, 3, 4, 4), batch_size=2, n_microbatches=1, num_patches=torch.tensor([1, 1, 1])
        )
    assert names(str(err.value), "num_patches"), str(err.value)


# chunk_step3_media: `continue` -> `break` (a newline mask without patch pixels is still chunked)
def test_step3_newline_mask_without_patch_pixels_is_chunked():
    mask = torch.tensor([True, False, True])
    out = chunk_step3_media(
        pixel_values=torch.zeros(2, 3, 4, 4),
        batch_size=2,
        n_microbatches=2,
        num_patches=torch.tensor([1, 2]),
        patch_newline_mask=mask,
    )
    assert [m.tolist() for m in out["patch_newline_mask"]] == [[True], [False, True]]
    assert "patch_pixel_values" not in out


# chunk_step3p7_media: pixel/grid/count field names reach the messages
def test_step3p7_flat_pixels_name_pixel_values_and_num_local_patches():
    with pytest.raises(ValueError) as err:
        chunk_step3p7_media(pixel_values=torch.zeros(4, 6), batch_size=2, n_microbatches=1)
    assert names(str(err.value), "pixel_values", "num_local_patches"), str(err.value)


def test_step3p7_ambiguous_ownership_names_n_images_per_sample():
    with pytest.raises(ValueError) as err:
        chunk_step3p7_media(pixel_values=torch.zeros(3, 3, 4, 4), batch_size=2, n_microbatches=1)
    assert names(str(err.value), "pixel_values", "n_images_per_sample"), str(err.value)


# chunk_step3p7_media: num_local_patches given as a list is converted (isinstance flipped, None, dtype)
def test_step3p7_local_patch_counts_may_be_a_list():
    local = torch.arange(3.0).reshape(3, 1, 1, 1)
    out = chunk_step3p7_media(
        pixel_values=torch.zeros(2, 3, 4, 4),
        batch_size=2,
        n_microbatches=2,
        num_local_patches=[2, 1],
        pixel_values_local=local,
    )
    assert [c.tolist() for c in out["num_local_patches"]] == [[2], [1]]
    assert out["num_local_patches"][0].dtype == torch.long
    assert torch.equal(out["pixel_values_local"][0], local[:2]) and torch.equal(out["pixel_values_local"][1], local[2:])


# chunk_step3p7_media: `sum(crops)` -> `sum(None)` (zero crops and no local pixels is fine)
def test_step3p7_zero_crops_need_no_local_pixels():
    out = chunk_step3p7_media(
        pixel_values=torch.zeros(2, 3, 4, 4), batch_size=2, n_microbatches=1, num_local_patches=torch.tensor([0, 0])
    )
    assert "pixel_values_local" not in out and out["num_local_patches"][0].tolist() == [0, 0]
    with pytest.raises(ValueError, match="pixel_values_local was not given"):
        chunk_step3p7_media(
            pixel_values=torch.zeros(2, 3, 4, 4), batch_size=2, n_microbatches=1, num_local_patches=torch.tensor([0, 1])
        )


# chunk_step3_media: `patch_newline_mask is not None` -> `is None` (no patches, no counts: just the images)
def test_step3_full_images_alone_need_no_counts():
    pixels = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = chunk_step3_media(pixel_values=pixels, batch_size=2, n_microbatches=2)
    assert set(out) == {"pixel_values"} and torch.equal(out["pixel_values"][1], pixels[1:])


# chunk_step3p7_media: the list is converted to long (dtype dropped)
def test_step3p7_local_patch_counts_become_long():
    out = chunk_step3p7_media(
        pixel_values=torch.zeros(2, 3, 4, 4),
        batch_size=2,
        n_microbatches=1,
        num_local_patches=[1.0, 0.0],
        pixel_values_local=torch.zeros(1, 3, 2, 2),
    )
    assert out["num_local_patches"][0].dtype == torch.long
