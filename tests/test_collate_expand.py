"""_expand_image_tokens: per-image expansion from grid_thws, count mismatch, inputs untouched."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmspec.collate_fns import _DEFAULT_MERGE_KERNEL, _expand_image_tokens

M = 9  # placeholder id


def test_multiple_images_of_different_sizes():
    ids = torch.tensor([1, M, 2, M, 3, M, 4])
    mask = torch.tensor([1, 1, 1, 1, 1, 0, 0])
    grids = torch.tensor([[1, 4, 4], [1, 6, 2], [1, 2, 8]])  # -> 4, 3, 4 tokens with a 2x2 kernel
    ids0, mask0 = ids.clone(), mask.clone()
    out_ids, out_mask = _expand_image_tokens(ids, mask, grids, M)
    assert _DEFAULT_MERGE_KERNEL == (2, 2)
    assert out_ids.tolist() == [1] + [M] * 4 + [2] + [M] * 3 + [3] + [M] * 4 + [4]
    assert out_mask.tolist() == [1] * 1 + [1] * 4 + [1] + [1] * 3 + [1] + [0] * 4 + [0]
    assert torch.equal(ids, ids0) and torch.equal(mask, mask0)
    one_by_two = _expand_image_tokens(ids, mask, grids, M, merge_kernel_size=(1, 2))[0]
    assert int((one_by_two == M).sum()) == 8 + 6 + 8
    hw_only = _expand_image_tokens(ids, mask, grids[:, 1:], M)[0]
    assert torch.equal(hw_only, out_ids)


@pytest.mark.parametrize("n_grids", [0, 2, 4])
def test_count_mismatch_raises_with_numbers(n_grids):
    ids = torch.tensor([1, M, 2, M, 3, M])
    grids = torch.tensor([[1, 2, 2]] * n_grids, dtype=torch.long).reshape(n_grids, 3)
    with pytest.raises(ValueError, match=rf"3 image placeholder tokens \(id {M}\) .* grid_thws has {n_grids} rows"):
        _expand_image_tokens(ids, torch.ones_like(ids), grids, M)


def test_bad_shapes_and_tiny_grids():
    ids = torch.tensor([1, M])
    with pytest.raises(ValueError, match="smaller than the merge kernel"):
        _expand_image_tokens(ids, torch.ones_like(ids), torch.tensor([[1, 1, 4]]), M)
    with pytest.raises(ValueError, match="1-D"):
        _expand_image_tokens(ids[None], torch.ones_like(ids[None]), torch.tensor([[1, 2, 2]]), M)
    with pytest.raises(ValueError, match="attention_mask shape"):
        _expand_image_tokens(ids, torch.ones(3), torch.tensor([[1, 2, 2]]), M)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 8), st.tuples(st.integers(2, 12), st.integers(2, 12))), max_size=20))
def test_expansion_is_exact(parts):
    """Rebuild the sequence from its parts: text tokens stay, image i becomes (h//2)*(w//2) placeholders."""
    ids, grids, expected = [], [], []
    for part in parts:
        if isinstance(part, tuple):
            h, w = part
            ids.append(M)
            grids.append([1, h, w])
            expected += [M] * ((h // 2) * (w // 2))
        else:
            ids.append(part)
            expected.append(part)
    t = torch.tensor(ids, dtype=torch.long)
    g = torch.tensor(grids, dtype=torch.long).reshape(-1, 3)
    out_ids, out_mask = _expand_image_tokens(t, torch.ones_like(t), g, M)
    assert out_ids.tolist() == expected and out_mask.tolist() == [1] * len(expected)
