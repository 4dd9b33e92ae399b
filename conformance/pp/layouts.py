"""The documented PP media chunkers on every layout their page names, with synthetic tensors.

``pp_chunking`` judges ``prepare_vlm_media_for_pp`` and ``chunk_vlm_media`` on what the registered
families' processors emit, which reaches only some layouts (no registered family emits Step3 media or
``chunk_vlm_media``'s layouts 2 and 4). Here each layout of the page is built directly: per-sample media
with distinct values (every row says which sample, image and row it is), then the same contract —
chunk k holds exactly the media of the samples of ``torch.tensor_split`` microbatch k, in order —
judged for every B in 1..5 and n in 1..min(B, 4), with 0, 1 and 2 images per sample where the layout
allows several.

The expected chunks are built from the per-sample pieces (concatenated per microbatch), never by
calling a chunker.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import impl
from .batches import describe_error
from .spec import GRID

IMAGES_PER_SAMPLE = (1, 0, 2, 1, 2)  # sample i owns IMAGES_PER_SAMPLE[i] images (flat layouts)
PATCHES_PER_SAMPLE = (2, 0, 3, 1, 0)  # Step3 crop patches per sample


@dataclass(frozen=True)
class Layout:
    id: str
    function: str  # the documented pp_media function judged
    summary: str  # the page's words for the layout


LAYOUTS = (
    Layout("vlm_full_image_per_sample", "chunk_vlm_media", "[N, C, H, W] with N == batch_size"),
    Layout("vlm_padded_patches_per_image", "chunk_vlm_media", "[N, max_patches, D] with N == batch_size"),
    Layout("vlm_flat_patches_with_counts", "chunk_vlm_media", "flat patches with n_images_per_sample"),
    Layout("vlm_flat_patches_one_per_sample", "chunk_vlm_media", "flat patches with n_images == batch_size"),
    Layout("step3_full_images_and_patches", "chunk_step3_media", "pixel_values per sample, patches by num_patches"),
    Layout("step3_full_images_only", "chunk_step3_media", "pixel_values per sample, no patches"),
)


def _rows(sample: int, image: int, n: int, width: int) -> torch.Tensor:
    """``[n, width]`` rows whose values name (sample, image, row): any misplaced row is visible."""
    base = torch.arange(n, dtype=torch.float32)[:, None] + 100 * image + 1000 * sample
    return base + torch.arange(width, dtype=torch.float32)[None] / 100


def _microbatches(batch_size: int, n: int) -> list[list[int]]:
    return [t.tolist() for t in torch.tensor_split(torch.arange(batch_size), n)]


def _vlm_case(layout: str, batch_size: int) -> tuple[dict, dict[str, list[torch.Tensor]]]:
    """(keyword arguments, per-sample pieces of the pixels and of the grid)."""
    pixels, grids = [], []
    if layout == "vlm_full_image_per_sample":
        for s in range(batch_size):
            pixels.append(_rows(s, 0, 3 * 4, 4).reshape(1, 3, 4, 4))
            grids.append(torch.tensor([[1, 4, 4]]))
        kwargs = {}
    elif layout == "vlm_padded_patches_per_image":
        for s in range(batch_size):
            pixels.append(_rows(s, 0, 6, 5)[None])  # [1, max_patches=6, D=5]
            grids.append(torch.tensor([[1, 2, 3]]))
        kwargs = {}
    elif layout == "vlm_flat_patches_with_counts":
        counts = [IMAGES_PER_SAMPLE[s] for s in range(batch_size)]
        for s in range(batch_size):
            sizes = [(2, 2), (2, 4)][: counts[s]]
            pixels.append(
                torch.cat([_rows(s, i, h * w, 6) for i, (h, w) in enumerate(sizes)]) if sizes else torch.zeros(0, 6)
            )
            grids.append(torch.tensor([[1, h, w] for h, w in sizes], dtype=torch.long).reshape(-1, 3))
        kwargs = {"n_images_per_sample": torch.tensor(counts)}
    else:  # vlm_flat_patches_one_per_sample: the legacy layout, no counts
        for s in range(batch_size):
            h, w = (2, 2) if s % 2 == 0 else (2, 4)
            pixels.append(_rows(s, 0, h * w, 6))
            grids.append(torch.tensor([[1, h, w]]))
        kwargs = {}
    kwargs = {"pixel_values": torch.cat(pixels), "image_grid": torch.cat(grids), **kwargs}
    return kwargs, {"pixel_values": pixels, "image_grid": grids}


def _step3_case(layout: str, batch_size: int) -> tuple[dict, dict[str, list[torch.Tensor]]]:
    """(keyword arguments, per-sample pieces per returned key)."""
    pieces: dict[str, list[torch.Tensor]] = {
        "pixel_values": [_rows(s, 0, 12, 4).reshape(1, 3, 4, 4) for s in range(batch_size)]
    }
    kwargs = {}
    if layout == "step3_full_images_and_patches":
        counts = [PATCHES_PER_SAMPLE[s] for s in range(batch_size)]
        pieces["num_patches"] = [torch.tensor([c]) for c in counts]
        pieces["patch_pixel_values"] = [_rows(s, 1, 3 * 2 * 2 * c, 1).reshape(c, 3, 2, 2) for s, c in enumerate(counts)]
        pieces["patch_newline_mask"] = [torch.arange(c) % 2 == 0 for c in counts]
        kwargs = {k: torch.cat(v) for k, v in pieces.items() if k != "pixel_values"}
    kwargs["pixel_values"] = torch.cat(pieces["pixel_values"])
    return kwargs, pieces


def _compare(got: torch.Tensor, want: torch.Tensor, what: str) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"{what}: got {type(got).__name__}, expected a tensor"
    if got.shape != want.shape:
        return f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    if not torch.equal(got.to(want.dtype), want):
        return f"{what}: values differ (rows from another sample or image)"
    return None


def problems(layout: Layout) -> list[str]:
    """Every (B, n) cell where the implementation's chunks are not the microbatches' own media."""
    fn = impl.get("pp_media", layout.function)
    out = []
    for batch_size, n in GRID:
        at = f"B={batch_size} n={n}:"
        mbs = _microbatches(batch_size, n)
        vlm = layout.function == "chunk_vlm_media"
        kwargs, pieces = (_vlm_case if vlm else _step3_case)(layout.id, batch_size)
        try:
            result = fn(batch_size=batch_size, n_microbatches=n, **kwargs)
            if vlm:  # (pixel_chunks, grid_chunks)
                result = dict(zip(pieces, result, strict=True))
        except Exception as exc:  # the crash is this cell's evidence
            out.append(f"{at} raised {describe_error(exc)}")
            continue
        # the page names the return type only: the given keys must be there, others are not judged
        if not isinstance(result, dict) or not set(pieces) <= set(result):
            out.append(
                f"{at} returned keys {sorted(result) if isinstance(result, dict) else type(result).__name__}, "
                f"expected at least {sorted(pieces)}"
            )
            continue
        expected = {k: (result[k], v) for k, v in pieces.items()}
        for key, (got_chunks, per_sample) in expected.items():
            if not isinstance(got_chunks, (list, tuple)) or len(got_chunks) != n:
                out.append(
                    f"{at} {key}: {len(got_chunks) if isinstance(got_chunks, (list, tuple)) else type(got_chunks).__name__} "
                    f"chunks, expected {n}"
                )
                continue
            for k, samples in enumerate(mbs):
                want = torch.cat([per_sample[s] for s in samples])
                problem = _compare(got_chunks[k], want, f"{key} chunk {k} (samples {samples})")
                if problem:
                    out.append(f"{at} {problem}")
    return out
