"""The conformance report (conformance/report.py): cell status and ``k/n`` counts, evidence text, and
the same evidence in JSON, Markdown and the terminal lines."""

from __future__ import annotations

import json

import pytest

from conformance import report as report_mod
from conformance.checks import CheckFailure
from conformance.impl import NotImplementedInImpl

QWEN = "Qwen/Qwen2.5-VL-3B-Instruct"
ENV = (
    "environment: the implementation needs the package `qwen-omni-utils` (module `qwen_omni_utils`): "
    "pip install qwen-omni-utils"
)
META = {"implementation": "probe", "transformers": "5.23.0", "hub": "offline", "trust_remote_code": False, "notes": []}


def _r(case, outcome, reason="", link="", evidence=""):
    return {"case": case, "outcome": outcome, "reason": reason, "link": link, "evidence": evidence}


def _report() -> dict:
    outcomes = {
        QWEN: {
            "labels": [
                _r("a", "passed"),
                _r("b", "failed", evidence="[qwen | labels] supervised tokens differ\n  positions 3-4: 'hi'"),
                _r("c", "failed", evidence="KeyError: 'audio'\n  at pkg/collate.py:12"),
                _r("d", "passed"),
            ],
            "golden": [
                _r(
                    "a",
                    "xfailed",
                    "pixels are fp32",
                    "docs/findings.md#fp32",
                    'AssertionError: assert [+ received] == [- snapshot]\n  -   "pixel_values": "bf16"\n'
                    '  +   "pixel_values": "fp32"',
                ),
                _r("b", "passed"),
            ],
            "pp_golden": [_r(None, "xpassed", "old bug", "docs/findings.md#old", "XPASS(strict): the case passed")],
            "vision_tokens": [_r(None, "passed")],
            "template_behaviour": [_r(None, "skipped", "no documented template behaviour")],
        },
        "Qwen/Qwen3-Omni-30B-A3B-Instruct": {
            "labels": [_r(c, "env", ENV, evidence="ImportError: qwen_omni_utils is required") for c in "abc"]
        },
        "(implementation)": {"api": [_r("collate_fns", "passed"), _r("pp_media", "failed", evidence="3 deviation(s)")]},
    }
    return report_mod.build(META, outcomes, {QWEN: "DERIVED"})


# --------------------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "counts, status, text",
    [
        ({"passed": 23, "failed": 2}, "FAIL", "FAIL 2/25"),
        ({"passed": 24, "xpassed": 1}, "FAIL", "FAIL 1/25"),
        ({"error": 1}, "FAIL", "FAIL 1/1"),
        ({"env": 25}, "env", "env 25/25"),
        (
            {"env": 2, "passed": 3, "xfailed": 1},
            "env",
            "env 2/6 +xfail 1",
        ),  # the verdicts beside an env problem stay visible
        ({"xfailed": 3, "passed": 22}, "xfail", "xfail 3/25"),
        ({"passed": 24, "skipped": 1}, "pass", "pass 24/25"),
        ({"skipped": 2}, "skip", "skip"),
    ],
)
def test_cell_status_and_fraction(counts, status, text):
    assert report_mod.cell_status(counts) == status
    assert report_mod.cell_fraction({"status": status, "counts": counts}) == text


def test_a_cell_the_implementation_cannot_express_is_a_dash_not_a_finding():
    dash = {"case": "x", "outcome": "skipped", "reason": "— trl cannot express pp_chunking: no PP"}
    plain = {"case": "y", "outcome": "skipped", "reason": "no video decoder"}
    report = report_mod.build(
        {"implementation": "trl"}, {QWEN: {"pp_chunking": [dash], "golden": [plain]}}, {QWEN: "DERIVED"}
    )
    cells = report["models"][QWEN]["checks"]
    assert report_mod.cell_fraction(cells["pp_chunking"]) == "—" and report_mod.cell_text(cells["pp_chunking"]) == "—"
    assert report_mod.cell_fraction(cells["golden"]) == "skip"
    lines = report_mod.to_terminal(report)
    assert not any("pp_chunking: " in line for line in lines)
    assert any("golden: skip: no video decoder" in line for line in lines)
    assert lines[-1].startswith("1 cell(s) '—': the implementation cannot express them")


def test_build_counts_orders_rows_and_collects_environment():
    report = _report()
    assert list(report["models"])[0] == "(implementation)"
    labels = report["models"][QWEN]["checks"]["labels"]
    assert (
        labels["status"] == "FAIL" and labels["text"] == "FAIL 2/4" and labels["counts"] == {"passed": 2, "failed": 2}
    )
    assert report["models"][QWEN]["checks"]["pp_golden"]["text"] == "FAIL 1/1"
    omni = report["models"]["Qwen/Qwen3-Omni-30B-A3B-Instruct"]
    assert omni["environment"] == [ENV] and omni["checks"]["labels"]["text"] == "env 3/3"
    assert report["models"][QWEN]["environment"] == []


def test_old_results_without_evidence_still_build():
    report = report_mod.build(META, {QWEN: {"labels": [{"case": "a", "outcome": "failed", "reason": ""}]}}, {})
    assert report["models"][QWEN]["checks"]["labels"]["results"][0]["evidence"] == ""


# --------------------------------------------------------------------------------------------------
# evidence
# --------------------------------------------------------------------------------------------------
def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - we want its traceback
        return caught


def test_check_failure_evidence_is_its_message():
    text = "[m | DERIVED | fixture f | check labels] supervised tokens differ\n  positions 3-4: 'hi'"
    assert report_mod.format_evidence(_raised(CheckFailure(text))) == text
    assert report_mod.format_evidence(_raised(NotImplementedInImpl("not implemented: x"))) == "not implemented: x"


def test_other_exception_evidence_names_type_message_and_innermost_frame():
    def inner():
        return {}["audio"]

    try:
        inner()
    except KeyError as exc:
        text = report_mod.format_evidence(exc)
    first, where = text.splitlines()
    assert first == "KeyError: 'audio'"
    line = inner.__code__.co_firstlineno + 1
    assert where.strip() == f"at tests/test_report.py:{line}"


def test_cap_says_what_was_cut():
    text = "\n".join(f"line {i}" for i in range(30))
    capped = report_mod.cap(text)
    assert capped.splitlines()[:20] == [f"line {i}" for i in range(20)]
    assert capped.splitlines()[-1] == "… (cut: 10 more line(s))"
    wide = report_mod.cap("x" * 5000)
    assert wide.startswith("x" * 3000) and wide.endswith("(cut: 2000 more character(s))")
    assert report_mod.cap("short\n") == "short"


# --------------------------------------------------------------------------------------------------
# renderings carry the same text
# --------------------------------------------------------------------------------------------------
def test_markdown_has_findings_with_evidence_reason_and_link():
    md = report_mod.to_markdown(_report())
    assert md.index("| (implementation) |") < md.index(f"| {QWEN} |")
    assert "## Environment problems (no verdict)" in md and f"- **Qwen/Qwen3-Omni-30B-A3B-Instruct**: {ENV}" in md
    section = md.split("## Failures and findings")[1]
    assert f"### {QWEN} · `labels` · FAIL 2/4" in section
    assert "- `b`: **failed**" in section and "positions 3-4: 'hi'" in section
    assert "KeyError: 'audio'" in section and "at pkg/collate.py:12" in section
    assert "recorded reason: pixels are fp32" in section and "link: docs/findings.md#fp32" in section
    assert "- `a`, `b`, `c`: **env**" in section  # identical env results: one group
    assert f"### {QWEN} · `vision_tokens`" not in section  # pass cells have no findings


def test_markdown_fence_outlasts_backticks_in_evidence():
    outcomes = {QWEN: {"labels": [_r("a", "failed", evidence="rendered: ```code```")]}}
    md = report_mod.to_markdown(report_mod.build(META, outcomes, {}))
    assert "  ````\n  rendered: ```code```\n  ````" in md


def test_terminal_matrix_legend_and_one_line_per_non_pass_cell():
    lines = report_mod.to_terminal(_report())
    header, impl_row = lines[0], lines[1]
    assert impl_row.startswith("(implementation)") and "FAIL 1/2" in impl_row
    assert "label_cons" not in header and "vis_tokens" in header and "template" in header
    assert any(line.startswith("legend:") and "vis_tokens = vision_tokens" in line for line in lines)
    qwen_row = next(line for line in lines if line.startswith(QWEN + " "))
    assert "FAIL 2/4" in qwen_row and "xfail 1/2" in qwen_row and "pass 1/1" in qwen_row
    assert f"Qwen/Qwen3-Omni-30B-A3B-Instruct: {ENV}" in lines
    findings = {line.split(": ", 1)[0]: line for line in lines if " · " in line}
    assert findings[f"{QWEN} · labels"].endswith("FAIL 2/4: [qwen | labels] supervised tokens differ")
    assert "pixels are fp32 [docs/findings.md#fp32]" in findings[f"{QWEN} · golden"]
    assert findings[f"{QWEN} · template_behaviour"].endswith("skip: no documented template behaviour")
    assert f"{QWEN} · vision_tokens" not in findings


def test_json_roundtrip_keeps_evidence(tmp_path):
    json_path, md_path = report_mod.write(_report(), tmp_path)
    data = json.loads(json_path.read_text())
    results = data["models"][QWEN]["checks"]["golden"]["results"]
    assert results[0]["reason"] == "pixels are fp32" and results[0]["link"] == "docs/findings.md#fp32"
    assert "pixel_values" in results[0]["evidence"]
    assert md_path.read_text() == report_mod.to_markdown(data)


def test_placeholder_runs_are_compacted_in_failure_text():
    """A diff over a video span names each placeholder once with its count, not 560 times."""
    from conformance.checks import compact

    text = repr("<|vision_start|>" + "<|video_pad|>" * 560 + "<|audio_pad|>" * 3 + "hi<|im_end|>")
    assert compact(text) == "'<|vision_start|><|video_pad|>×560<|audio_pad|><|audio_pad|><|audio_pad|>hi<|im_end|>'"
    assert compact("'<image><image><image><image>'") == "'<image>×4'"
    assert compact("'a < b > c'") == "'a < b > c'"  # not a token
