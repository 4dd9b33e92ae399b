"""The ``api`` check's comparison (conformance/api_check.py) on synthetic modules, one per kind of problem,
plus: vlmspec itself has none, and the stored manifest is the documented one."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import types
from pathlib import Path

import pytest

from conformance import api_check, impl

ROOT = Path(__file__).resolve().parents[1]


def _module(**attrs) -> types.ModuleType:
    module = types.ModuleType("synthetic_impl")
    for name, value in attrs.items():
        setattr(module, name, value)
    return module


def _problems(fn, documented: list[str] | None, name: str = "f") -> list[str]:
    return api_check.module_problems(_module(**{name: fn}), {name: documented})


def test_matching_signature_has_no_problem():
    def f(batch, batch_size, n_microbatches=1, extra=None, *args, **options):
        pass

    assert _problems(f, ["batch", "batch_size", "n_microbatches", "args", "kwargs"]) == []


def test_missing_name():
    assert api_check.module_problems(_module(), {"gone": ["x"], "DATA": None}) == [
        "missing: synthetic_impl.DATA",
        "missing: synthetic_impl.gone",
    ]


def test_class_method_resolves_through_attributes_and_self_is_skipped():
    class Model:
        def __init__(self, config):
            pass

        def forward(self, input_ids, attention_mask=None):
            pass

    module = _module(Model=Model)
    documented = {"Model": ["config"], "Model.forward": ["input_ids", "attention_mask"], "Model.absent": ["x"]}
    assert api_check.module_problems(module, documented) == ["missing: synthetic_impl.Model.absent"]


def test_renamed_parameter_suggests_the_close_spelling():
    def f(batch, batch_sz):
        pass

    assert _problems(f, ["batch", "batch_size"]) == [
        "f: documented parameter 'batch_size' has no counterpart (renamed to 'batch_sz'?)"
    ]


def test_renamed_parameter_suggests_the_one_at_the_same_position():
    def f(batch, bs, n_microbatches):
        pass

    assert _problems(f, ["batch", "batch_size", "n_microbatches"]) == [
        "f: documented parameter 'batch_size' has no counterpart (renamed to 'bs'?)"
    ]


def test_dropped_parameter_absorbed_by_kwargs_is_still_a_problem():
    def f(batch, **kwargs):
        pass

    assert _problems(f, ["batch", "batch_size", "kwargs"]) == [
        "f: documented parameter 'batch_size' has no counterpart (only a **kwargs would swallow it)"
    ]


def test_missing_var_keyword():
    def f(config):
        pass

    assert _problems(f, ["config", "kwargs"]) == [
        "f: documented **kwargs has no counterpart: documented extra arguments are rejected"
    ]


def test_reordered_parameters():
    def f(n_microbatches, batch, batch_size):
        pass

    assert _problems(f, ["batch", "batch_size", "n_microbatches"]) == [
        "f: parameters reordered: documented (batch, batch_size, n_microbatches), "
        "implementation (n_microbatches, batch, batch_size)"
    ]


def test_keyword_only_parameters_are_one_problem():
    def f(batch, *, batch_size, n_microbatches):
        pass

    assert _problems(f, ["batch", "batch_size", "n_microbatches"]) == [
        "f: parameters 'batch_size', 'n_microbatches' are keyword-only; the page documents them positional-or-keyword "
        "(a positional call fails)"
    ]


def test_positional_only_parameter():
    def f(batch, /, processor):
        pass

    assert _problems(f, ["batch", "processor"]) == [
        "f: parameter 'batch' is positional-only; the page documents it positional-or-keyword (a keyword call fails)"
    ]


def test_undocumented_parameter_without_default():
    def f(examples, processor, tokenizer):
        pass

    assert _problems(f, ["examples", "processor"]) == [
        "f: undocumented parameter 'tokenizer' has no default: documented calls omit it and fail"
    ]


def test_undocumented_parameter_before_a_documented_one_shifts_positional_calls():
    def f(examples, strict=False, processor=None):
        pass

    assert _problems(f, ["examples", "processor"]) == [
        "f: undocumented parameter 'strict' comes before documented 'processor': a positional call binds to it"
    ]


def test_undocumented_keyword_only_parameter_with_default_is_fine():
    def f(examples, processor, *, strict=False):
        pass

    assert _problems(f, ["examples", "processor"]) == []


def test_documented_callable_that_is_data():
    assert _problems(42, ["x"]) == ["f: documented as a callable (x), found int"]


def test_signature_problems_reads_a_signature_directly():
    sig = inspect.Signature([inspect.Parameter("a", inspect.Parameter.KEYWORD_ONLY)])
    assert api_check.signature_problems("g", ["a"], sig) == [
        "g: parameter 'a' is keyword-only; the page documents it positional-or-keyword (a positional call fails)"
    ]


@pytest.mark.parametrize("documented", impl.DOCUMENTED)
def test_vlmspec_has_no_problem(documented):
    module = importlib.import_module(impl.BUILTIN["vlmspec"][documented])
    assert api_check.module_problems(module, api_check.load_manifest()[documented]) == []


def test_manifest_covers_every_documented_module():
    assert sorted(api_check.load_manifest()) == sorted(impl.DOCUMENTED)


def test_unknown_manifest_module_is_a_load_error(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"datasets.vlm.nope": {}}))
    with pytest.raises(ValueError, match="datasets.vlm.nope"):
        api_check.load_manifest(path)


def test_manifest_hash_matches_provenance():
    digest = hashlib.sha256(api_check.MANIFEST.read_bytes()).hexdigest()
    assert f"`{digest}`" in (api_check.MANIFEST.parent / "PROVENANCE.md").read_text()


def _shared_manifest() -> Path | None:
    candidates = [p / "shared" / "tools" / "api_manifest.json" for p in ROOT.parents]
    candidates.append(Path("/work/shared/tools/api_manifest.json"))
    return next((c for c in candidates if c.is_file()), None)


@pytest.mark.skipif(_shared_manifest() is None, reason="shared/tools/api_manifest.json is not present (clean clone)")
def test_manifest_is_identical_to_the_shared_original():
    assert api_check.MANIFEST.read_bytes() == _shared_manifest().read_bytes()
