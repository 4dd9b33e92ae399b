"""The conformance report: a model × check matrix, as JSON (for tools), Markdown (for people) and the
terminal summary, all three carrying the same evidence text.

Cell status, worst first: ``FAIL`` (a case failed, errored, or passed although an expected failure is
recorded: XPASS), ``env`` (a module the implementation needs is not installed: no verdict), ``xfail``
(only recorded expected failures, possibly with passes), ``pass``, ``skip`` (nothing ran). Its count
``k/n`` is the cases with that status out of the cell's ``n`` cases (``FAIL 2/25``: 2 of 25 failed).

Every result is ``{"case", "outcome", "reason", "link", "evidence"}``: ``outcome`` is a pytest outcome
(``passed``, ``failed``, ``error``, ``skipped``, ``xfailed``, ``xpassed``) or ``env``; ``reason`` and
``link`` are the recorded expected failure (or the skip reason, or the environment message);
``evidence`` is how the case failed (:func:`format_evidence`), at most :data:`MAX_LINES` lines.
The ``(implementation)`` row (implementation-level checks such as ``api``) comes first.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from .registry import IMPL_ROW

MAX_LINES, MAX_CHARS = 20, 3000
NON_PASS = ("failed", "error", "xpassed", "env", "xfailed", "skipped")
# Terminal column headings for long check names (a legend under the matrix spells them out).
SHORT = {
    "vision_tokens": "vis_tokens",
    "label_consistency": "label_cons",
    "fake_image_mixed_batch": "fake_mixed",
    "template_behaviour": "template",
    "pp_staged_forward": "pp_staged",
    "pp_distributed": "pp_dist",
    "robustness": "robust",
    "pp_layouts": "pp_layout",
}


# --------------------------------------------------------------------------------------------------
# Evidence
# --------------------------------------------------------------------------------------------------
def cap(text: str, max_lines: int = MAX_LINES, max_chars: int = MAX_CHARS) -> str:
    """``text`` cut to ``max_lines`` lines and ``max_chars`` characters, saying what was cut."""
    lines = text.rstrip("\n").splitlines()
    out = "\n".join(lines[:max_lines])
    cut = []
    if len(lines) > max_lines:
        cut.append(f"{len(lines) - max_lines} more line(s)")
    if len(out) > max_chars:
        cut.append(f"{len(out) - max_chars} more character(s)")
        out = out[:max_chars]
    return out + (f"\n… (cut: {', '.join(cut)})" if cut else "")


def _short_path(filename: str) -> str:
    """A frame's file relative to the longest ``sys.path`` entry (or cwd) that holds it."""
    real = os.path.realpath(filename)
    roots = sorted({os.path.realpath(p) for p in [os.getcwd(), *sys.path] if p}, key=len, reverse=True)
    for root in roots:
        if real.startswith(root + os.sep):
            return os.path.relpath(real, root)
    return filename


def _is_verdict(exc: BaseException) -> bool:
    """A harness verdict (``CheckFailure``, 'not implemented'): its message is the whole evidence."""
    from . import impl

    checks = sys.modules.get("conformance.checks")  # if checks is not loaded, no CheckFailure exists
    kinds = tuple(k for k in (getattr(checks, "CheckFailure", None), impl.NotImplementedInImpl) if k is not None)
    return isinstance(exc, kinds)


def format_evidence(exc: BaseException) -> str:
    """How a case failed: a verdict's message (it already decodes spans), else ``Type: message`` and the
    innermost frame's ``file:line``. Capped by :func:`cap`."""
    if _is_verdict(exc):
        return cap(str(exc))
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        text += f"\n  at {_short_path(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
    return cap(text)


def first_line(text: str, width: int = 240) -> str:
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


# --------------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------------
def cell_status(counts: dict[str, int]) -> str:
    if counts.get("failed") or counts.get("xpassed") or counts.get("error"):
        return "FAIL"
    if counts.get("env"):
        return "env"
    if counts.get("xfailed"):
        return "xfail"
    if counts.get("passed"):
        return "pass"
    return "skip"


_COUNTED = {"FAIL": ("failed", "xpassed", "error"), "env": ("env",), "xfail": ("xfailed",), "pass": ("passed",)}


def cell_fraction(cell: dict[str, Any]) -> str:
    """``FAIL 2/25``, ``pass 25/25``, ``xfail 3/25``, ``env 25/25`` or ``skip``."""
    status, counts = cell["status"], cell["counts"]
    if status not in _COUNTED:
        return "—" if _not_expressible(cell) else status
    text = f"{status} {sum(counts.get(k, 0) for k in _COUNTED[status])}/{sum(counts.values())}"
    # a cell that also holds verdicts says so: 'env 3/102' alone would hide 88 recorded deviations
    others = [
        f"{k.removesuffix('ed')} {counts[k]}"
        for k in ("xfailed", "failed")
        if counts.get(k) and k not in _COUNTED[status]
    ]
    return text + "".join(f" +{o}" for o in others)


def cell_text(cell: dict[str, Any]) -> str:
    if _not_expressible(cell):
        return "—"
    counts = cell["counts"]
    parts = [f"{n} {k}" for k, n in sorted(counts.items())]
    return f"{cell['status']} ({', '.join(parts)})" if parts else cell["status"]


def _row_order(models: list[str]) -> list[str]:
    return sorted(models, key=lambda m: (m != IMPL_ROW, m))


def build(meta: dict[str, Any], outcomes: dict[str, dict[str, list[dict]]], classes: dict[str, str]) -> dict[str, Any]:
    """``outcomes[model][check]`` = list of results (see the module docstring; missing keys read as "")."""
    report = dict(meta, models={})
    for model_id in _row_order(list(outcomes)):
        checks = {}
        for check, raw in sorted(outcomes[model_id].items()):
            results = [
                {
                    "case": r.get("case"),
                    "outcome": r["outcome"],
                    "reason": r.get("reason", ""),
                    "link": r.get("link", ""),
                    "evidence": r.get("evidence", ""),
                }
                for r in raw
            ]
            counts = dict(Counter(r["outcome"] for r in results))
            reasons = sorted({r["reason"] + (f" ({r['link']})" if r["link"] else "") for r in results if r["reason"]})
            cell = {"status": cell_status(counts), "counts": counts, "reasons": reasons, "results": results}
            checks[check] = dict(cell, text=cell_fraction(cell))
        environment = sorted({r["reason"] for c in checks.values() for r in c["results"] if r["outcome"] == "env"})
        report["models"][model_id] = {
            "fixture_class": classes.get(model_id, "UNKNOWN"),
            "environment": environment,
            "checks": checks,
        }
    return report


def all_checks(report: dict[str, Any]) -> list[str]:
    return sorted({c for m in report["models"].values() for c in m["checks"]})


def findings(report: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(model, check, cell)`` for every cell that is not ``pass``, in matrix order."""
    return [
        (m, c, cell)
        for m, model in report["models"].items()
        for c, cell in model["checks"].items()
        if cell["status"] != "pass"
    ]


def summary_line(cell: dict[str, Any]) -> str:
    """The first line of a non-pass cell's evidence (for xfails: the recorded reason and link)."""
    order = {"FAIL": ("failed", "error", "xpassed"), "env": ("env",), "xfail": ("xfailed",), "skip": ("skipped",)}
    result = next((r for r in cell["results"] if r["outcome"] in order.get(cell["status"], ())), None)
    if result is None:
        return ""
    if result["outcome"] == "xfailed":
        seen = first_line(result["evidence"], 160)
        return (
            first_line(result["reason"], 160)
            + (f" [{result['link']}]" if result["link"] else "")
            + (f" — seen: {seen}" if seen else "")
        )
    text = result["evidence"] or result["reason"]
    if "[+ received] == [- snapshot]" in first_line(text):  # a golden diff: its first changed line says more
        changed = [ln.strip() for ln in text.splitlines() if ln.strip()[:1] in "-+" and ln.strip()[1:2] == " "]
        return first_line(" ".join(["golden differs:", *changed[:2]]))
    return first_line(text)


# --------------------------------------------------------------------------------------------------
# Renderings
# --------------------------------------------------------------------------------------------------
def _fence(text: str) -> str:
    """A code block whose fence is longer than any run of backticks in ``text``."""
    ticks = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{ticks}\n{text}\n{ticks}"


def _groups(results: list[dict[str, Any]]) -> list[tuple[list[Any], dict[str, Any]]]:
    """Non-pass results grouped by identical (outcome, reason, link, evidence), first-seen order."""
    groups: dict[tuple, tuple[list[Any], dict[str, Any]]] = {}
    for r in results:
        if r["outcome"] in NON_PASS:
            key = (r["outcome"], r["reason"], r["link"], r["evidence"])
            groups.setdefault(key, ([], r))[0].append(r["case"])
    return list(groups.values())


def _finding_lines(model_id: str, check: str, cell: dict[str, Any]) -> list[str]:
    lines = ["", f"### {model_id} · `{check}` · {cell_fraction(cell)}", ""]
    for cases, r in _groups(cell["results"]):
        named = ", ".join(f"`{c}`" for c in cases if c is not None) or "(the whole check)"
        lines.append(f"- {named}: **{r['outcome']}**")
        if r["reason"]:
            lines.append(
                f"  - {'recorded reason' if r['outcome'] in ('xfailed', 'xpassed') else 'reason'}: {r['reason']}"
            )
        if r["link"]:
            lines.append(f"  - link: {r['link']}")
        if r["evidence"]:
            lines += ["", *("  " + ln if ln else "" for ln in _fence(r["evidence"]).splitlines()), ""]
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    checks = all_checks(report)
    lines = [
        "# vlmspec conformance report",
        "",
        f"implementation: **{report['implementation']}** · transformers {report['transformers']} · "
        f"hub {report['hub']} · trust_remote_code {'**ON**' if report['trust_remote_code'] else 'off'}",
        "",
        "| model | class | " + " | ".join(checks) + " |",
        "|---|---|" + "---|" * len(checks),
    ]
    for model_id, model in report["models"].items():
        cells = [cell_text(model["checks"][c]) if c in model["checks"] else "—" for c in checks]
        lines.append(f"| {model_id} | {model['fixture_class']} | " + " | ".join(cells) + " |")
    environment = [(m, e) for m, model in report["models"].items() for e in model.get("environment", ())]
    if environment:
        lines += ["", "## Environment problems (no verdict)", ""]
        lines += [f"- **{m}**: {e}" for m, e in environment]
    found = findings(report)
    if found:
        lines += ["", "## Failures and findings"]
        for model_id, check, cell in found:
            lines += _finding_lines(model_id, check, cell)
    for note in report.get("notes", []):
        lines.append(f"\n> note: {note}")
    return "\n".join(lines) + "\n"


def to_terminal(report: dict[str, Any]) -> list[str]:
    """The matrix (``FAIL 2/25`` cells), a legend for shortened check names, each model's environment
    problems once, and one line per non-pass cell with the first line of its evidence."""
    checks = all_checks(report)
    heads = [SHORT.get(c, c) for c in checks]
    width = max([len(m) for m in report["models"]] + [10])
    cols = [
        max([len(h)] + [len(cell_fraction(m["checks"][c])) for m in report["models"].values() if c in m["checks"]])
        for c, h in zip(checks, heads)
    ]
    out = [f"{'model':<{width}}  {'class':<9} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, cols))]
    for model_id, model in report["models"].items():
        cells = [
            f"{cell_fraction(model['checks'][c]) if c in model['checks'] else '—':>{w}}" for c, w in zip(checks, cols)
        ]
        out.append(f"{model_id:<{width}}  {model['fixture_class']:<9} " + " ".join(cells))
    legend = [f"{SHORT[c]} = {c}" for c in checks if c in SHORT]
    if legend:
        out.append("legend: " + ", ".join(legend) + "; k/n = cases with that status / cases run")
    for model_id, model in report["models"].items():
        out += [f"{model_id}: {e}" for e in model.get("environment", ())]
    found = findings(report)
    dashes = [f for f in found if _not_expressible(f[2])]
    out += [
        f"{m} · {c}: {cell_fraction(cell)}: {summary_line(cell)}" for m, c, cell in found if not _not_expressible(cell)
    ]
    if dashes:
        out.append(
            f"{len(dashes)} cell(s) '—': the implementation cannot express them (a framework without that check, "
            "family or medium); each reason is in the Markdown and JSON reports"
        )
    return out


def _not_expressible(cell: dict[str, Any]) -> bool:
    """A skip cell whose every case is a '—' (the implementation cannot express it), not a finding."""
    results = cell.get("results") or []
    return cell["status"] == "skip" and bool(results) and all(r["reason"].startswith("—") for r in results)


def write(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "conformance-report.json", directory / "conformance-report.md"
    json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    md_path.write_text(to_markdown(report))
    return json_path, md_path
