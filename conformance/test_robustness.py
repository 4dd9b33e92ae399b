"""The bad-input table (conformance/bad_inputs.py) against the implementation, one case per table entry.

Each case calls a documented function by keyword with a bad input and requires a ``ValueError`` or
``TypeError`` naming the sample and the field (or the argument), or the documented handling: an ``ok``
case's batch, or the outcome the function's page permits for that input (a case's ``page_allows``, quoted
in the table); the inputs must be unchanged afterwards. Runs once per run, whatever ``--model`` selects.
"""

import pytest

from conformance import impl, robustness
from conformance.bad_inputs import CASES
from conformance.checks import CheckFailure

CHECK = "robustness"


@pytest.mark.vlmspec_cell(model="(implementation)", check=CHECK)
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_robustness(case, tmp_path):
    problems = robustness.run(case, tmp_path)
    if problems:
        raise CheckFailure(
            f"[{impl.active()} | {case['entry']} | case {case['id']} | check {CHECK}] " + "; ".join(problems)
        )
