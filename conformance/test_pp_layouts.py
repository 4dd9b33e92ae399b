"""The documented PP media chunkers on every layout their page names (``conformance/pp/layouts.py``).

One case per layout (``chunk_vlm_media``'s four, ``chunk_step3_media`` with and without crop patches),
each over every B in 1..5 and n in 1..min(B, 4): chunk k must hold exactly the media of the samples of
``torch.tensor_split`` microbatch k. Synthetic tensors whose values name their sample and image, so a
misplaced row is caught. Runs once per run, whatever ``--model`` selects.
"""

import pytest

from conformance import impl
from conformance.checks import CheckFailure
from conformance.pp.layouts import LAYOUTS, problems

CHECK = "pp_layouts"


@pytest.mark.vlmspec_cell(model="(implementation)", check=CHECK)
@pytest.mark.parametrize("case", LAYOUTS, ids=[layout.id for layout in LAYOUTS])
def test_pp_layouts(case):
    found = problems(case)
    if found:
        raise CheckFailure(
            f"[{impl.active()} | {case.function} layout {case.summary!r} | check {CHECK}] "
            f"{len(found)} cell(s) wrong:\n" + "\n".join(f"  - {p}" for p in found[:12])
        )
