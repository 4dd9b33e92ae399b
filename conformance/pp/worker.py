"""The rank side of ``pp_distributed``: what each spawned process runs. It imports only torch, the
implementation selector, the harness split and the documented-call helpers (no pytest, no checks)."""

from __future__ import annotations

import os
import traceback
from datetime import timedelta
from typing import Any

import torch

from .. import impl
from ..loading import load_tiny_model
from .batches import PipelineHandle, PipelineInfo, prepare, staged_media, supervised_loss
from .split import split_stages, untied

DIST_THREADS = 1  # per rank, and for the reference: equal thread counts give equal fp32 reduction order


def rank_main(rank: int, world_size: int, port: int, jobs: Any, results: Any, impl_name: str, timeout_s: float) -> None:
    """Join the gloo group, then run every job file put on ``jobs`` until ``None`` arrives."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    torch.set_num_threads(DIST_THREADS)
    impl.activate(impl_name)
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    try:
        while (job := jobs.get()) is not None:
            try:
                torch.save(run_rank_job(rank, world_size, torch.load(job, weights_only=False)), f"{job}.rank{rank}.pt")
                results.put((rank, ""))
            except Exception:
                results.put((rank, traceback.format_exc(limit=6)))
    finally:
        dist.destroy_process_group()


def run_rank_job(rank: int, world_size: int, job: dict[str, Any]) -> dict[str, Any]:
    """One rank of a pipeline run per schedule: this rank's stage, media staged through the schedule."""
    from torch.distributed import pipelining

    model = untied(load_tiny_model(job["model_id"], job["model_class"]))  # as the reference: see staged.tiny_model
    model.load_state_dict(job["state_dict"])
    n_targets = job["n_targets"]

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return supervised_loss(logits, target, n_targets)

    out: dict[str, Any] = {}
    for schedule_name, n in job["schedules"]:
        module = split_stages(model, world_size, job["layers_per_stage"])[rank]
        stage = pipelining.PipelineStage(module, rank, world_size, torch.device("cpu"))
        schedule = getattr(pipelining, schedule_name)(stage, n, loss_fn=loss_fn, scale_grads=False)
        pp = PipelineHandle(
            PipelineInfo(
                has_first_stage=rank == 0, has_last_stage=rank == world_size - 1, schedule=schedule, stages=[stage]
            )
        )
        prepared = prepare(job["inputs"], job["batch_size"], n)
        losses: list[torch.Tensor] = []
        with staged_media(pp, [module], prepared) as batch:
            kwargs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "input_ids"}
            if rank == 0:
                schedule.step(batch["input_ids"], **kwargs)
            else:
                schedule.step(target=job["labels"], losses=losses, **kwargs)
        result = {"grads": {name: p.grad for name, p in module.named_parameters() if p.grad is not None}}
        if rank == world_size - 1:
            result["loss"] = torch.stack(losses).sum().detach()
        out[schedule_name] = result
    return out
