"""Mutation score of vlmspec's core, measured by mutmut (3.x) against two test suites.

``./dev mutate`` runs this. For each suite (``conformance``: the product, on a small model set;
``unit``: ``tests/``) it mirrors the checkout into ``build/mutate/<suite>/``, writes that copy's
``[tool.mutmut]`` table, and runs ``mutmut run`` there. mutmut keeps its cache in
``build/mutate/<suite>/mutants/``, so a later run re-tests only the functions that changed.

The two verdicts are then joined per mutant: a mutant is *killed by the suite* when either run kills
it (the combined suite fails iff one of its halves fails). Survivors are looked up in
``tools/mutation-equivalents.toml``; an entry there names the mutant, repeats the lines it changes (so
a stale entry is detected, not silently applied) and says in one line why no test can tell it apart.

Printed per file: ``mutation score: K/N killed (S survived, E equivalent)`` for conformance alone,
tests/ alone and both; ``reports/mutation.md`` gets the same table plus every survivor's diff and why it
survives. Exit status 1 when a score is under its threshold (``--min-conformance``/``--min-combined``)
or an equivalence entry is stale.

Process isolation: mutmut forks each mutant from a process that has already run the suite once, so
processors and tiny models stay loaded (fast), but a forked child must not inherit an OpenMP pool:
torch and tokenizers run single-threaded here (``OMP_NUM_THREADS=1``, ``TOKENIZERS_PARALLELISM=false``)
and the two cores are used by running two mutants at a time instead.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutate"
EQUIVALENTS = ROOT / "tools" / "mutation-equivalents.toml"

# The files whose mutants are scored (issue 17): label building, fake images, PP media chunking and the
# PP batch helpers, and the pipelining forwards.
SCOPE = [
    "vlmspec/collate/labels.py",
    "vlmspec/fake_image.py",
    "vlmspec/pp/chunking.py",
    "vlmspec/pp/batch.py",
    "vlmspec/pipelining/forwards.py",
    "vlmspec/pipelining/_common.py",
]
SMOKE_SCOPE = ["vlmspec/pp/batch.py"]

# What the copy needs to run both suites (fixtures and goldens are read relative to the checkout).
MIRROR = ["vlmspec", "conformance", "tests", "fixtures", "golden", "docs", "README.md", "pyproject.toml"]

# One model per branch of the scoped code: Qwen2.5-VL (3-D M-RoPE, grid_thw), Qwen3-VL (deepstack
# features), Gemma 3 (fixed tokens per image, bidirectional image attention), Kimi-K2.5 (its own media
# layout), Phi-4 (image embeddings, audio keys), Mistral 3.1 (its VLM forward and image features) and
# Step 3.7 (its media chunking and image features). Every check of the suite runs on them; mutmut runs
# only the tests that reach a mutant's function.
CONFORMANCE_MODELS = [
    "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen3-VL-2B-Instruct",
    "google/gemma-3-4b-it",
    "moonshotai/Kimi-K2.5",
    "microsoft/Phi-4-multimodal-instruct",
    "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
    "stepfun-ai/Step-3.7-Flash",
]
SUITES: dict[str, list[str]] = {
    "conformance": ["conformance", *(a for m in CONFORMANCE_MODELS for a in ("--model", m))],
    # tests/ without the mutation catalogue (it mutates vlmspec itself, in subprocesses) and without the
    # slow subprocess-only tests (no mutated function runs in-process there).
    "unit": ["tests", "-m", "not slow", "--ignore=tests/test_mutants.py", "--ignore=tests/test_offline.py"],
}
SMOKE_SUITES: dict[str, list[str]] = {
    "conformance": ["conformance", "--model", "Qwen/Qwen2.5-VL-3B-Instruct", "-k", "pp_chunking"],
}

# Statements that only build an exception or a warning are not mutated: their wording is not a
# documented contract (the robustness check asserts the exception type and that the sample and field
# are named, which an "XX...XX" wrap of the literal keeps), so such mutants would all be equivalent.
DO_NOT_MUTATE_PATTERNS = [r"^\s*raise \w+\(", r"^\s*warnings\.warn\("]

KILLED = {"killed", "timeout", "segfault"}
NOT_RUN = {"not checked", "check was interrupted by user"}


# --------------------------------------------------------------------------------------------------
# Workspace
# --------------------------------------------------------------------------------------------------
def _mirror(src: Path, dst: Path) -> None:
    """Make *dst* a copy of *src*, rewriting only files whose bytes changed (mutmut's cache is keyed
    on function hashes, but an untouched mtime keeps its copy step cheap)."""
    if src.is_file():
        if not dst.exists() or not filecmp.cmp(src, dst, shallow=False):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        return
    dst.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in src.iterdir() if p.name != "__pycache__"}
    for stale in dst.iterdir():
        if stale.name not in wanted:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    for name in sorted(wanted):
        _mirror(src / name, dst / name)


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def mutmut_table(scope: list[str], selection: list[str]) -> str:
    """The ``[tool.mutmut]`` table of one suite's copy."""
    rows = {
        "source_paths": ["vlmspec/"],
        "only_mutate": scope,
        "do_not_mutate_patterns": DO_NOT_MUTATE_PATTERNS,
        "also_copy": [p if "." in p else p + "/" for p in MIRROR if p not in ("vlmspec", "tests", "pyproject.toml")],
        "pytest_add_cli_args_test_selection": selection,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "no:randomly", "--hypothesis-seed=0"],
    }
    body = "\n".join(f"{k} = {_toml_list(v)}" for k, v in rows.items())
    return f"\n[tool.mutmut]\n{body}\n"


# What the verdicts depend on besides the mutated code: a change here can turn a cached "killed" into a
# survivor (a weakened check), which mutmut's own change detection (mutated functions, new tests) misses.
TEST_SIDE = ["conformance", "tests", "fixtures", "golden", "vlmspec"]


def _tree_digest(ws: Path, scope: list[str], selection: list[str]) -> str:
    # the scope is part of it: mutmut does not mutate a file it already copied unmutated
    h = hashlib.sha256(json.dumps([scope, selection, DO_NOT_MUTATE_PATTERNS]).encode())
    for name in TEST_SIDE:
        for path in sorted((ws / name).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(ws)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def prepare(suite: str, scope: list[str], selection: list[str], smoke: bool, keep: bool = False) -> Path:
    """Mirror the checkout into the suite's copy; drop mutmut's cached verdicts when the checks,
    fixtures or goldens changed since they were reached (the mutated files themselves are re-hashed
    per function by mutmut)."""
    ws = WORK / (f"{suite}-smoke" if smoke else suite)
    ws.mkdir(parents=True, exist_ok=True)
    for name in MIRROR:
        _mirror(ROOT / name, ws / name)
    stamp = ws / "test-side.sha256"
    digest = _tree_digest(ws, scope, selection)
    # --retest-survivors (keep): the cache stays and the stamp stays old, so the next full run starts over
    if not keep:
        if (ws / "mutants").exists() and (not stamp.exists() or stamp.read_text() != digest):
            print(
                f"mutate: {ws.name}: checks, fixtures or vlmspec changed since the cached run; starting over",
                flush=True,
            )
            shutil.rmtree(ws / "mutants")
        stamp.write_text(digest)
    # always: the mirror above copied the checkout's pyproject.toml over the generated [tool.mutmut] table
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    if "[tool.mutmut]" in pyproject:
        raise SystemExit("pyproject.toml has its own [tool.mutmut]; tools/mutate.py owns that table")
    (ws / "pyproject.toml").write_text(pyproject + mutmut_table(scope, selection), encoding="utf-8")
    return ws


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MUTANT_UNDER_TEST"))}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    # the copy sits two levels below the checkout, where shared/families would not be found
    if "VLMSPEC_FAMILIES" not in env:
        from vlmspec.hub.recipe import families_root  # noqa: PLC0415 (keeps --help free of torch)

        env["VLMSPEC_FAMILIES"] = str(families_root())
    return env


def run_mutmut(ws: Path, jobs: int, names: list[str] | None = None) -> float:
    """``mutmut run`` in the suite's copy (only *names*, when given: mutmut re-tests named mutants)."""
    log = ws / "mutmut.log"
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *(names or [])],
            cwd=ws,
            env=environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    took = time.monotonic() - start
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"mutmut run in {ws} exited {proc.returncode} after {took:.0f} s; log {log}:\n{tail}")
    return took


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
def statuses(ws: Path, scope: list[str]) -> dict[str, dict[str, str]]:
    """``{file: {mutant: status}}`` from mutmut's per-file ``.meta`` records, with mutmut's own names."""
    from mutmut.stats import status_by_exit_code  # noqa: PLC0415

    out = {}
    for path in scope:
        meta = ws / "mutants" / f"{path}.meta"
        if not meta.exists():
            raise SystemExit(f"{meta} is missing: mutmut produced no mutants for {path}")
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        out[path] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return out


def diff_of(ws: Path, name: str, path: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # noqa: PLC0415

    here = Path.cwd()
    os.chdir(ws)
    try:
        return get_diff_for_mutant(name, path=path)
    finally:
        os.chdir(here)


def changed_lines(diff: str) -> list[str]:
    """The mutation itself: the ``-``/``+`` lines of a diff, stripped (headers left out)."""
    return [
        line[0] + line[1:].strip()
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@dataclass
class Equivalent:
    mutant: str
    changed: list[str]
    why: str


def load_equivalents(path: Path = EQUIVALENTS) -> dict[str, Equivalent]:
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = set(data) - {"equivalent"}
    if unknown:
        raise SystemExit(f"{path}: unknown table(s) {sorted(unknown)}; only [[equivalent]] entries are allowed")
    out = {}
    for i, entry in enumerate(data.get("equivalent", [])):
        keys = set(entry)
        if keys != {"mutant", "changed", "why"}:
            raise SystemExit(f"{path}: entry {i} has keys {sorted(keys)}; expected mutant, changed, why")
        if not entry["why"].strip():
            raise SystemExit(f"{path}: entry {i} ({entry['mutant']}) gives no argument")
        if entry["mutant"] in out:
            raise SystemExit(f"{path}: {entry['mutant']} is listed twice")
        out[entry["mutant"]] = Equivalent(entry["mutant"], list(entry["changed"]), entry["why"].strip())
    return out


@dataclass
class FileScore:
    path: str
    total: int = 0
    equivalent: int = 0
    killed: Counter = field(default_factory=Counter)  # by suite name and "both"
    survivors: list[tuple[str, str, str]] = field(default_factory=list)  # (mutant, status, diff)

    def line(self, suite: str) -> str:
        n = self.total - self.equivalent
        k = self.killed[suite]
        pct = 100 * k / n if n else 100.0
        return f"mutation score: {k}/{n} killed ({n - k} survived, {self.equivalent} equivalent) = {pct:.1f}%"

    def pct(self, suite: str) -> float:
        n = self.total - self.equivalent
        return 100 * self.killed[suite] / n if n else 100.0


def score(
    results: dict[str, dict[str, dict[str, str]]], workspaces: dict[str, Path], equivalents: dict[str, Equivalent]
) -> tuple[list[FileScore], list[str]]:
    """Join the suites' verdicts per mutant; return per-file scores and stale-equivalence problems."""
    suites = list(results)
    problems = []
    scores = []
    for path in results[suites[0]]:
        fs = FileScore(path)
        names = set().union(*(results[s][path] for s in suites))
        for name in sorted(names):
            per_suite = {s: results[s][path].get(name, "not checked") for s in suites}
            if any(v in NOT_RUN for v in per_suite.values()):
                problems.append(f"{name}: not run by {[s for s, v in per_suite.items() if v in NOT_RUN]}")
            fs.total += 1
            killed_by = {s for s, v in per_suite.items() if v in KILLED}
            for s in killed_by:
                fs.killed[s] += 1
            if killed_by:
                fs.killed["both"] += 1
                if name in equivalents:
                    problems.append(f"{name} is listed as equivalent but {sorted(killed_by)} kill(s) it")
                continue
            diff = diff_of(workspaces[suites[0]], name, path)
            eq = equivalents.get(name)
            if eq is not None:
                if eq.changed != changed_lines(diff):
                    problems.append(
                        f"{name}: stale equivalence entry; the mutant now changes\n" + "\n".join(changed_lines(diff))
                    )
                else:
                    fs.equivalent += 1
                    continue
            fs.survivors.append((name, "/".join(sorted(set(per_suite.values()))), diff))
        scores.append(fs)
    return scores, problems


def markdown(
    scores: list[FileScore], suites: list[str], equivalents: dict[str, Equivalent], took: dict[str, float], command: str
) -> str:
    out = [
        f"# Mutation score ({date.today().isoformat()})",
        "",
        f"`{command}`; mutmut {_mutmut_version()}; scope: {len(scores)} file(s); "
        + ", ".join(f"{s} run {took[s]:.0f} s" for s in took),
        "",
        "| file | mutants | equivalent | "
        + " | ".join(f"killed by {s}" for s in suites)
        + (" | killed by both suites |" if len(suites) > 1 else " |"),
        "|---|---|---|" + "---|" * (len(suites) + (len(suites) > 1)),
    ]
    cols = suites + (["both"] if len(suites) > 1 else [])
    for fs in scores + [_total(scores)]:
        n = fs.total - fs.equivalent
        cells = " | ".join(f"{fs.killed[c]}/{n} ({fs.pct(c):.1f}%)" for c in cols)
        out.append(f"| `{fs.path}` | {fs.total} | {fs.equivalent} | {cells} |")
    out += ["", "## Survivors", ""]
    survivors = [(fs.path, s) for fs in scores for s in fs.survivors]
    if not survivors:
        out.append("None: every mutant is killed or argued equivalent below.")
    for _path, (name, status, diff) in survivors:
        out += [f"### `{name}` ({status})", "", "```diff", diff, "```", "", "Why it survives: not triaged yet.", ""]
    out += ["## Equivalent mutants", "", "| mutant | change | why |", "|---|---|---|"]
    for eq in equivalents.values():
        change = "<br>".join(f"`{c}`" for c in eq.changed)
        out.append(f"| `{eq.mutant}` | {change} | {eq.why} |")
    return "\n".join(out) + "\n"


def _total(scores: list[FileScore]) -> FileScore:
    t = FileScore("total")
    for fs in scores:
        t.total += fs.total
        t.equivalent += fs.equivalent
        t.killed.update(fs.killed)
    return t


def _mutmut_version() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    return version("mutmut")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./dev mutate", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="CI's version: one small file (vlmspec/pp/batch.py), the conformance suite on one model",
    )
    ap.add_argument("--suite", choices=sorted(SUITES), action="append", help="run only this suite (repeatable)")
    ap.add_argument("--file", action="append", help="score only this file of the scope (repeatable)")
    ap.add_argument("--jobs", type=int, default=2, help="mutants run at a time (default 2)")
    ap.add_argument("--report", type=Path, default=ROOT / "reports" / "mutation.md")
    ap.add_argument("--min-conformance", type=float, default=75.0, help="percent, conformance alone (default 75)")
    ap.add_argument("--min-combined", type=float, default=90.0, help="percent, both suites (default 90)")
    ap.add_argument("--no-run", action="store_true", help="only score the last run's results")
    ap.add_argument(
        "--retest-survivors",
        action="store_true",
        help="re-run only the last run's survivors (fast, while strengthening checks); their "
        "killed verdicts may predate the change, so the report says so and the next full "
        "run starts over",
    )
    args = ap.parse_args(argv)

    suites = SMOKE_SUITES if args.smoke else SUITES
    if args.suite:
        suites = {s: suites[s] for s in args.suite if s in suites}
    scope = SMOKE_SCOPE if args.smoke else SCOPE
    if args.file:
        bad = sorted(set(args.file) - set(SCOPE))
        if bad:
            ap.error(f"not in the scope: {bad}; the scope is {SCOPE}")
        scope = args.file

    took: dict[str, float] = {}
    workspaces = {}
    for suite, selection in suites.items():
        ws = prepare(suite, scope, selection, args.smoke, keep=args.retest_survivors or args.no_run)
        workspaces[suite] = ws
        if args.retest_survivors:
            names = [n for per_file in statuses(ws, scope).values() for n, st in per_file.items() if st not in KILLED]
            print(f"mutate: {suite}: re-testing {len(names)} survivor(s) ...", flush=True)
            took[suite] = run_mutmut(ws, args.jobs, names) if names else 0.0
        elif not args.no_run:
            print(f"mutate: {suite}: mutmut run over {len(scope)} file(s) ...", flush=True)
            took[suite] = run_mutmut(ws, args.jobs)
            print(f"mutate: {suite}: done in {took[suite]:.0f} s", flush=True)
    results = {s: statuses(ws, scope) for s, ws in workspaces.items()}
    equivalents = load_equivalents()
    scores, problems = score(results, workspaces, equivalents)
    names = list(suites)
    command = (
        "./dev mutate" + (" --smoke" if args.smoke else "") + (" --retest-survivors" if args.retest_survivors else "")
    )
    failed = False
    for fs in scores + [_total(scores)]:
        print(f"{fs.path}:")
        for s in names + (["both"] if len(names) > 1 else []):
            label = "conformance + tests/" if s == "both" else s
            print(f"  {label:>20}: {fs.line(s)}")
    total = _total(scores)
    if args.smoke:
        # the smoke proves the set-up (copy, mutmut, fork, verdicts, report), not the score: its one
        # check on one model reaches only part of the file
        if total.killed["conformance"] == 0:
            print("mutate: the smoke run killed no mutant: the set-up is broken")
            failed = True
    elif "conformance" in names and total.pct("conformance") < args.min_conformance:
        print(f"mutate: conformance alone kills {total.pct('conformance'):.1f}% < {args.min_conformance}%")
        failed = True
    if len(names) > 1 and total.pct("both") < args.min_combined:
        print(f"mutate: both suites kill {total.pct('both'):.1f}% < {args.min_combined}%")
        failed = True
    for p in problems:
        print(f"mutate: {p}")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(markdown(scores, names, equivalents, took, command), encoding="utf-8")
    print(f"mutate: wrote {args.report}")
    return 1 if failed or problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
