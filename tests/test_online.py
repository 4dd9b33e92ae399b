"""``--online`` end to end against a loopback Hub (``HF_ENDPOINT``): no internet, real huggingface_hub calls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlmspec.hub import materialize

from .conftest import QWEN25
from .hf_cache import real_size_qwen25_config
from .loopback_hub import LoopbackHub

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # conformance runs in subprocesses


def _pack_files() -> dict[str, bytes]:
    snapshot = materialize(QWEN25).snapshot
    return {p.name: p.read_bytes() for p in snapshot.iterdir() if p.name != "vlmspec_pack.json"}


def _run(hub: LoopbackHub, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_ENDPOINT=hub.endpoint, HF_HUB_CACHE=str(tmp_path / "hf-cache"), VLMSPEC_GOLDEN_DIR=str(tmp_path / "golden")
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "conformance",
            "-p",
            "no:cacheprovider",
            "-q",
            "--online",
            "--conformance-report",
            str(tmp_path / "report"),
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _row(tmp_path: Path, model_id: str) -> dict:
    return json.loads((tmp_path / "report" / "conformance-report.json").read_text())["models"][model_id]


def test_online_unregistered_model_downloads_derives_and_checks(tmp_path):
    files = _pack_files()
    files["config.json"] = json.dumps(real_size_qwen25_config(json.loads(files["config.json"]))).encode()
    model_id = "someone/qwen25-online"
    with LoopbackHub({model_id: files}) as hub:
        out = _run(hub, tmp_path, "--model", model_id, "--snapshot-update")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    downloaded = {r.rsplit("/", 1)[-1] for r in hub.requests if "/resolve/" in r and r.startswith("GET")}
    assert {"config.json", "tokenizer.json", "chat_template.json", "preprocessor_config.json"} <= downloaded
    row = _row(tmp_path, model_id)
    assert row["fixture_class"] == "REAL (hub)"
    checks = (
        "labels",
        "label_consistency",
        "vision_tokens",
        "fake_image",
        "golden",
        "pp_chunking",
        "pp_staged_forward",
    )
    assert {c: row["checks"][c]["status"] for c in checks} == dict.fromkeys(checks, "pass")


def test_a_template_changed_on_the_hub_is_a_golden_diff_that_snapshot_update_accepts(tmp_path):
    """A registered model with --online reads the Hub's files instead of its pack."""
    files = _pack_files()
    template = json.loads(files["chat_template.json"])
    assert "You are a helpful assistant." in template["chat_template"]
    template["chat_template"] = template["chat_template"].replace(
        "You are a helpful assistant.", "You are a careful assistant."
    )
    files["chat_template.json"] = json.dumps(template).encode()
    folder = QWEN25.replace("/", "--")
    shutil.copytree(ROOT / "golden" / folder, tmp_path / "golden" / folder)
    with LoopbackHub({QWEN25: files}) as hub:
        changed = _run(hub, tmp_path, "--model", QWEN25, "-k", "golden and not pp_golden")
        assert changed.returncode == 1, changed.stdout[-3000:]
        assert "careful assistant" in changed.stdout and _row(tmp_path, QWEN25)["fixture_class"] == "REAL (hub)"
        assert (
            _run(hub, tmp_path, "--model", QWEN25, "-k", "golden and not pp_golden", "--snapshot-update").returncode
            == 0
        )
        again = _run(hub, tmp_path, "--model", QWEN25, "-k", "golden and not pp_golden")
    assert again.returncode == 0, again.stdout[-3000:]
    assert any("careful assistant" in p.read_text() for p in (tmp_path / "golden" / folder).rglob("*.json"))
