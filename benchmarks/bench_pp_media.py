"""Benchmark: ``chunk_vlm_media`` vs a naive per-sample, per-image Python loop (flat Qwen-VL layout).

Both produce the same chunks (checked); the naive loop slices every image and concatenates, the library
slices one contiguous range per microbatch (views, no copies).

usage: python benchmarks/bench_pp_media.py [--batch 64] [--microbatches 8] [--repeat 50]
"""

from __future__ import annotations

import argparse
import time

import torch

from vlmspec.pp_media import chunk_vlm_media


def make_batch(batch_size: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 4, (batch_size,), generator=gen)
    n_images = int(counts.sum())
    grid = torch.cat(
        [torch.ones(n_images, 1, dtype=torch.long), 2 * torch.randint(4, 17, (n_images, 2), generator=gen)], 1
    )
    pixel_values = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 14 * 14, generator=gen)
    return pixel_values, grid, counts


def naive_chunks(pixel_values, grid, counts, n_microbatches):
    """Per sample, per image: find its rows, slice, concatenate per microbatch."""
    rows = grid.prod(-1).tolist()
    starts = [0]
    for r in rows:
        starts.append(starts[-1] + r)
    image_owner = [s for s, c in enumerate(counts.tolist()) for _ in range(c)]
    pixel_chunks, grid_chunks = [], []
    for samples in torch.tensor_split(torch.arange(len(counts)), n_microbatches):
        pix, grd = [], []
        for sample in samples.tolist():
            for image, owner in enumerate(image_owner):
                if owner == sample:
                    pix.append(pixel_values[starts[image] : starts[image + 1]])
                    grd.append(grid[image : image + 1])
        pixel_chunks.append(torch.cat(pix) if pix else pixel_values[:0])
        grid_chunks.append(torch.cat(grd) if grd else grid[:0])
    return pixel_chunks, grid_chunks


def bench(fn, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--microbatches", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    pixel_values, grid, counts = make_batch(args.batch)
    n = args.microbatches

    ours = chunk_vlm_media(pixel_values, grid, args.batch, n, counts)
    ref = naive_chunks(pixel_values, grid, counts, n)
    assert all(torch.equal(a, b) for a, b in zip(ours[0], ref[0])), "pixel chunks differ"
    assert all(torch.equal(a, b) for a, b in zip(ours[1], ref[1])), "grid chunks differ"

    t_ours = bench(lambda: chunk_vlm_media(pixel_values, grid, args.batch, n, counts), args.repeat)
    t_naive = bench(lambda: naive_chunks(pixel_values, grid, counts, n), args.repeat)
    print(
        f"batch={args.batch} images={int(counts.sum())} patch_rows={pixel_values.shape[0]} "
        f"microbatches={n} ({pixel_values.numel() * 4 / 2**20:.0f} MiB of pixel_values)"
    )
    print(f"chunk_vlm_media       : {t_ours * 1e3:8.3f} ms/call")
    print(f"naive per-sample loop : {t_naive * 1e3:8.3f} ms/call (baseline)")
    print(f"speed-up              : {t_naive / t_ours:8.1f}x")


if __name__ == "__main__":
    main()
