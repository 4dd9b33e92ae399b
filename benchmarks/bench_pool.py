"""Speed of ``pool`` (vectorized) against a per-row Python loop baseline, same inputs, same run.

usage: python benchmarks/bench_pool.py [--batch 64] [--length 512] [--hidden 2048]
"""

from __future__ import annotations

import argparse
import time

import torch

from vlmspec.models.llama_nemotron_vl import pool


def baseline(h: torch.Tensor, m: torch.Tensor, kind: str) -> torch.Tensor:
    rows = []
    for b in range(h.shape[0]):
        idx = m[b].nonzero().flatten()
        if kind == "avg":
            rows.append(h[b, idx].float().mean(0).to(h.dtype))
        else:  # last
            rows.append(h[b, idx[-1]])
    return torch.stack(rows)


def timeit(fn, repeat: int = 20) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=2048)
    args = ap.parse_args()
    torch.manual_seed(0)
    h = torch.randn(args.batch, args.length, args.hidden)
    lengths = torch.randint(1, args.length + 1, (args.batch,))
    m = (torch.arange(args.length)[None] >= args.length - lengths[:, None]).long()  # left padding
    for kind in ("avg", "last"):
        torch.testing.assert_close(pool(h, m, kind), baseline(h, m, kind), atol=1e-5, rtol=1e-5)
        ours, base = timeit(lambda: pool(h, m, kind)), timeit(lambda: baseline(h, m, kind))
        print(
            f"pool[{kind}] B={args.batch} L={args.length} H={args.hidden}: {ours:.2f} ms "
            f"(baseline per-row loop {base:.2f} ms, x{base / ours:.1f})"
        )


if __name__ == "__main__":
    main()
