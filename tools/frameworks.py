"""One verdict across training frameworks: the conformance suite against each framework adapter.

``./dev frameworks`` runs this. For each framework in :data:`conformance.frameworks.ADAPTERS` it

1. installs ``conformance/frameworks/<fw>.pins`` with ``pip install --no-deps --target .venv-fw/<fw>``
   (never into ``.venv``: the target folder shadows the project's packages only for that run, which is
   how a framework that needs an older transformers gets it; torch stays the project's);
2. runs ``pytest conformance --impl <fw>`` with that folder first on ``PYTHONPATH``, writing
   ``reports/frameworks/<fw>/conformance-report.{json,md}``;
3. joins the reports into ``reports/frameworks.md``: family × framework, each cell the ``labels``
   verdict with its counts (``—`` with the reason where the framework cannot run the family), and,
   for every disagreement with the oracle, the decoded spans.

A framework that cannot be installed is a column of ``env`` cells that quote the failing command and
its error; it never stops the other frameworks. Exit status: 1 when a report has a FAIL cell (an
unrecorded deviation, or a recorded one that no longer happens), 2 when a framework could not be
installed or its run produced no report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance.frameworks import ADAPTERS, DASH, DISTRIBUTIONS  # noqa: E402
from conformance.report import cell_fraction, cell_status  # noqa: E402

REPORTS = ROOT / "reports" / "frameworks"
CHECK = "labels"


def pins(fw: str) -> list[str]:
    path = ROOT / "conformance" / "frameworks" / f"{fw}.pins"
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def install(fw: str) -> str | None:
    """Install ``fw``'s pins into ``.venv-fw/<fw>`` unless the same pins are there; the error text or None."""
    target = ROOT / ".venv-fw" / fw
    wanted = "\n".join(pins(fw))
    stamp = target / ".installed"
    if stamp.exists() and stamp.read_text() == wanted:
        return None
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    cmd += ["-r", str(ROOT / "conformance" / "frameworks" / f"{fw}.pins")]
    print(f"frameworks: installing {fw} into {target.relative_to(ROOT)}", file=sys.stderr, flush=True)
    subprocess.run(["rm", "-rf", str(target)], check=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        return f"`{' '.join(cmd[2:])}` exited {done.returncode}: {tail}"
    stamp.write_text(wanted)
    return None


def run(fw: str, extra: list[str]) -> tuple[int, float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / ".venv-fw" / fw), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "pytest", "conformance", "-p", "no:cacheprovider", "-q", "-n", "2"]
    cmd += ["--impl", fw, "--conformance-report", str(REPORTS / fw), *extra]
    start = time.monotonic()
    code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    return code, time.monotonic() - start


def run_mutant(fw: str) -> dict[str, list[str]]:
    """The whole-conversation mutant of ``fw``'s adapter (``tests/framework_mutant.py``) through ``labels``:
    ``{"killed": models whose labels cell FAILs, "survived": models it passes}`` (``—`` models are neither)."""
    out = ROOT / "build" / "frameworks-mutant" / fw
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLMSPEC_MUTATED_FRAMEWORK=fw)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / ".venv-fw" / fw), str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "pytest", "conformance", "-p", "no:cacheprovider", "-q", "-n", "2", "-k", CHECK]
    cmd += ["--impl", "tests.framework_mutant", "--conformance-report", str(out)]
    subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    verdict: dict[str, list[str]] = {"killed": [], "survived": []}
    report = json.loads((out / "conformance-report.json").read_text())
    for model, data in report["models"].items():
        status = data["checks"].get(CHECK, {}).get("status")
        if status in ("FAIL", "pass", "xfail"):
            verdict["killed" if status == "FAIL" else "survived"].append(model)
    return verdict


def cell(model: dict | None) -> tuple[str, list[str]]:
    """The matrix text of a model's ``labels`` cell, and the evidence lines for the section below.

    Counts leave out the cases the framework cannot express (``—``: a medium its path does not carry),
    which the text adds as ``+— k``. Non-pass cases are grouped by recorded reason, with the cases named
    and the first one's evidence shown (the others' differ only in positions and text)."""
    if model is None or CHECK not in model["checks"]:
        return "—", []
    results = model["checks"][CHECK]["results"]
    judged = [r for r in results if not (r["outcome"] == "skipped" and r["reason"].startswith(DASH))]
    dashes = [r for r in results if r not in judged]
    if not judged:
        return "—", sorted({r["reason"].removeprefix(DASH).strip() for r in dashes})
    counts = {k: sum(r["outcome"] == k for r in judged) for k in {r["outcome"] for r in judged}}
    text = cell_fraction({"status": cell_status(counts), "counts": counts, "results": judged})
    text += f" +— {len(dashes)}" if dashes else ""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in judged:
        if r["outcome"] in ("failed", "error", "xfailed", "xpassed", "env", "skipped"):
            groups.setdefault((r["outcome"], r["reason"], r["link"]), []).append(r)
    details = []
    for (outcome, reason, link), rs in groups.items():
        head = f"{outcome} on {len(rs)} case(s): `{'`, `'.join(str(r['case']) for r in rs)}`"
        if reason:
            head += f"\n  - recorded: {reason}" + (f" ({link})" if link else "")
        evidence = rs[0]["evidence"].strip()
        if evidence:
            shown = "\n".join("  " + line for line in evidence.splitlines()[:12])
            head += f"\n\n  ```\n{shown}\n  ```"
        details.append(head)
    details += [
        f"— on {len(dashes)} case(s): {r}" for r in sorted({d["reason"].removeprefix(DASH).strip() for d in dashes})
    ]
    return text, details


def combine(frameworks: list[str], meta: dict[str, dict]) -> str:
    reports = {}
    for fw in frameworks:
        path = REPORTS / fw / "conformance-report.json"
        reports[fw] = json.loads(path.read_text()) if path.exists() and not meta[fw].get("error") else None
    models = sorted({m for r in reports.values() if r for m in r["models"] if not m.startswith("(")})
    lines = [
        "# Label verdicts across training frameworks",
        "",
        f"{date.today().isoformat()} · `./dev frameworks` · check `{CHECK}` (the oracle of SPEC.md's data contract). "
        "Cells: `pass k/n`, `xfail k/n` (recorded deviations, see docs/findings.md), `FAIL k/n`, `env` "
        "(not installable: no verdict), `—` (the framework cannot run this family; reason below).",
        "",
        "| framework | package | transformers | seconds | run on |",
        "|---|---|---|---|---|",
    ]
    for fw in frameworks:
        r, m = reports[fw], meta[fw]
        tf = r["transformers"] if r else "—"
        run_on = m.get("date", date.today().isoformat())
        lines.append(f"| {fw} | {m.get('package', '?')} | {tf} | {m.get('seconds', 0):.0f} | {run_on} |")
    lines += ["", "| model | " + " | ".join(frameworks) + " |", "|---|" + "---|" * len(frameworks)]
    sections: list[str] = []
    for model in models:
        row = []
        for fw in frameworks:
            if reports[fw] is None:
                row.append("env")
                continue
            text, details = cell(reports[fw]["models"].get(model))
            row.append(text)
            if details:
                sections += ["", f"### {model} · {fw} · {text}", "", *[f"- {d}" for d in details]]
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    lines += ["", "Mutant adapter that supervises the whole conversation (`tests/framework_mutant.py`), `labels`:", ""]
    for fw in frameworks:
        mutant = meta[fw].get("mutant")
        if mutant is not None:
            survived = ", ".join(mutant["survived"]) or "none"
            lines.append(
                f"- {fw}: killed on {len(mutant['killed'])} of {len(mutant['killed']) + len(mutant['survived'])} "
                f"families it supports; survived on: {survived}"
            )
    for fw in frameworks:
        if meta[fw].get("error"):
            lines += ["", f"**{fw}: not installable here.** {meta[fw]['error']}"]
    lines += ["", "## Cells that are not a pass", *sections]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(ADAPTERS), help="run these frameworks only")
    parser.add_argument("--install", action="append", choices=sorted(ADAPTERS), help="install, do not run")
    args, extra = parser.parse_known_args(argv)
    if args.install:
        errors = {fw: install(fw) for fw in args.install}
        for fw, error in errors.items():
            print(f"frameworks: {fw}: {error or 'installed'}", file=sys.stderr)
        return 2 if any(errors.values()) else 0
    frameworks = args.only or list(ADAPTERS)
    meta: dict[str, dict] = {}
    status = 0
    for fw in frameworks:
        meta[fw] = {"package": next((p for p in pins(fw) if p.startswith(DISTRIBUTIONS[fw] + "==")), "?")}
        error = install(fw)
        if error:
            meta[fw]["error"] = error
            print(f"frameworks: {fw}: not installable: {error}", file=sys.stderr)
            status = 2
            continue
        code, seconds = run(fw, extra)
        meta[fw]["seconds"] = seconds
        print(f"frameworks: {fw}: pytest exited {code} in {seconds:.0f} s", file=sys.stderr, flush=True)
        if code not in (0, 1):
            meta[fw]["error"] = f"pytest exited {code} (see the output above)"
            status = 2
            continue
        if code == 1:
            status = max(status, 1)
        mutant = meta[fw]["mutant"] = run_mutant(fw)
        print(
            f"frameworks: {fw}: whole-conversation mutant killed on {len(mutant['killed'])} model(s), "
            f"survived on {mutant['survived'] or 'none'}",
            file=sys.stderr,
            flush=True,
        )
        if mutant["survived"] or not mutant["killed"]:
            status = max(status, 1)
    for fw in frameworks:
        (REPORTS / fw).mkdir(parents=True, exist_ok=True)
        (REPORTS / fw / "meta.json").write_text(json.dumps(dict(meta[fw], date=date.today().isoformat()), indent=1))
    # the matrix shows every framework with a report, the ones run earlier (--only) with their own date
    shown = [fw for fw in ADAPTERS if fw in meta or (REPORTS / fw / "meta.json").exists()]
    for fw in shown:
        meta.setdefault(fw, json.loads((REPORTS / fw / "meta.json").read_text()))
    text = combine(shown, meta)
    out = ROOT / "reports" / "frameworks.md"
    out.write_text(text)
    print(f"frameworks: wrote {out.relative_to(ROOT)}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
