"""The conformance plugin's command line: model selection, suggestions, listing, offline default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "conformance", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_list_models_shows_every_record_with_its_class():
    out = _pytest("--list-models")
    assert out.returncode == 0, out.stderr
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in out.stdout and "DERIVED" in out.stdout
    assert "google/gemma-3-4b-it" in out.stdout and "REAL" in out.stdout


def test_unknown_model_suggests_closest_ids():
    out = _pytest("--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--collect-only", "-q")
    assert out.returncode != 0
    assert "not in the registry and cannot be loaded" in out.stderr
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in out.stderr


def test_unambiguous_prefix_is_accepted_with_a_note():
    out = _pytest("--model", "Qwen/Qwen2.5-VL-3B", "-k", "vision_tokens", "-q")
    assert out.returncode == 0, out.stdout[-2000:]
    assert "taken as Qwen/Qwen2.5-VL-3B-Instruct" in out.stdout


def test_family_prefix_selects_models():
    out = _pytest("--family", "gemma", "--collect-only", "-q", "-k", "vision_tokens")
    assert out.returncode == 0, out.stderr
    assert "google/gemma-3-4b-it" in out.stdout and "google/gemma-4-E2B-it" in out.stdout
    assert "Qwen" not in out.stdout


def test_offline_is_the_default():
    code = ("import os, pytest\n"
            "def test_env():\n"
            "    assert os.environ['HF_HUB_OFFLINE'] == '1'\n")
    out = subprocess.run([sys.executable, "-c",
                          "import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', sys.argv[1]]))",
                          _write_tmp(code)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"})
    assert out.returncode == 0, out.stdout[-1500:]


def _write_tmp(code: str) -> str:
    import tempfile

    fd, path = tempfile.mkstemp(suffix="_offline_probe_test.py")
    with os.fdopen(fd, "w") as f:
        f.write(code)
    return path
