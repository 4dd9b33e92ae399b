"""pytest plugin for the vlmspec conformance suite (registered through the ``pytest11`` entry point).

Options select models (``--model``, ``--family``), list the registry (``--list-models``) and control
network and remote code (``--online``, ``--trust-remote-code``). Tests that request the ``family``
fixture are parametrized over the selected families; tests that request ``case`` over the fixture
corpus. Tests marked ``@pytest.mark.vlmspec_cell(model="(implementation)", check="api")`` are
implementation-level cells (one row, first in the matrix; case id = the ``case`` parameter, else the
item name). The terminal summary shows a per-model table with each model's fixture class.

Expected failures come from :func:`registry.expected_failure_for` (family records and
``fixtures/impls/<impl>.json``) and are strict: a fix upstream turns into XPASS, a FAIL. A case that
fails because a module the implementation needs is not installed becomes a skip whose report outcome
is ``env`` (no verdict, exit status unaffected). Every non-pass case carries its evidence into the
report (:func:`report.format_evidence`).

This module imports only the standard library at import time: it is loaded by every pytest run in
an environment where vlmspec is installed.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

_STATE: dict = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vlmspec", "vlmspec conformance")
    group.addoption(
        "--model",
        action="append",
        default=[],
        metavar="ID",
        help="HF model id to check (repeatable). Default: every registered model with a pack.",
    )
    group.addoption(
        "--family",
        action="append",
        default=[],
        metavar="PREFIX",
        help="select registered models whose family or id starts with PREFIX (e.g. qwen)",
    )
    group.addoption("--list-models", action="store_true", help="print the family registry and exit")
    group.addoption(
        "--impl",
        default="vlmspec",
        metavar="NAME",
        help="implementation under test: vlmspec (default), nemo_automodel, or a module path defining VLMSPEC_IMPL",
    )
    group.addoption("--online", action="store_true", help="allow Hugging Face Hub access (default: HF_HUB_OFFLINE=1)")
    group.addoption(
        "--trust-remote-code",
        action="store_true",
        help="allow processors with remote code (off by default; shown in the report)",
    )
    group.addoption(
        "--conformance-report",
        default="reports",
        metavar="DIR",
        help="directory for conformance-report.json and conformance-report.md",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance(check): a vlmspec conformance check")
    # xdist registers it too; without xdist, --strict-markers must still accept the per-model group mark
    config.addinivalue_line("markers", "xdist_group(name): run on one xdist worker with the rest of its group")
    config.addinivalue_line("markers", "slow: left out of the fast gate (./dev test), run by ./dev slow")
    config.addinivalue_line("markers", "distributed: starts torch.distributed worker processes (gloo, CPU)")
    config.addinivalue_line(
        "markers",
        "vlmspec_cell(model, check): report this test as the matrix cell (model, check); "
        "model '(implementation)' for implementation-level checks (api, robustness)",
    )
    # Offline before anything imports huggingface_hub: it reads HF_HUB_OFFLINE once, at import, and an
    # --impl module (a mutant, a foreign stack) may import it on activation. Set afterwards, a run
    # without HF_HUB_OFFLINE in its environment spent minutes retrying the Hub per processor load.
    if not config.getoption("--online"):
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from . import impl

    try:
        impl.activate(config.getoption("--impl"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if config.getoption("--model") or config.getoption("--family"):
        selected_specs(config)  # resolve now: a bad id is a usage error, not a collection error
    _group_models_per_worker(config)
    _share_cores_among_workers()


def _share_cores_among_workers() -> None:
    """On a pytest-xdist worker, torch gets its share of the cores: with torch's default thread count each,
    ``-n 2`` on two cores runs four compute threads and every forward waits for the other worker's."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        from .pp.staged import fair_threads

        torch.set_num_threads(fair_threads())


def _group_models_per_worker(config: pytest.Config) -> None:
    """Under ``-n N`` with xdist's default ``load`` distribution, distribute by model (``loadgroup``).

    A model's processor and tiny models are loaded once per process (conformance/loading.py caches
    them); spread over both workers, every model was loaded twice. Each suite item carries an
    ``xdist_group`` mark named after its model (pytest_collection_modifyitems). An explicit ``--dist``
    is left alone.
    """
    explicit = any(a == "--dist" or a.startswith("--dist=") for a in config.invocation_params.args)
    if getattr(config.option, "dist", "no") == "load" and not explicit:
        config.option.dist = "loadgroup"


def pytest_sessionstart(session: pytest.Session) -> None:
    forget_implementation_results()


def forget_implementation_results() -> None:
    """Drop what an earlier pytest session in this process computed with an implementation.

    The checks cache per process what the implementation made (collated batches, patched stages, its
    validator's answers) and the processors it was handed (an implementation may keep state on them:
    vlmspec caches derived turn markers on the tokenizer). A second ``pytest.main`` in one process (an
    ``--impl`` comparison, mutmut's forked mutant runs) must judge its own implementation, not reuse the
    first one's results. Oracle references and the tiny models (never patched: stages are deep copies)
    are the harness's own and stay.
    """
    from . import checks, fake_checks, loading
    from .pp import batches, staged

    loading.load_processor.cache_clear()
    for cache in (
        checks._COLLATED,
        batches._BATCHES,
        batches._FALLBACKS,
        staged._STAGES,
        staged._REFUSALS,
        fake_checks._DIAGNOSES,
    ):
        cache.clear()


def pytest_cmdline_main(config: pytest.Config):
    if config.getoption("--list-models"):
        from vlmspec.hub.recipe import PackError, family_folder

        print(f"{'model id':<50} {'family':<10} {'class':<10} {'processor':<26} checks")
        for spec in _registry().values():
            try:
                klass = family_folder(spec.model_id).fixture_class
            except PackError:
                klass = "NO-DATA"
            xf = f"  xfail: {len(spec.expected_failures)}" if spec.expected_failures else ""
            print(
                f"{spec.model_id:<50} {spec.family:<10} {klass:<10} {spec.processor_class:<26} {','.join(spec.checks)}{xf}"
            )
        return 0
    return None


def _registry() -> dict:
    """The family registry and the implementation findings, loaded strictly: a bad record is a usage error."""
    from .registry import load_impl_findings, load_registry

    try:
        load_impl_findings()
        return load_registry()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _has_family_data(model_id: str) -> bool:
    from vlmspec.hub import load_pack
    from vlmspec.hub.recipe import PackError, family_folder

    try:
        return family_folder(model_id).recipe is not None
    except PackError:
        return load_pack(model_id, verify=False) is not None


def selected_specs(config: pytest.Config) -> list:
    if "specs" in _STATE:
        return _STATE["specs"]
    from .derive import derive_record
    from .hub_access import hub_unreachable, unknown_model_message
    from .loading import HUB_MODELS, TRUST_REMOTE_CODE, load_processor
    from .registry import closest_ids

    TRUST_REMOTE_CODE["enabled"] = bool(config.getoption("--trust-remote-code"))
    registry = _registry()
    specs = []
    online = bool(config.getoption("--online"))
    for model_id in config.getoption("--model"):
        if model_id in registry:
            specs.append(registry[model_id])
            if online and not registry[model_id].extra.get("processor_factory"):
                unreachable = hub_unreachable()
                if unreachable is not None:
                    raise pytest.UsageError(f"--model {model_id} --online reads the Hub's files, and {unreachable}")
                HUB_MODELS.add(model_id)  # the Hub's files, not the pack: template changes become golden diffs
                _STATE.setdefault("notes", []).append(
                    f"--model {model_id}: processor from the Hub (--online), "
                    "not the pack; the tiny model stays the pack's"
                )
            continue
        prefixed = [i for i in registry if i.lower().startswith(model_id.lower())]
        if len(prefixed) == 1:
            _STATE.setdefault("notes", []).append(f"--model {model_id} taken as {prefixed[0]} (unambiguous prefix)")
            specs.append(registry[prefixed[0]])
            continue
        if online:
            unreachable = hub_unreachable()
            if unreachable is not None:
                raise pytest.UsageError(f"--model {model_id}: not in the registry, and {unreachable}")
        try:
            processor = load_processor(model_id)
        except Exception as exc:
            raise pytest.UsageError(unknown_model_message(model_id, exc, online, closest_ids(model_id))) from None
        derived = derive_record(model_id, processor, "hub" if online else "cache")
        _STATE.setdefault("notes", []).append(
            f"--model {model_id}: no record; derived from the {'Hub' if online else 'HF cache'} (REAL). Not run: "
            + "; ".join(f"{check} ({why})" for check, why in sorted(derived.not_run.items()))
        )
        specs.append(derived.spec)
    for prefix in config.getoption("--family"):
        hits = [
            s
            for s in registry.values()
            if s.family.lower().startswith(prefix.lower()) or s.model_id.lower().startswith(prefix.lower())
        ]
        if not hits:
            raise pytest.UsageError(
                f"--family {prefix}: no registered model matches (families: "
                f"{', '.join(sorted({s.family for s in registry.values()}))})"
            )
        specs.extend(hits)
    if not config.getoption("--model") and not config.getoption("--family"):
        specs = [s for s in registry.values() if _has_family_data(s.model_id)]
    specs = list({s.model_id: s for s in specs}.values())
    _STATE["specs"] = specs
    return specs


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if "family" not in names:
        return
    check = getattr(metafunc.module, "CHECK", None)
    specs = [v for s in selected_specs(metafunc.config) for v in _variants(s) if check is None or check in v.checks]
    if "case" in names:
        from .corpus import load_corpus

        case_filter = getattr(metafunc.module, "case_filter", lambda case: True)
        # a case runs where the record declares every medium it holds (image, video, audio)
        pairs = [
            (s, c)
            for s in specs
            for c in load_corpus()
            if case_filter(c) and c.media <= set(s.media) and s.runs_case(c.id)
        ]
        metafunc.parametrize(("family", "case"), pairs, ids=[f"{s.label}::{c.id}" for s, c in pairs])
    else:
        metafunc.parametrize("family", specs, ids=[s.label for s in specs])


def _variants(spec):
    """The record and its ``also_collate`` copies; under a framework adapter, one row per model that runs
    the adapter's collate (the record's collates, and their documented text injections, are the
    documented API's, not the framework's)."""
    from . import impl
    from .frameworks import COLLATE_NAME

    if impl.framework() is None:
        return spec.variants()
    return [replace(spec, collate=COLLATE_NAME, variant="", also_collate=())]


def _case_id(item: pytest.Item) -> str:
    """An implementation-level item's case: its ``case`` parameter (its id), else the item's name."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "case" not in callspec.params:
        return item.name
    case = callspec.params["case"]
    if isinstance(getattr(case, "id", None), str):
        return case.id
    return case if isinstance(case, str) else callspec.id


def _cell(item: pytest.Item) -> tuple[str, str, str, str | None, object] | None:
    """``(model label, model id, check, case id, spec or None)`` for a suite item, else None."""
    from .registry import CHECKS, IMPL_CHECKS, IMPL_ROW, closest_check

    marker = item.get_closest_marker("vlmspec_cell")
    if marker is not None:
        model, check = marker.kwargs.get("model", IMPL_ROW), marker.kwargs.get("check")
        if check not in (*CHECKS, *IMPL_CHECKS):
            near = closest_check(str(check))
            raise pytest.UsageError(
                f"{item.nodeid}: vlmspec_cell check {check!r} is not a known check"
                + (f" (did you mean {near!r}?)" if near else "")
            )
        return model, model, check, _case_id(item), None
    callspec = getattr(item, "callspec", None)
    spec = callspec.params.get("family") if callspec else None
    if spec is None or not hasattr(spec, "expected_failures"):
        return None
    case = callspec.params.get("case")
    return spec.label, spec.model_id, getattr(item.module, "CHECK", item.name), getattr(case, "id", None), spec


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: the case that reports a refused pack must run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from . import impl
    from .registry import expected_failure_for

    names = impl.names()
    framework = impl.framework()
    if any(_cell(item) for item in items):
        _registry()  # a bad findings file: a usage error naming it, before any case runs
    refused = _refused_packs(
        {cell[1] for cell in map(_cell, items) if cell is not None and cell[4] is not None and cell[4].registered}
    )
    reported: dict[str, str] = {}
    for item in items:
        cell = _cell(item)
        if cell is None:
            continue
        label, model_id, check, case_id, spec = cell
        item.add_marker(pytest.mark.xdist_group(name=model_id))
        info: dict = {"model": label, "check": check, "case": case_id}
        if model_id in refused:
            # one failure per model carries the pack's message; its other cases would only repeat it
            if model_id in reported:
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"{model_id}: pack refused or unbuildable, reported once "
                        f"on {reported[model_id]}: {refused[model_id].splitlines()[0]}"
                    )
                )
            else:
                reported[model_id] = item.nodeid
                item.stash[_PACK_REFUSED] = refused[model_id]
            item.user_properties.append(("vlmspec", info))
            continue
        skip = spec.skip(check, case_id) if spec is not None else None
        missing = _media_problem(item)
        if skip is not None:
            item.add_marker(pytest.mark.skip(reason=skip.reason))
        elif missing is not None:
            item.add_marker(pytest.mark.skip(reason=missing))
        elif framework is not None:
            # a check or family the framework cannot express is a '—' cell with its reason, not a verdict
            case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
            cannot = framework.check_reason(check) or (
                (
                    framework.family_reason(spec.processor_class)
                    or framework.media_reason(spec.processor_class, getattr(case, "media", frozenset()))
                )
                if spec is not None
                else None
            )
            if cannot is not None:
                item.add_marker(pytest.mark.skip(reason=cannot))
                item.user_properties.append(("vlmspec", info))
                continue
        # a framework's fake_image judges its own dummy image: the family's fake-image findings (about the
        # documented injected image, before the real tokens) do not describe it
        own_dummy = framework is not None and check == "fake_image"
        xf = expected_failure_for(label, model_id, check, case_id, names, family_entries=not own_dummy)
        if xf is not None:
            item.add_marker(pytest.mark.xfail(reason=xf.reason + (f" ({xf.link})" if xf.link else ""), strict=True))
            info["xfail"] = {"reason": xf.reason, "link": xf.link}
        item.user_properties.append(("vlmspec", info))


_PACK_REFUSED = pytest.StashKey[str]()


def _media_problem(item: pytest.Item) -> str | None:
    """Why this machine cannot decode a medium of the item's corpus case (an environment problem), else None."""
    from .media import decoding_problem

    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec else None
    for kind in sorted(getattr(case, "media", ())):
        problem = decoding_problem(kind)
        if problem is not None:
            return problem
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """The one case that reports a model's refused pack fails with the pack's whole message."""
    message = item.stash.get(_PACK_REFUSED, None)
    if message is not None:
        from vlmspec.hub import PackError

        raise PackError(message)


def _refused_packs(model_ids: set[str]) -> dict[str, str]:
    """``{model id: first line of the PackError}`` for the selected models whose pack cannot be built."""
    from vlmspec.hub import PackError

    from .loading import pack_for

    refused = {}
    for model_id in sorted(model_ids):
        try:
            pack_for(model_id)
        except PackError as exc:
            refused[model_id] = str(exc)
    return refused


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Outermost wrapper (after xfail handling): attach evidence, and turn a missing dependency of the
    implementation into a skip marked ``env``: an environment problem is neither pass nor FAIL."""
    report = yield
    if call.excinfo is None or "vlmspec" not in dict(item.user_properties):
        return report
    if not (report.failed or hasattr(report, "wasxfail")):
        return report  # a skip: its reason is the record
    from . import impl
    from .report import format_evidence

    exc = call.excinfo.value
    evidence = format_evidence(exc)
    dependency = impl.missing_dependency(exc)
    if dependency is not None:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), (item.location[1] or 0) + 1, f"Skipped: {dependency.message}")
        if hasattr(report, "wasxfail"):
            del report.wasxfail
        report.user_properties.append(("vlmspec_env", dependency.message))
    elif _is_pack_error(exc) and _PACK_REFUSED not in item.stash:
        # a fixture pack the harness cannot build says nothing about the implementation; the model's
        # own row fails once with the message (see pytest_collection_modifyitems)
        report.outcome = "skipped"
        report.longrepr = (
            str(item.path),
            (item.location[1] or 0) + 1,
            f"Skipped: fixture pack refused or unbuildable: {str(exc).splitlines()[0]}",
        )
        if hasattr(report, "wasxfail"):
            del report.wasxfail
    report.user_properties.append(("vlmspec_evidence", evidence))
    return report


def _is_pack_error(exc: BaseException) -> bool:
    from vlmspec.hub import PackError

    return isinstance(exc, PackError)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    info = props.get("vlmspec")
    if info is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        xfail = info.get("xfail") or {}
        result = {
            "case": info["case"],
            "outcome": "",
            "reason": "",
            "link": "",
            "evidence": props.get("vlmspec_evidence", ""),
        }
        if "vlmspec_env" in props:
            result.update(outcome="env", reason=props["vlmspec_env"])
        elif hasattr(report, "wasxfail"):
            result.update(
                outcome="xfailed" if report.skipped else "xpassed",
                reason=xfail.get("reason", report.wasxfail),
                link=xfail.get("link", ""),
            )
        elif report.failed and xfail and report.when == "call" and "XPASS" in str(report.longrepr):
            # strict xfail that passed: pytest reports a plain failure "[XPASS(strict)] reason"
            result.update(
                outcome="xpassed",
                reason=xfail["reason"],
                link=xfail["link"],
                evidence="XPASS(strict): the case passed although an expected failure is recorded; "
                "if the deviation is fixed, remove the entry",
            )
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            # the harness's own environment (e.g. no FFmpeg for the video fixtures): no verdict, named as such
            result.update(outcome="env" if reason.startswith("environment: ") else "skipped", reason=reason)
        else:
            result.update(outcome=report.outcome if report.when == "call" else "error")
        _STATE.setdefault("outcomes", defaultdict(lambda: defaultdict(list)))[info["model"]][info["check"]].append(
            result
        )


def _fixture_class(model_id: str) -> str:
    from .registry import IMPL_ROW

    if model_id == IMPL_ROW:
        return "—"
    try:
        from .loading import HUB_MODELS, offline, pack_for

        if model_id in HUB_MODELS:
            return "REAL (hub)"
        pack = pack_for(model_id)
        if pack is None:  # a model nobody registered, loaded from the user's files
            return "REAL (cache)" if offline() else "REAL (hub)"
        return pack.fixture_class
    except Exception:
        return "UNKNOWN"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    outcomes = _STATE.get("outcomes")
    if not outcomes:
        return
    import transformers

    from . import impl
    from . import report as report_mod
    from .registry import load_impl_findings

    recorded = load_impl_findings()
    meta = {
        "implementation": impl.active(),
        "implementation_lineage": impl.names(),
        "findings": {
            n: {"package": recorded[n].package, "file": recorded[n].source} for n in impl.names() if n in recorded
        },
        "transformers": transformers.__version__,
        "hub": "online" if config.getoption("--online") else "offline",
        "trust_remote_code": bool(config.getoption("--trust-remote-code")),
        "notes": _STATE.get("notes", []),
    }
    report = report_mod.build(meta, outcomes, {m: _fixture_class(m.partition("@")[0]) for m in outcomes})
    tr = terminalreporter
    tr.section("vlmspec conformance")
    tr.write_line(
        f"implementation: {meta['implementation']} | transformers {meta['transformers']} | hub {meta['hub']} | "
        f"trust_remote_code={'ON' if meta['trust_remote_code'] else 'off'}"
    )
    for name, found in meta["findings"].items():
        tr.write_line(f"findings for {name}: {found['file']} (recorded for {found['package']})")
    for note in meta["notes"]:
        tr.write_line(f"note: {note}")
    for line in report_mod.to_terminal(report):
        tr.write_line(line)
    directory = Path(config.getoption("--conformance-report"))
    if not directory.is_absolute():
        directory = Path(config.rootpath) / directory
    json_path, md_path = report_mod.write(report, directory)
    tr.write_line(f"report: {json_path} and {md_path}")
