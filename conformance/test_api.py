"""The implementation's documented names and signatures, one case per documented module.

Compares the implementation's modules with the API pages (``fixtures/api/documented_api.json``):
missing names; documented parameters renamed, reordered, keyword-only or positional-only; undocumented
parameters without a default. Runs once per run, whatever ``--model`` selects.
"""

import pytest

from conformance import api_check, impl
from conformance.checks import CheckFailure

CHECK = "api"


@pytest.mark.vlmspec_cell(model="(implementation)", check=CHECK)
@pytest.mark.parametrize("case", impl.DOCUMENTED, ids=list(impl.DOCUMENTED))
def test_api(case):
    problems = api_check.check(case)
    if problems:
        raise CheckFailure(
            f"[{impl.active()} | documented module {case} | check {CHECK}] {len(problems)} deviation(s) from the "
            f"documented API:\n" + "\n".join(f"  - {p}" for p in problems)
        )
