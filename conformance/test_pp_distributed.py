"""A real ``torch.distributed.pipelining`` run: 2 CPU processes on gloo, one ``PipelineStage`` each
(the harness split in ``conformance/pp/split.py``), ``ScheduleGPipe`` (n=2) and ``Schedule1F1B`` (n=4) on B=4 real
fixture conversations, media staged through ``stage_vlm_media_for_pp`` with a PP handle whose ``info`` names the schedule and this rank's stage.
Loss and every parameter's gradient must equal the single-process unsplit model's (rtol 1e-5, atol 4e-5).

The two ranks are started once per test process and reused for every family (process start-up is
most of a small run's cost). Marked ``slow``: ``./dev test`` leaves it out, ``./dev slow`` (CI) and a plain
``pytest conformance`` run it.
"""

import pytest

from conformance.pp.distributed import PipelineGroup, check_distributed

CHECK = "pp_distributed"
# slow: two spawned ranks per test process and a pipelined run per model (about a fifth of the suite's
# CPU time); `./dev test` leaves it to CI's `./dev slow` step, a plain `pytest conformance` runs it.
pytestmark = [pytest.mark.distributed, pytest.mark.slow]


@pytest.fixture(scope="module")
def pipeline_group():
    group = PipelineGroup(world_size=2)
    yield group
    group.close()


def test_pp_distributed(family, pipeline_group):
    check_distributed(family, pipeline_group)
