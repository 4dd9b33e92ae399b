"""Determinism: the flagship's goldens are byte-identical between a `-n 2` run and a serial run, and
equal to the committed ones.

Each run does `--snapshot-update` into its own temporary copy of golden/ ($VLMSPEC_GOLDEN_DIR), so
the repository's goldens are never written; the copies must then match each other and golden/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = "Qwen/Qwen2.5-VL-3B-Instruct"


def _files(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}


def _update_goldens(tmp_path: Path, name: str, workers: list[str]) -> Path:
    golden = tmp_path / name / "golden"
    shutil.copytree(ROOT / "golden", golden)
    # spoil one flagship golden in the copy: the run must write it again (proves it writes into the copy)
    victim = sorted((golden / FLAGSHIP.replace("/", "--")).glob("test_golden-*.json"))[0]
    victim.write_text("{}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["VLMSPEC_GOLDEN_DIR"] = str(golden)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "conformance",
        "--model",
        FLAGSHIP,
        "-p",
        "no:cacheprovider",
        "-q",
        "--snapshot-update",
        "--conformance-report",
        str(tmp_path / name / "reports"),
        *workers,
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return golden


@pytest.mark.slow
def test_goldens_identical_between_parallel_and_serial_runs(tmp_path):
    from vlmspec.hub import materialize

    materialize(FLAGSHIP)
    parallel = _files(_update_goldens(tmp_path, "parallel", ["-n", "2"]))
    serial = _files(_update_goldens(tmp_path, "serial", []))
    committed = _files(ROOT / "golden")
    folder = FLAGSHIP.replace("/", "--") + os.sep
    assert any(name.startswith(folder) for name in committed), "no committed goldens for the flagship"
    assert parallel.keys() == serial.keys() == committed.keys(), "a run added or removed golden files"
    differ = [name for name in committed if not (parallel[name] == serial[name] == committed[name])]
    assert differ == [], f"goldens differ between -n 2, serial and golden/: {differ}"


def test_golden_dir_can_be_redirected(tmp_path):
    """The switch the determinism test relies on: $VLMSPEC_GOLDEN_DIR moves the whole golden tree."""
    code = (
        "from conformance import golden; print(golden.GOLDEN_DIR); print(golden.line_dir('A--B', golden.pinned_line()))"
    )
    env = {**os.environ, "VLMSPEC_GOLDEN_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(tmp_path), str(tmp_path / "A--B")]
