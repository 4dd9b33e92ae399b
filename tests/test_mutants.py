"""Mutation testing of the checks: every mutant in ``tests/mutants/`` must be killed by the right check.

Each mutant is vlmspec with one realistic bug (see ``tests/mutants/__init__.py``). It runs in a
subprocess (cwd = repo root, ``HF_HUB_OFFLINE=1``), through ``--impl tests.mutants.<name>``:

- conformance mutants: ``pytest conformance --model M -k <its checks>``; the run must fail and the
  JSON report must show every expected check as FAIL for M. ``MODEL = "(implementation)"`` judges an
  implementation-level check (``api``, ``robustness``) on that report row; the run then passes the
  default model to ``--model`` (any registered model would do: it only keeps collection small);
- tests/ mutants (checks that live in vlmspec's own tests): ``pytest tests/<file> -k <SELECT>``;
  the run must fail and the expected test functions must be among the failures (JUnit XML).

A control run per target (same selection, ``--impl vlmspec``) must pass, so a kill is the mutant's
doing. ``python -m tests.test_mutants`` runs the whole catalogue (two at a time) and prints the
mutation score table that README.md's "Mutation score" section quotes.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest

from conformance.registry import IMPL_ROW

try:
    from tests.mutants import DEFAULT_MODEL, Mutant, catalogue
except ImportError:  # tests/ on sys.path (rootdir-relative import)
    from mutants import DEFAULT_MODEL, Mutant, catalogue  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600
MUTANTS = catalogue()
slow = pytest.mark.slow


@dataclass
class Verdict:
    mutant: Mutant
    returncode: int
    failed: set[str] = field(default_factory=set)  # checks (conformance) or test functions (tests/)
    output: str = ""

    @property
    def killed(self) -> bool:
        return self.returncode != 0 and set(self.mutant.expect) <= self.failed

    @property
    def killed_by(self) -> list[str]:
        return sorted(set(self.mutant.expect) & self.failed)


# --------------------------------------------------------------------------------------------------
# Building the commands
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def conformance_tests() -> dict[str, list[str]]:
    """``{check: [test function names]}`` from the ``CHECK`` constant of each conformance/test_*.py."""
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / "conformance").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        check = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CHECK" for t in node.targets):
                try:
                    check = ast.literal_eval(node.value)
                except ValueError:
                    pass
        tests = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
        if isinstance(check, str) and tests:
            out.setdefault(check, []).extend(tests)
    return out


def k_expression(checks: Iterable[str], select: str | None = None) -> str:
    """A ``-k`` expression selecting exactly the test functions of *checks* (and *select*, if given).

    ``-k`` matches substrings, so ``test_fake_image`` must exclude ``test_fake_image_mixed_batch``.
    """
    table = conformance_tests()
    every = {t for tests in table.values() for t in tests}
    terms = []
    for check in sorted(checks):
        if check not in table:
            raise ValueError(f"no conformance module declares CHECK = {check!r} (known: {sorted(table)})")
        for test in table[check]:
            clashes = sorted(o for o in every if o != test and test in o)
            terms.append(f"({test}{''.join(f' and not {c}' for c in clashes)})")
    expr = " or ".join(terms)
    return f"({expr}) and ({select})" if select else expr


def model_option(model: str) -> list[str]:
    """``--model`` for a report row: the ``(implementation)`` row is no model; any registered one selects it;
    a ``model@collate`` row is run by its model."""
    return ["--model", DEFAULT_MODEL if model == IMPL_ROW else model.partition("@")[0]]


def command(runner: str, impl: str, model: str, expect: Iterable[str], select: str | None, workdir: Path) -> list[str]:
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--impl", impl]
    if runner == "conformance":
        return base + [
            "conformance",
            *model_option(model),
            "-k",
            k_expression(expect, select),
            "--conformance-report",
            str(workdir),
            "--snapshot-warn-unused",
        ]
    cmd = base + [runner, "--junitxml", str(workdir / "junit.xml"), "--hypothesis-seed=0"]
    return cmd + (["-k", select] if select else [])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def run(runner: str, impl: str, model: str, expect: Iterable[str], select: str | None) -> tuple[int, set[str], str]:
    """Run one selection; return (exit code, what failed, output tail)."""
    with tempfile.TemporaryDirectory(prefix="vlmspec-mutant-") as tmp:
        workdir = Path(tmp)
        proc = subprocess.run(
            command(runner, impl, model, expect, select, workdir),
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        output = (proc.stdout + proc.stderr)[-4000:]
        if runner == "conformance":
            failed = _failed_checks(workdir / "conformance-report.json", model)
        else:
            failed = _failed_tests(workdir / "junit.xml")
    return proc.returncode, failed, output


def _failed_checks(report_path: Path, model: str) -> set[str]:
    """Checks with status FAIL on *model*'s row: a model id is its own collate's row (its ``model@collate``
    variant rows are not read), a ``model@collate`` label that variant's, ``IMPL_ROW`` the implementation's."""
    if not report_path.exists():
        return set()
    row = json.loads(report_path.read_text())["models"].get(model, {"checks": {}})
    return {check for check, cell in row["checks"].items() if cell["status"] == "FAIL"}


def _failed_tests(junit_path: Path) -> set[str]:
    if not junit_path.exists():
        return set()
    failed = set()
    for case in ET.parse(junit_path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(case.get("name", "").partition("[")[0])
    return failed


def run_mutant(mutant: Mutant) -> Verdict:
    rc, failed, output = run(mutant.runner, mutant.module, mutant.model, mutant.expect, mutant.select)
    return Verdict(mutant, rc, failed, output)


def controls() -> dict[str, tuple[str, str, tuple[str, ...], str | None]]:
    """One unmutated run per (runner, model) covering every mutant's selection there.

    ``{target: (runner, model, what the mutants expect to fail, -k expression)}``; for conformance the
    expression is complete, for tests/ files it is the union of the mutants' SELECT.
    """
    groups: dict[tuple[str, str], list[Mutant]] = {}
    for m in MUTANTS:
        groups.setdefault((m.runner, m.model if m.runner == "conformance" else ""), []).append(m)
    out = {}
    for (runner, model), ms in sorted(groups.items()):
        expect = tuple(sorted({c for m in ms for c in m.expect}))
        if runner == "conformance":
            expr = " or ".join(dict.fromkeys(f"({k_expression(m.expect, m.select)})" for m in ms))
            out[f"conformance:{model}"] = (runner, model, expect, expr)
        else:
            selects = [m.select for m in ms]
            expr = None if None in selects else " or ".join(dict.fromkeys(f"({s})" for s in selects))
            out[runner] = (runner, "", expect, expr)
    return out


# --------------------------------------------------------------------------------------------------
# Score
# --------------------------------------------------------------------------------------------------
def score_table(verdicts: list[Verdict]) -> str:
    lines = ["| mutant | runner | killed by | verdict |", "|---|---|---|---|"]
    for v in sorted(verdicts, key=lambda v: v.mutant.name):
        m = v.mutant
        runner = f"conformance ({m.model})" if m.runner == "conformance" else m.runner
        by = ", ".join(f"`{c}`" for c in v.killed_by) or "—"
        lines.append(f"| `{m.name}` | {runner} | {by} | {'killed' if v.killed else 'SURVIVED'} |")
    killed = sum(v.killed for v in verdicts)
    lines.append("")
    lines.append(f"Mutation score: {killed}/{len(verdicts)} killed ({100 * killed / max(len(verdicts), 1):.0f}%)")
    return "\n".join(lines)


_VERDICTS: dict[str, Verdict] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_score(request):
    yield
    if not _VERDICTS:
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    text = score_table(list(_VERDICTS.values()))
    if reporter is not None:  # not on xdist workers; run `python -m tests.test_mutants` for the table there
        reporter.write_line("")
        for line in text.splitlines():
            reporter.write_line(line)


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------
def test_catalogue():
    """At least 20 mutants, each with a docstring naming its runner and what kills it, and a runner that exists."""
    assert len(MUTANTS) >= 20
    checks = conformance_tests()
    for m in MUTANTS:
        doc = ast.get_docstring(ast.parse((ROOT / "tests" / "mutants" / f"{m.name}.py").read_text())) or ""
        assert "Runner:" in doc and "Killed by:" in doc, m.name
        assert m.expect, m.name
        if m.runner == "conformance":
            assert set(m.expect) <= set(checks), (m.name, m.expect)
        else:
            assert (ROOT / m.runner).is_file(), (m.name, m.runner)
            text = (ROOT / m.runner).read_text()
            for test in m.expect:
                assert re.search(rf"^def {re.escape(test)}\(", text, re.M), (m.name, test)


def test_k_expression_excludes_longer_names():
    expr = k_expression(["fake_image"])
    assert "test_fake_image and not test_fake_image_mixed_batch" in expr
    assert k_expression(["labels"], "multi_turn") == "((test_labels)) and (multi_turn)"


def test_readme_quotes_the_declared_score():
    """README's "Mutation score" figure = the catalogue's declared kills (the slow tests verify each one)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.partition("## Mutation score")[2]
    assert section, "README.md has no '## Mutation score' section"
    declared = sum(m.survives is None for m in MUTANTS)
    assert f"{declared}/{len(MUTANTS)}" in section.partition("\n## ")[0]


@slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_is_killed(mutant: Mutant):
    verdict = run_mutant(mutant)
    _VERDICTS[mutant.name] = verdict
    where = (
        f"{mutant.name} ({mutant.runner}, expect {sorted(mutant.expect)}): exit {verdict.returncode}, "
        f"failed {sorted(verdict.failed)}\n{verdict.output}"
    )
    if mutant.survives:
        assert not verdict.killed, f"now killed; remove SURVIVES from the mutant: {where}"
        return
    assert verdict.returncode != 0, f"the run passed: the mutant survived. {where}"
    assert set(mutant.expect) <= verdict.failed, f"failed, but not (only) for the expected check(s). {where}"


@slow
@pytest.mark.parametrize("target", sorted(controls()))
def test_control_selection_passes_unmutated(target: str):
    """The same selections pass on vlmspec itself: a kill is the mutant's doing, not a broken check."""
    runner, model, expect, expr = controls()[target]
    if runner == "conformance":
        with tempfile.TemporaryDirectory(prefix="vlmspec-control-") as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                "--impl",
                "vlmspec",
                "conformance",
                *model_option(model),
                "-k",
                expr,
                "--conformance-report",
                tmp,
                "--snapshot-warn-unused",
            ]
            proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
            rc, failed, output = (
                proc.returncode,
                _failed_checks(Path(tmp) / "conformance-report.json", model),
                (proc.stdout + proc.stderr)[-4000:],
            )
    else:
        rc, failed, output = run(runner, "vlmspec", model, expect, expr)
    assert rc == 0 and not failed, f"{target} fails without a mutant: {sorted(failed)}\n{output}"


def main() -> int:
    with ThreadPoolExecutor(max_workers=int(os.environ.get("VLMSPEC_MUTANT_JOBS", "2"))) as pool:
        verdicts = list(pool.map(run_mutant, MUTANTS))
    print(score_table(verdicts))
    for v in verdicts:
        if not v.killed and not v.mutant.survives:
            print(f"\n--- {v.mutant.name}: exit {v.returncode}, failed {sorted(v.failed)}\n{v.output[-1500:]}")
    return 0 if all(v.killed != bool(v.mutant.survives) for v in verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
