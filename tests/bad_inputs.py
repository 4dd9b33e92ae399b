"""vlmspec's bad-input table: the conformance table plus the cases of vlmspec's own helpers.

The table itself lives in ``conformance/bad_inputs.py`` (it judges any implementation through
``--impl``; see that module for the case format). Here it is extended by the cases of vlmspec's
stage splitter, ``split_hf_model_into_stages``: a library helper, not a documented name, so no
conformance check may depend on it. Run by tests/test_bad_inputs.py.
"""

from __future__ import annotations

from conformance.bad_inputs import CASES as CONFORMANCE_CASES
from conformance.bad_inputs import PROCESSORS, call, raises

__all__ = ["CASES", "CONFORMANCE_CASES", "PROCESSORS", "VLMSPEC_ONLY"]

_SPLIT = "pipelining:split_hf_model_into_stages"
_LLAMA = {"$model": "llama"}

VLMSPEC_ONLY: list[dict] = [
    {
        "id": "split_model_without_layers",
        **call(_SPLIT, model={"$model": "linear"}, n_stages=2),
        **raises("ValueError", "layers", "Linear"),
    },
    {"id": "split_not_a_module", **call(_SPLIT, model="model", n_stages=2), **raises("TypeError", "model", "str")},
    {"id": "split_n_stages_0", **call(_SPLIT, model=_LLAMA, n_stages=0), **raises("ValueError", "n_stages", "got 0")},
    {
        "id": "split_n_stages_not_int",
        **call(_SPLIT, model=_LLAMA, n_stages="2"),
        **raises("TypeError", "n_stages", "str"),
    },
    {
        "id": "split_more_stages_than_layers",
        **call(_SPLIT, model=_LLAMA, n_stages=3),
        **raises("ValueError", "n_stages=3", "2 decoder layers"),
    },
    {
        "id": "split_layers_per_stage_wrong_sum",
        **call(_SPLIT, model=_LLAMA, n_stages=2, layers_per_stage=[1, 5]),
        **raises("ValueError", "layers_per_stage", "summing to 2"),
    },
    {
        "id": "split_layers_per_stage_not_ints",
        **call(_SPLIT, model=_LLAMA, n_stages=2, layers_per_stage="ab"),
        **raises("TypeError", "layers_per_stage"),
    },
]

CASES: list[dict] = CONFORMANCE_CASES + VLMSPEC_ONLY
