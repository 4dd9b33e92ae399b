"""Check ``pp_distributed``: a real ``torch.distributed.pipelining`` run on 2 CPU ranks (gloo), one
``PipelineStage`` each from the harness split, ``ScheduleGPipe`` and ``Schedule1F1B``, media prepared and
staged with the implementation's documented functions. Loss and every parameter's gradient must equal a
single-process unsplit model's, accumulated over the same text microbatches."""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import os
import queue
import socket
import tempfile
import time
from typing import Any

import torch
from torch import nn

from .. import impl
from ..checks import IGNORE, CheckFailure, header
from ..fake_checks import model_inputs
from ..registry import FamilySpec
from .batches import collated, fallback_note, microbatch_inputs, stage_inputs, supervised_loss
from .spec import fixture_ids, layers_per_stage, raise_all
from .staged import media_fixtures, skip_if_declared_unsupported, tiny_model, torch_threads
from .worker import DIST_THREADS, rank_main

DIST_RTOL, DIST_ATOL = 1e-5, 4e-5
DIST_SCHEDULES = ("ScheduleGPipe", "Schedule1F1B")
DIST_BATCH = 4  # default; n_microbatches = B (torch PP sizes its receive buffers from microbatch 0: equal shapes)
DIST_TIMEOUT_S = 180


class PipelineGroup:
    """``world_size`` spawned CPU processes in one gloo process group, running pipeline jobs on request.

    Started once and reused: process start-up (importing torch and transformers) dominates a small run.
    A job is a file written by ``torch.save``; every rank runs it and writes ``<job>.rank<r>.pt``. Any
    rank's error or a timeout tears the group down (a peer may be blocked in a receive) and is raised.
    """

    def __init__(self, world_size: int = 2, timeout_s: float = DIST_TIMEOUT_S):
        self.world_size, self.timeout_s = world_size, timeout_s
        self._procs: list[Any] = []

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self._results = ctx.Queue()
        self._jobs = [ctx.Queue() for _ in range(self.world_size)]
        self._procs = [
            ctx.Process(
                target=rank_main,
                args=(r, self.world_size, port, self._jobs[r], self._results, impl.active(), self.timeout_s),
                daemon=True,
            )
            for r in range(self.world_size)
        ]
        for p in self._procs:
            p.start()

    def submit(self, job_path: str) -> None:
        """Hand a job to every rank; collect it with ``wait`` (the caller may work meanwhile)."""
        if not self._procs or not all(p.is_alive() for p in self._procs):
            self.close()
            self._start()
        for q in self._jobs:
            q.put(job_path)

    def wait(self, job_path: str) -> list[dict[str, Any]]:
        """Every rank's result of ``job_path``, in rank order; raises ``RuntimeError`` on an error or timeout."""
        errors, done, deadline = [], set(), time.monotonic() + self.timeout_s
        while len(done) < self.world_size and not errors:
            try:
                rank, error = self._results.get(timeout=1.0)
            except queue.Empty:
                dead = [r for r, p in enumerate(self._procs) if not p.is_alive()]
                if dead or time.monotonic() > deadline:
                    why = f"ranks {dead} exited" if dead else f"timed out after {self.timeout_s:.0f} s"
                    errors.append(f"{why}; ranks {sorted(set(range(self.world_size)) - done)} did not finish")
                    break
                continue
            done.add(rank)
            if error:
                errors.append(f"rank {rank}: {error}")
        if errors:
            self.close()
            raise RuntimeError("\n".join(errors))
        return [torch.load(f"{job_path}.rank{r}.pt", weights_only=False) for r in range(self.world_size)]

    def close(self) -> None:
        for q in getattr(self, "_jobs", []):
            with contextlib.suppress(Exception):
                q.put(None)
        for p in self._procs:
            if p.pid is None:
                continue
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        self._procs = []


def accumulated_reference(spec: FamilySpec, batch: dict[str, torch.Tensor], n: int, n_targets: int):
    """Single process, unsplit HF model, gradients accumulated over the same ``n`` text microbatches.

    Returns ``(loss, model)``; ``model``'s ``.grad`` hold the reference gradients. Accumulating over the
    microbatches (as PP does) rather than one whole-batch backward keeps fp32 summation order comparable:
    on Gemma 3 the whole-batch and 2-microbatch single-process gradients of
    ``multi_modal_projector.mm_input_projection_weight`` (|grad| up to 2.4e3) already differ by 1.2e-3.
    """
    model = copy.deepcopy(tiny_model(spec))
    loss = torch.zeros(())
    for mb in microbatch_inputs(spec, batch, n):
        part = supervised_loss(model(**model_inputs(mb)).logits, mb["labels"], n_targets)
        part.backward()
        loss = loss + part.detach()
    return loss, model


def check_distributed(spec: FamilySpec, group: PipelineGroup) -> None:
    """GPipe and 1F1B on 2 ranks: loss and every parameter's gradient equal the single-process reference."""
    problems = []
    media = media_fixtures(spec)  # a video (or audio) sample in its own microbatch
    batches = [fixture_ids(spec, _batch_size(spec), "distributed_fixtures"), *([media] if media else [])]
    for ids in batches:
        try:
            problems += _distributed_problems(spec, group, ids)
        except CheckFailure as exc:
            problems.append(str(exc))
    skip_if_declared_unsupported(spec, "pp_distributed", problems)
    raise_all(fallback_note(spec) + problems if problems else [], "distributed pipeline mismatch(es)")


def _batch_size(spec: FamilySpec) -> int:
    return len((spec.extra.get("pp") or {}).get("distributed_fixtures") or ()) or DIST_BATCH


def _distributed_problems(spec: FamilySpec, group: PipelineGroup, ids: tuple[str, ...]) -> list[str]:
    batch_size = len(ids)
    n = batch_size  # one sample per microbatch: equal microbatch shapes, and chunks with 0, 1 or 2 images
    batch = collated(spec, ids)
    where = f"{header(spec, '+'.join(ids), 'pp_distributed')} B={batch_size} n={n} K=2"
    labels = batch["labels"]
    n_targets = int((labels != IGNORE).sum())
    job = {
        "model_id": spec.model_id,
        "model_class": spec.model_class,
        "state_dict": tiny_model(spec).state_dict(),
        "inputs": stage_inputs(spec, batch, tiny_model(spec)),
        "labels": labels,
        "n_targets": n_targets,
        "batch_size": batch_size,
        "layers_per_stage": layers_per_stage(spec, 2),
        "schedules": [(name, n) for name in DIST_SCHEDULES],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "job.pt")
        torch.save(job, path)
        group.submit(path)
        with torch_threads(DIST_THREADS):  # thread count changes fp32 reduction order in matmul backward
            ref_loss, model = accumulated_reference(spec, batch, n, n_targets)
        try:
            ranks = group.wait(path)
        except RuntimeError as exc:
            return [f"{where} the pipeline run failed:\n{exc}"]
    problems = []
    for schedule_name in DIST_SCHEDULES:
        label = f"{where} {schedule_name}:"
        loss = ranks[-1][schedule_name]["loss"]
        if not torch.allclose(loss, ref_loss, rtol=DIST_RTOL, atol=DIST_ATOL):
            problems.append(f"{label} loss {float(loss):.8f} vs single-process {float(ref_loss):.8f}")
        problems += _gradient_problems(label, model, [rank[schedule_name]["grads"] for rank in ranks])
    return problems


def _gradient_problems(label: str, model: nn.Module, stage_grads: list[dict[str, torch.Tensor]]) -> list[str]:
    """Compare per-stage gradients (by parameter name) with ``model``'s; tied weights' copies add up."""
    by_name = dict(model.named_parameters(remove_duplicate=False))
    names = {id(p): name for name, p in by_name.items()}
    reference = {id(p): p.grad for p in model.parameters() if p.grad is not None}
    summed: dict[int, torch.Tensor] = {}
    for grads in stage_grads:
        for name, grad in grads.items():
            key = id(by_name[name])
            summed[key] = summed[key] + grad if key in summed else grad
    problems = [
        f"{label} {names[key]} has a gradient only in {'the reference' if key in reference else 'the pipeline'}"
        for key in sorted(set(reference) ^ set(summed), key=lambda k: names[k])
    ]
    for key in sorted(set(reference) & set(summed), key=lambda k: names[k]):
        got, want = summed[key], reference[key]
        if not torch.allclose(got, want, rtol=DIST_RTOL, atol=DIST_ATOL):
            problems.append(
                f"{label} gradient of {names[key]}: max |Δ| = {float((got - want).abs().max()):.3e} "
                f"(|grad| max {float(want.abs().max()):.3e}; rtol {DIST_RTOL:g}, atol {DIST_ATOL:g})"
            )
    return problems
