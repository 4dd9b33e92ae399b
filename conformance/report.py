"""The conformance report: a model × check matrix, as JSON (for tools) and Markdown (for people).

Cell status: ``pass`` (all passed), ``FAIL`` (any failure or unexpected pass of a recorded xfail),
``xfail`` (only recorded expected failures, possibly with passes), ``skip`` (nothing ran).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any


def cell_status(counts: dict[str, int]) -> str:
    if counts.get("failed") or counts.get("xpassed") or counts.get("error"):
        return "FAIL"
    if counts.get("xfailed"):
        return "xfail"
    if counts.get("passed"):
        return "pass"
    return "skip"


def cell_text(cell: dict[str, Any]) -> str:
    counts = cell["counts"]
    parts = [f"{n} {k}" for k, n in sorted(counts.items())]
    return f"{cell['status']} ({', '.join(parts)})" if parts else cell["status"]


def build(meta: dict[str, Any], outcomes: dict[str, dict[str, list[dict]]], classes: dict[str, str]) -> dict[str, Any]:
    """``outcomes[model][check]`` = list of ``{"case", "outcome", "reason"}``."""
    report = dict(meta, models={})
    for model_id in sorted(outcomes):
        checks = {}
        for check, results in sorted(outcomes[model_id].items()):
            counts = dict(Counter(r["outcome"] for r in results))
            reasons = sorted({r["reason"] for r in results if r.get("reason")})
            checks[check] = {"status": cell_status(counts), "counts": counts, "reasons": reasons, "results": results}
        report["models"][model_id] = {"fixture_class": classes.get(model_id, "UNKNOWN"), "checks": checks}
    return report


def all_checks(report: dict[str, Any]) -> list[str]:
    return sorted({c for m in report["models"].values() for c in m["checks"]})


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
    notes = [(m, c, r) for m, model in report["models"].items() for c, cell in model["checks"].items()
             for r in cell["reasons"]]
    if notes:
        lines += ["", "## Recorded xfails and skips", ""]
        lines += [f"- **{m}** · `{c}`: {r}" for m, c, r in notes]
    for note in report.get("notes", []):
        lines.append(f"\n> note: {note}")
    return "\n".join(lines) + "\n"


def to_terminal(report: dict[str, Any]) -> list[str]:
    checks = all_checks(report)
    width = max([len(m) for m in report["models"]] + [10])
    out = [f"{'model':<{width}}  {'class':<9} " + " ".join(f"{c[:12]:>12}" for c in checks)]
    for model_id, model in report["models"].items():
        cells = []
        for c in checks:
            cell = model["checks"].get(c)
            if cell is None:
                cells.append(f"{'—':>12}")
                continue
            n = sum(cell["counts"].values())
            cells.append(f"{cell['status'] + ' ' + str(n):>12}")
        out.append(f"{model_id:<{width}}  {model['fixture_class']:<9} " + " ".join(cells))
    return out


def write(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "conformance-report.json", directory / "conformance-report.md"
    json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    md_path.write_text(to_markdown(report))
    return json_path, md_path
