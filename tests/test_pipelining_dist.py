"""A real ``torch.distributed.pipelining`` run: 2 CPU ranks (gloo), PipelineStage + ScheduleGPipe.

Rank r holds stage r of ``split_hf_model_into_stages``; rank 0 stages the PP media chunks. The merged
last-stage output, the loss and the gradients must equal the unsplit model's. The first ``step`` also
runs torch's dynamic metadata inference (an extra stage-0 forward on microbatch 0), which the media
index tensor must survive.
"""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

try:
    import pipelining_cases as cases
except ImportError:  # tests/ imported as a package
    from tests import pipelining_cases as cases

ATOL = 1e-5
# torch PP preallocates receive buffers from microbatch 0, so text microbatches must have equal shapes:
# 5 microbatches of 1 sample (their media still differ: 0, 1 or 2 images).
N_MICROBATCHES = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _labels(case: cases.Case) -> tuple[torch.Tensor, int]:
    labels = case.batch["input_ids"].roll(-1, dims=1)
    labels = labels.masked_fill(labels >= case.model.config.get_text_config().vocab_size, -100)
    return labels, int((labels != -100).sum())


CASES = ("qwen2_5_vl", "llama")


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1")
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        for case_name in CASES:  # one spawn for all cases: process start-up dominates the run time
            _run_case(rank, world_size, case_name, out_dir)
    finally:
        dist.destroy_process_group()


def _run_case(rank: int, world_size: int, case_name: str, out_dir: str) -> None:
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    from vlmspec.pipelining import split_hf_model_into_stages
    from vlmspec.pp_media import prepare_vlm_media_for_pp, stage_vlm_media_for_pp

    case = cases.BUILDERS[case_name]()
    labels, n_targets = _labels(case)
    stages = split_hf_model_into_stages(case.model, world_size)
    module = stages[rank]
    stage = PipelineStage(module, rank, world_size, torch.device("cpu"))

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum") / n_targets

    schedule = ScheduleGPipe(stage, N_MICROBATCHES, loss_fn=loss_fn, scale_grads=False)
    batch = prepare_vlm_media_for_pp(case.batch, cases.BATCH, N_MICROBATCHES)
    batch = stage_vlm_media_for_pp(None if rank == 0 else _NotFirst(), [module], batch)
    kwargs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "input_ids"}
    if kwargs.get("position_ids") is not None and kwargs["position_ids"].ndim == 3:
        kwargs.pop("position_ids")  # HF layout [3, B, L]; stages use batch-first mrope_position_ids
    losses: list[torch.Tensor] = []
    if rank == 0:
        schedule.step(batch["input_ids"], **kwargs)
    else:
        out = schedule.step(target=labels, losses=losses, **kwargs)
    result = {"grads": {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}}
    if rank == world_size - 1:
        result["logits"] = out.detach()
        result["loss"] = torch.stack(losses).sum().detach()
    torch.save(result, os.path.join(out_dir, f"{case_name}_rank{rank}.pt"))


class _NotFirst:
    has_first_stage = False


@pytest.fixture(scope="module")
def dist_results():
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_worker, args=(2, _free_port(), out_dir), nprocs=2, join=True)
        yield {name: [torch.load(os.path.join(out_dir, f"{name}_rank{r}.pt")) for r in range(2)] for name in CASES}


@pytest.mark.slow
@pytest.mark.parametrize("case_name", CASES)
def test_gpipe_two_ranks_matches_unsplit(case_name, dist_results):
    case = cases.BUILDERS[case_name]()
    labels, n_targets = _labels(case)
    model = case.model
    ref_logits = cases.reference_logits(case)
    ref_loss = nn.functional.cross_entropy(ref_logits.flatten(0, 1), labels.flatten(), reduction="sum") / n_targets
    ref_loss.backward()
    by_name = dict(model.named_parameters(remove_duplicate=False))

    results = dist_results[case_name]

    torch.testing.assert_close(results[1]["logits"], ref_logits.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(results[1]["loss"], ref_loss.detach(), atol=ATOL, rtol=0)
    summed: dict[int, torch.Tensor] = {}
    for res in results:
        for name, grad in res["grads"].items():
            key = id(by_name[name])
            summed[key] = summed.get(key, 0) + grad
    ref_grads = {id(p): p.grad for p in model.parameters() if p.grad is not None}
    assert summed.keys() == ref_grads.keys()
    for key, grad in ref_grads.items():
        torch.testing.assert_close(summed[key], grad, atol=ATOL, rtol=1e-4)
