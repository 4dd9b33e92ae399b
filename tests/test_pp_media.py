"""Tests of vlmspec.pp_media: media chunk k holds exactly the media of text microbatch k.

Text microbatches are what ``torch.distributed.pipelining`` produces: ``torch.tensor_split(x, n, dim=0)``.
Media rows are tagged with (sample, image) ids so ownership can be checked row by row.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import vlmspec.pp_media as ppm
from vlmspec.pp_media import (
    VLM_PP_MEDIA_INDEX_KEY,
    VLM_PP_MEDIA_KEY,
    _select_image_grid,
    chunk_step3_media,
    chunk_step3p7_media,
    chunk_vlm_media,
    prepare_vlm_media_for_pp,
    stage_vlm_media_for_pp,
    wrap_vlm_collate_for_pp,
)

MERGE = 2  # Qwen-style 2x2 spatial merge: tokens per image = prod(grid) / MERGE**2
IMG, VID = 7, 8  # placeholder token ids
PROPS = settings(max_examples=50, deadline=None)


# --------------------------------------------------------------------------------------------------
# Synthetic collate outputs
# --------------------------------------------------------------------------------------------------
@st.composite
def flat_batches(draw, max_items: int = 3):
    """A Qwen-style batch: flat patches with (sample, image, row) tags, grids, counts and input_ids."""
    batch_size = draw(st.integers(1, 8))
    n_mb = draw(st.integers(1, batch_size))
    counts = draw(st.lists(st.integers(0, max_items), min_size=batch_size, max_size=batch_size))
    grids, rows, seqs = [], [], []
    for sample, count in enumerate(counts):
        toks = []
        for _ in range(count):
            t = draw(st.integers(1, 2))
            h, w = (MERGE * draw(st.integers(1, 3)) for _ in range(2))
            image = len(grids)
            grids.append([t, h, w])
            rows += [[sample, image, r] for r in range(t * h * w)]
            toks += [IMG] * (t * h * w // MERGE**2)
        seqs.append(toks)
    length = max(len(s) for s in seqs) + 1
    input_ids = torch.tensor([s + [0] * (length - len(s)) for s in seqs])
    pixel_values = torch.tensor(rows, dtype=torch.float32).reshape(-1, 3)
    grid = torch.tensor(grids, dtype=torch.long).reshape(-1, 3)
    return batch_size, n_mb, torch.tensor(counts), input_ids, pixel_values, grid


def _text_microbatches(batch_size: int, n_mb: int) -> list[list[int]]:
    return [c.tolist() for c in torch.tensor_split(torch.arange(batch_size), n_mb)]


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------
@PROPS
@given(flat_batches())
def test_flat_layout_chunks_follow_text_microbatches(data):
    batch_size, n_mb, counts, input_ids, pixel_values, grid = data
    pixel_chunks, grid_chunks = chunk_vlm_media(pixel_values, grid, batch_size, n_mb, counts)
    assert len(pixel_chunks) == len(grid_chunks) == n_mb
    # Concatenation reproduces every row and grid exactly once, in order.
    assert torch.equal(torch.cat(pixel_chunks), pixel_values)
    assert torch.equal(torch.cat(grid_chunks), grid)
    for samples, text, pix, g in zip(
        _text_microbatches(batch_size, n_mb), torch.tensor_split(input_ids, n_mb), pixel_chunks, grid_chunks
    ):
        # Chunk k holds exactly the media of the samples in text microbatch k.
        owners = set(pix[:, 0].long().tolist())
        assert owners <= set(samples)
        assert pix.shape[0] == int(g.prod(-1).sum())
        assert g.shape[0] == int(counts[samples].sum())
        # And its placeholder tokens are exactly what the vision tower will produce.
        assert int((text == IMG).sum()) == pix.shape[0] // MERGE**2


@PROPS
@given(flat_batches(), st.sampled_from(["image", "padded", "flat_legacy"]))
def test_leading_dim_layouts(data, layout):
    batch_size, n_mb, counts, _, _, _ = data
    if layout == "flat_legacy":
        counts = torch.ones(batch_size, dtype=torch.long)
    n_images = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(batch_size), counts).float()
    if layout == "image":  # [N, C, H, W]
        pixel_values = owner.view(-1, 1, 1, 1).expand(n_images, 3, 4, 4).clone()
        grid = torch.stack([owner.long(), torch.arange(n_images)], dim=1)  # image_sizes-like [N, 2]
    elif layout == "padded":  # [N, max_patches, D] with image_position_ids-like [N, P, 2]
        pixel_values = owner.view(-1, 1, 1).expand(n_images, 5, 6).clone()
        grid = owner.long().view(-1, 1, 1).expand(n_images, 5, 2).clone()
    else:  # flat, one image per sample, no counts
        grid = torch.tensor([[1, 2, 2]] * n_images)
        pixel_values = owner.repeat_interleave(4).view(-1, 1).expand(-1, 6).clone()
    # Without counts only "one item per sample" is inferable (layouts 1/2/4 with N == batch_size).
    one_each = bool((counts == 1).all())
    given_counts = None if layout == "flat_legacy" or (one_each and layout == "padded") else counts
    pixel_chunks, grid_chunks = chunk_vlm_media(pixel_values, grid, batch_size, n_mb, given_counts)
    assert torch.equal(torch.cat(pixel_chunks), pixel_values)
    assert torch.equal(torch.cat(grid_chunks), grid)
    for samples, pix in zip(_text_microbatches(batch_size, n_mb), pixel_chunks):
        expected = torch.repeat_interleave(torch.tensor(samples, dtype=torch.long), counts[samples])
        got = pix.flatten(1)[:, 0].long()
        if layout == "flat_legacy":
            got = got[::4]
        assert torch.equal(got, expected)


@PROPS
@given(flat_batches(), flat_batches(max_items=2))
def test_prepare_chunks_images_and_videos_by_the_same_rule(images, videos):
    batch_size, n_mb, counts, input_ids, pixel_values, grid = images
    # Re-draw videos for the same batch size by truncating/padding the second draw's counts.
    _, _, v_counts_raw, _, _, _ = videos
    v_counts = torch.zeros(batch_size, dtype=torch.long)
    v_counts[: min(batch_size, len(v_counts_raw))] = v_counts_raw[:batch_size]
    v_grid = torch.tensor([[2, 2, 2]] * int(v_counts.sum()), dtype=torch.long).reshape(-1, 3)
    v_owner = torch.repeat_interleave(torch.arange(batch_size), v_counts * 8).float()
    pixel_values_videos = v_owner.view(-1, 1).expand(-1, 4).clone()
    batch = {
        "input_ids": input_ids,
        "labels": input_ids.clone(),
        "pixel_values": pixel_values,
        "image_grid_thw": grid,
        "n_images_per_sample": counts,
        "pixel_values_videos": pixel_values_videos,
        "video_grid_thw": v_grid,
        "second_per_grid_ts": torch.arange(int(v_counts.sum()), dtype=torch.float32),
        "n_videos_per_sample": v_counts,
    }
    snapshot = {k: v.clone() for k, v in batch.items()}
    out = prepare_vlm_media_for_pp(batch, batch_size, n_mb)

    assert out is not batch and batch.keys() == snapshot.keys()
    assert all(torch.equal(batch[k], snapshot[k]) for k in batch)  # input not mutated
    assert set(out) == {"input_ids", "labels", VLM_PP_MEDIA_KEY, VLM_PP_MEDIA_INDEX_KEY}
    chunks = out[VLM_PP_MEDIA_KEY]
    assert len(chunks) == n_mb
    index_chunks = torch.tensor_split(out[VLM_PP_MEDIA_INDEX_KEY], n_mb)
    for k, (samples, chunk, idx) in enumerate(zip(_text_microbatches(batch_size, n_mb), chunks, index_chunks)):
        assert torch.equal(idx, torch.full((len(samples),), k))
        assert torch.equal(chunk["n_images_per_sample"], counts[samples])
        assert torch.equal(chunk["n_videos_per_sample"], v_counts[samples])
        assert set(chunk["pixel_values"][:, 0].long().tolist()) <= set(samples)
        v_expected = torch.repeat_interleave(torch.tensor(samples, dtype=torch.long), v_counts[samples] * 8)
        assert torch.equal(chunk["pixel_values_videos"][:, 0].long(), v_expected)
        assert chunk["video_grid_thw"].shape[0] == chunk["second_per_grid_ts"].shape[0] == int(v_counts[samples].sum())
    for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        assert torch.equal(torch.cat([c[key] for c in chunks]), batch[key]), key


@PROPS
@given(
    st.integers(1, 8).flatmap(
        lambda b: st.tuples(st.just(b), st.integers(1, b), st.lists(st.integers(0, 3), min_size=b, max_size=b))
    )
)
def test_step3_chunks(args):
    batch_size, n_mb, patches = args
    num_patches = torch.tensor(patches)
    owner = torch.repeat_interleave(torch.arange(batch_size), num_patches).float()
    pixel_values = torch.arange(batch_size, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    patch_pixel_values = owner.view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    newline = owner.long()
    out = chunk_step3_media(pixel_values, batch_size, n_mb, num_patches, patch_pixel_values, newline)
    assert set(out) == {"pixel_values", "num_patches", "patch_pixel_values", "patch_newline_mask"}
    for k, samples in enumerate(_text_microbatches(batch_size, n_mb)):
        assert out["pixel_values"][k][:, 0, 0, 0].long().tolist() == samples
        assert out["num_patches"][k].tolist() == [patches[s] for s in samples]
        expected = [s for s in samples for _ in range(patches[s])]
        assert out["patch_pixel_values"][k][:, 0, 0, 0].long().tolist() == expected
        assert out["patch_newline_mask"][k].tolist() == expected


@st.composite
def step3p7_batches(draw):
    """Step3p7: per sample 0..2 images, per image 0..3 local crops; rows tagged with their (sample, image)."""
    batch_size = draw(st.integers(1, 8))
    n_mb = draw(st.integers(1, batch_size))
    images = draw(st.lists(st.integers(0, 2), min_size=batch_size, max_size=batch_size))
    owners = [s for s, c in enumerate(images) for _ in range(c)]
    crops = draw(st.lists(st.integers(0, 3), min_size=len(owners), max_size=len(owners)))
    return batch_size, n_mb, images, owners, crops


@PROPS
@given(step3p7_batches())
def test_step3p7_chunks_crops_follow_their_images(args):
    batch_size, n_mb, images, owners, crops = args
    n_images = len(owners)
    global_tag = torch.tensor([[s, i] for i, s in enumerate(owners)], dtype=torch.float32).reshape(-1, 2)
    pixel_values = global_tag.view(-1, 2, 1, 1).expand(-1, 2, 4, 4)
    crop_tag = torch.tensor(
        [[owners[i], i] for i, c in enumerate(crops) for _ in range(c)], dtype=torch.float32
    ).reshape(-1, 2)
    local = crop_tag.view(-1, 2, 1, 1).expand(-1, 2, 2, 2)
    counts, num_local = torch.tensor(images), torch.tensor(crops, dtype=torch.long)
    out = chunk_step3p7_media(pixel_values, batch_size, n_mb, counts, num_local, local)
    assert set(out) == {"pixel_values", "n_images_per_sample", "num_local_patches", "pixel_values_local"}
    for k, samples in enumerate(_text_microbatches(batch_size, n_mb)):
        mine = [i for i in range(n_images) if owners[i] in samples]
        assert out["pixel_values"][k][:, :, 0, 0].tolist() == [[owners[i], i] for i in mine]
        assert out["n_images_per_sample"][k].tolist() == [images[s] for s in samples]
        assert out["num_local_patches"][k].tolist() == [crops[i] for i in mine]
        assert out["pixel_values_local"][k][:, :, 0, 0].tolist() == [
            [owners[i], i] for i in mine for _ in range(crops[i])
        ]
    # prepare_vlm_media_for_pp routes the Step3p7 layout here and removes the raw tensors from the batch
    batch = {
        "input_ids": torch.zeros(batch_size, 3, dtype=torch.long),
        "pixel_values": pixel_values,
        "pixel_values_local": local,
        "num_local_patches": num_local,
        "n_images_per_sample": counts,
    }
    prepared = prepare_vlm_media_for_pp(batch, batch_size, n_mb)
    assert set(prepared) == {"input_ids", VLM_PP_MEDIA_KEY, VLM_PP_MEDIA_INDEX_KEY}
    for k, chunk in enumerate(prepared[VLM_PP_MEDIA_KEY]):
        for key in out:
            assert torch.equal(chunk[key], out[key][k]), key


def test_step3p7_errors_name_the_field():
    pixels = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="n_images_per_sample"):
        chunk_step3p7_media(
            pixels, 3, 1, num_local_patches=torch.tensor([0, 1]), pixel_values_local=torch.zeros(1, 3, 2, 2)
        )
    with pytest.raises(ValueError, match="num_local_patches"):
        chunk_step3p7_media(pixels, 2, 1, pixel_values_local=torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="num_local_patches.*one count per image"):
        chunk_step3p7_media(
            pixels, 2, 1, num_local_patches=torch.tensor([1]), pixel_values_local=torch.zeros(1, 3, 2, 2)
        )
    with pytest.raises(ValueError, match="pixel_values_local has 2 crops.*sums to 1"):
        chunk_step3p7_media(
            pixels, 2, 1, num_local_patches=torch.tensor([0, 1]), pixel_values_local=torch.zeros(2, 3, 2, 2)
        )


# --------------------------------------------------------------------------------------------------
# Errors say why and what to pass
# --------------------------------------------------------------------------------------------------
def test_ambiguous_flat_layout_requires_counts():
    grid = torch.tensor([[1, 2, 2]] * 3)
    with pytest.raises(ValueError, match="n_images_per_sample"):
        chunk_vlm_media(torch.zeros(12, 4), grid, 2, 2)


@pytest.mark.parametrize("n_mb", [0, -1, 3])
def test_bad_microbatch_count(n_mb):
    with pytest.raises(ValueError, match="n_microbatches"):
        chunk_vlm_media(torch.zeros(2, 3, 4, 4), None, 2, n_mb)


def test_grid_rows_must_match_pixel_rows():
    with pytest.raises(ValueError, match="image_grid.*rows"):
        chunk_vlm_media(torch.zeros(10, 4), torch.tensor([[1, 2, 2], [1, 2, 2]]), 2, 1, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="image_grid"):
        chunk_vlm_media(torch.zeros(8, 4), None, 2, 1, torch.tensor([1, 1]))


def test_count_errors_name_field_and_sample():
    grid = torch.tensor([[1, 2, 2]] * 2)
    with pytest.raises(ValueError, match="sums to 3"):
        chunk_vlm_media(torch.zeros(8, 4), grid, 2, 1, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"n_images_per_sample\[1\].*sample 1"):
        chunk_vlm_media(torch.zeros(8, 4), grid, 2, 1, torch.tensor([3, -1]))
    with pytest.raises(ValueError, match="batch_size=3"):
        chunk_vlm_media(torch.zeros(8, 4), grid, 3, 1, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="n_videos_per_sample"):
        prepare_vlm_media_for_pp(
            {"pixel_values_videos": torch.zeros(16, 4), "video_grid_thw": torch.tensor([[2, 2, 2]] * 2)}, 3, 1
        )
    with pytest.raises(ValueError, match="num_patches"):
        chunk_step3_media(torch.zeros(2, 3, 2, 2), 2, 1, patch_pixel_values=torch.zeros(3, 3, 2, 2))
    with pytest.raises(ValueError, match="one full image per sample"):
        chunk_step3_media(torch.zeros(3, 3, 2, 2), 2, 1)


# --------------------------------------------------------------------------------------------------
# prepare / stage / wrap
# --------------------------------------------------------------------------------------------------
def test_prepare_without_media_is_a_copy():
    batch = {"input_ids": torch.ones(3, 4, dtype=torch.long)}
    out = prepare_vlm_media_for_pp(batch, 3, 2)
    assert out == batch and out is not batch and VLM_PP_MEDIA_KEY not in out


def test_prepare_gemma4_style_padded_images_with_position_ids():
    pixel_values = torch.arange(3, dtype=torch.float32).view(3, 1, 1).expand(3, 9, 4)
    position_ids = torch.arange(3).view(3, 1, 1).expand(3, 9, 2)
    batch = {
        "input_ids": torch.zeros(3, 5, dtype=torch.long),
        "pixel_values": pixel_values,
        "image_position_ids": position_ids,
    }
    chunks = prepare_vlm_media_for_pp(batch, 3, 2)[VLM_PP_MEDIA_KEY]
    assert [c["pixel_values"][:, 0, 0].tolist() for c in chunks] == [[0.0, 1.0], [2.0]]
    assert [c["image_position_ids"][:, 0, 0].tolist() for c in chunks] == [[0, 1], [2]]


def test_prepare_gemma4_style_videos_split_by_frames():
    # 3 samples with 1, 0, 2 videos of 2, -, (1, 3) frames; frames of all videos concatenated on dim 0.
    frames = torch.tensor([2, 1, 3])
    owner = torch.tensor([0, 0, 2, 2, 2, 2], dtype=torch.float32)
    batch = {
        "input_ids": torch.zeros(3, 5, dtype=torch.long),
        "pixel_values_videos": owner.view(-1, 1, 1).expand(6, 9, 4),
        "video_position_ids": owner.long().view(-1, 1, 1).expand(6, 9, 2),
        "num_frames_per_video": frames,
        "n_videos_per_sample": torch.tensor([1, 0, 2]),
    }
    chunks = prepare_vlm_media_for_pp(batch, 3, 2)[VLM_PP_MEDIA_KEY]  # samples [0, 1] and [2]
    assert [c["pixel_values_videos"][:, 0, 0].tolist() for c in chunks] == [[0.0, 0.0], [2.0] * 4]
    assert [c["video_position_ids"].shape[0] for c in chunks] == [2, 4]
    assert [c["num_frames_per_video"].tolist() for c in chunks] == [[2], [1, 3]]
    with pytest.raises(ValueError, match="num_frames_per_video"):
        prepare_vlm_media_for_pp({**batch, "num_frames_per_video": torch.tensor([2, 1, 2])}, 3, 2)


def test_stage_attaches_chunks_to_first_stage_only():
    batch = prepare_vlm_media_for_pp(
        {"input_ids": torch.zeros(4, 3, dtype=torch.long), "pixel_values": torch.randn(4, 3, 2, 2)}, 4, 2
    )
    first, other = nn.Linear(1, 1), nn.Linear(1, 1)
    out = stage_vlm_media_for_pp(None, [first, other], batch)
    assert VLM_PP_MEDIA_KEY not in out and VLM_PP_MEDIA_KEY in batch
    assert first._vlm_media_chunks == batch[VLM_PP_MEDIA_KEY] and first._vlm_chunk_idx == 0
    assert [p.shape[0] for p in first._vlm_pixel_values_chunks] == [2, 2]
    assert not hasattr(other, "_vlm_media_chunks")

    class Info:
        has_first_stage = False

    class PP:
        info = Info()

    late = nn.Linear(1, 1)
    stage_vlm_media_for_pp(PP(), [late], batch)
    assert not hasattr(late, "_vlm_media_chunks")
    # A text-only step clears the previous step's media.
    stage_vlm_media_for_pp(None, [first], {"input_ids": torch.zeros(4, 3)})
    assert first._vlm_media_chunks == []


def test_wrap_collate():
    def collate(examples):
        n = len(examples)
        return {"input_ids": torch.zeros(n, 3, dtype=torch.long), "pixel_values": torch.randn(n, 3, 2, 2)}

    wrapped = wrap_vlm_collate_for_pp(collate, 2)
    assert wrapped.__name__ == "collate"
    out = wrapped([{}] * 3)
    assert "pixel_values" not in out
    assert [c["pixel_values"].shape[0] for c in out[VLM_PP_MEDIA_KEY]] == [2, 1]
    with pytest.raises(ValueError, match="n_microbatches"):
        wrap_vlm_collate_for_pp(collate, 0)


def test_select_image_grid_and_constants():
    a, b, c, d = (torch.full((1, 2), i) for i in range(4))
    assert _select_image_grid(a, b, c, d) is a
    assert _select_image_grid(None, b, c, d) is b
    assert _select_image_grid(None, None, c, d) is c
    assert _select_image_grid(None, None, None, d) is d
    assert _select_image_grid(None, None, None, None) is None
    assert ppm.VLM_PP_MEDIA_KEY == "_vlm_pp_media_chunks"
    assert ppm._VLM_MEDIA_KEYS[:4] == ("pixel_values", "patch_pixel_values", "num_patches", "patch_newline_mask")
    assert ppm._VLM_MEDIA_KEYS[4].startswith("ima")
    assert ppm.__all__[:3] == ["VLM_PP_MEDIA_KEY", "chunk_vlm_media", "prepare_vlm_media_for_pp"]
    assert ppm.__all__[3].startswith("stage_vlm_m")


@PROPS
@given(flat_batches())
def test_patches_kept_as_images_chunk_like_flat_patches(data):
    """Kimi-K2.5 keeps its patches as images, ``[total_patches, C, p, p]``: same rows, same chunks."""
    batch_size, n_mb, counts, _, pixel_values, grid = data
    as_images = pixel_values[:, :, None, None].expand(-1, -1, 2, 2).contiguous()
    flat_chunks, flat_grids = chunk_vlm_media(pixel_values, grid, batch_size, n_mb, counts)
    image_chunks, image_grids = chunk_vlm_media(as_images, grid, batch_size, n_mb, counts)
    for flat, img, g1, g2 in zip(flat_chunks, image_chunks, flat_grids, image_grids):
        assert torch.equal(img[:, :, 0, 0], flat) and torch.equal(g1, g2)


def test_phi4_image_stream_chunks_per_image_rows():
    """Phi-4-multimodal names its image tensors differently: image_pixel_values [n_images, crops, C, H, W],
    image_sizes [n_images, 2], image_attention_mask [n_images, crops, h, w], one row per image."""
    pixels = torch.arange(3 * 2 * 3 * 4 * 4, dtype=torch.float32).reshape(3, 2, 3, 4, 4)
    batch = {
        "input_ids": torch.ones(3, 5, dtype=torch.long),
        "image_pixel_values": pixels,
        "image_sizes": torch.tensor([[448, 448], [448, 896], [448, 448]]),
        "image_attention_mask": torch.ones(3, 2, 2, 2),
        "n_images_per_sample": torch.tensor([1, 0, 2]),
    }
    out = prepare_vlm_media_for_pp(batch, 3, 2)
    assert not {"image_pixel_values", "image_sizes", "image_attention_mask", "n_images_per_sample"} & set(out)
    first, second = out[VLM_PP_MEDIA_KEY]
    assert torch.equal(first["image_pixel_values"], pixels[:1]) and torch.equal(
        second["image_pixel_values"], pixels[1:]
    )
    assert first["image_sizes"].tolist() == [[448, 448]] and second["image_attention_mask"].shape == (2, 2, 2, 2)
    assert first["n_images_per_sample"].tolist() == [1, 0] and second["n_images_per_sample"].tolist() == [2]


@st.composite
def audio_batches(draw):
    """Audio clips tagged with their sample (Qwen3-Omni / Gemma 4 / Phi-4 key names), with or without images."""
    batch_size = draw(st.integers(1, 6))
    n_mb = draw(st.integers(1, batch_size))
    counts = draw(st.lists(st.integers(0, 2), min_size=batch_size, max_size=batch_size))
    feature_key, mask_key = draw(
        st.sampled_from(
            [
                ("input_features", "feature_attention_mask"),
                ("input_features", "input_features_mask"),
                ("audio_input_features", "audio_attention_mask"),
            ]
        )
    )
    owner = torch.repeat_interleave(torch.arange(batch_size), torch.tensor(counts))
    n_clips = owner.numel()
    return (
        batch_size,
        n_mb,
        torch.tensor(counts),
        {
            "input_ids": torch.ones(batch_size, 4, dtype=torch.long),
            feature_key: owner.float().view(-1, 1, 1).expand(n_clips, 5, 3).clone(),
            mask_key: owner.view(-1, 1).expand(n_clips, 5).clone(),
            "n_audios_per_sample": torch.tensor(counts),
        },
    )


@PROPS
@given(audio_batches(), st.booleans())
def test_audio_clips_follow_their_samples(data, drop_counts):
    """Chunk k holds exactly the clips (features and per-clip masks) of text microbatch k's samples; the
    counts may be left out only when every sample owns one clip."""
    batch_size, n_mb, counts, batch = data
    if drop_counts and counts.tolist() == [1] * batch_size:
        del batch["n_audios_per_sample"]
    out = prepare_vlm_media_for_pp(batch, batch_size, n_mb)
    assert set(out) == {"input_ids", VLM_PP_MEDIA_KEY, VLM_PP_MEDIA_INDEX_KEY}
    for samples, chunk in zip(_text_microbatches(batch_size, n_mb), out[VLM_PP_MEDIA_KEY]):
        expected = torch.repeat_interleave(torch.tensor(samples, dtype=torch.long), counts[samples])
        for key, tensor in chunk.items():
            if key == "n_audios_per_sample":
                assert torch.equal(tensor, counts[samples])
            else:
                assert torch.equal(tensor.flatten(1)[:, 0].long(), expected), key


def test_audio_errors_name_the_field():
    feats = torch.zeros(3, 5, 2)
    base = {"input_ids": torch.ones(4, 3, dtype=torch.long), "input_features": feats}
    with pytest.raises(ValueError, match="n_audios_per_sample"):  # 3 clips, 4 samples, no counts
        prepare_vlm_media_for_pp(base, 4, 2)
    with pytest.raises(ValueError, match="sums to 2 but input_features holds 3"):
        prepare_vlm_media_for_pp(dict(base, n_audios_per_sample=torch.tensor([1, 0, 1, 0])), 4, 2)
    with pytest.raises(ValueError, match="feature_attention_mask has 2 rows"):
        prepare_vlm_media_for_pp(
            dict(base, n_audios_per_sample=torch.tensor([1, 0, 1, 1]), feature_attention_mask=torch.ones(2, 5)), 4, 2
        )
    with pytest.raises(ValueError, match="no audio features"):
        prepare_vlm_media_for_pp({"input_ids": base["input_ids"], "input_features_mask": torch.ones(3, 5)}, 4, 2)
    with pytest.raises(ValueError, match="two audio feature tensors"):
        prepare_vlm_media_for_pp(dict(base, audio_input_features=feats, n_audios_per_sample=torch.ones(4)), 4, 2)


def test_frames_per_video_from_per_sample_outputs():
    """Nemotron omni's processor stacks frames [frames, C, H, W] and says nothing else: the per-sample
    collate knows each sample's frames, which are its one video's; PP then keeps them with the sample."""
    from vlmspec.collate.batching import frames_per_video

    frames = lambda n: torch.zeros(n, 3, 4, 4)  # noqa: E731
    samples = [{"pixel_values_videos": frames(8)}, {}, {"pixel_values_videos": frames(4)}]
    assert frames_per_video(samples, [1, 0, 1]).tolist() == [8, 4]
    assert frames_per_video(samples, [2, 0, 1]) is None  # two videos in a sample: the split is unknown
    assert frames_per_video(samples, [1, 1, 1]) is None  # a video without frames
    assert frames_per_video([{"pixel_values_videos": torch.zeros(16, 1176)}], [1]) is None  # patches: grids say
    assert frames_per_video([{"pixel_values_videos": frames(8), "video_grid_thw": torch.ones(1, 3)}], [1]) is None
    batch = {
        "input_ids": torch.zeros(3, 5, dtype=torch.long),
        "pixel_values_videos": frames(12),
        "num_frames_per_video": frames_per_video(samples, [1, 0, 1]),
        "n_videos_per_sample": torch.tensor([1, 0, 1]),
    }
    chunks = prepare_vlm_media_for_pp(batch=dict(batch), batch_size=3, n_microbatches=2)[VLM_PP_MEDIA_KEY]
    assert [c["pixel_values_videos"].shape[0] for c in chunks] == [8, 4]  # samples [0, 1] and [2]
