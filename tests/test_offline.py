"""Offline by default: a full conformance run opens no network connection except to loopback.

Every Python process of the run (pytest, and any child it starts: torch.distributed workers, pip,
...) imports tests/netblock/sitecustomize.py through the inherited PYTHONPATH, which makes every
non-loopback connect/sendto/getaddrinfo raise and appends it to a log; the log must stay empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NETBLOCK = Path(__file__).resolve().parent / "netblock"
FLAGSHIP = "Qwen/Qwen2.5-VL-3B-Instruct"


def blocked_env(log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_OFFLINE", "PYTEST_", "VLMSPEC_NETBLOCK"))}
    env["PYTHONPATH"] = os.pathsep.join([str(NETBLOCK), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["VLMSPEC_NETBLOCK_LOG"] = str(log)
    return env


PROBE = textwrap.dedent("""
    import multiprocessing, os, socket, subprocess, sys

    def attempt(tag):
        try:
            socket.create_connection(("203.0.113.7", 443), timeout=2)  # TEST-NET-3: never routable
        except OSError as exc:
            print(tag, os.environ.get("VLMSPEC_NETBLOCK_ACTIVE"), "blocked" if "netblock" in str(exc) else f"other: {exc}")
        else:
            print(tag, "CONNECTED")

    if __name__ == "__main__":
        attempt("parent")
        a, b = socket.socketpair()  # local sockets still work
        a.sendall(b"x"); assert b.recv(1) == b"x"
        srv = socket.create_server(("127.0.0.1", 0)); socket.create_connection(srv.getsockname()).close()
        print("loopback ok")
        sys.stdout.flush()
        subprocess.run([sys.executable, "-c", "import socket,os\\ntry:\\n socket.getaddrinfo('huggingface.co', 443)\\nexcept OSError as e: print('child', os.environ.get('VLMSPEC_NETBLOCK_ACTIVE'), 'blocked' if 'netblock' in str(e) else e)"], check=True)
        p = multiprocessing.get_context("spawn").Process(target=attempt, args=("spawned",)); p.start(); p.join()
""")


def test_block_is_active_in_the_process_and_its_children(tmp_path):
    log = tmp_path / "net.log"
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    out = subprocess.run(
        [sys.executable, str(script)], env=blocked_env(log), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    for tag in ("parent", "child", "spawned"):
        assert f"{tag} 1 blocked" in lines, out.stdout
    assert "loopback ok" in lines
    attempts = log.read_text().splitlines()
    assert len(attempts) == 3 and len({line.split()[0] for line in attempts}) == 3  # three processes, three pids


@pytest.mark.slow  # a whole conformance run of one model in a subprocess
def test_full_conformance_run_is_offline(tmp_path):
    from vlmspec.hub import materialize

    materialize(FLAGSHIP)  # the pack is built before the run (materializing may call npm/pip)
    log = tmp_path / "net.log"
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
        "--conformance-report",
        str(tmp_path / "reports"),
    ]
    start = time.monotonic()
    out = subprocess.run(cmd, cwd=ROOT, env=blocked_env(log), capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert " passed" in out.stdout
    assert not log.exists() or log.read_text() == "", f"network attempts during the run:\n{log.read_text()}"
    print(f"offline conformance run: {elapsed:.1f} s")


def test_an_impl_module_is_activated_offline(tmp_path):
    """``--impl <module>`` imports the module (and with it huggingface_hub) while pytest configures; the
    plugin must set offline mode before that: huggingface_hub reads HF_HUB_OFFLINE once, at import.
    Found with a mutant run outside CI (HF_HUB_OFFLINE unset): two golden cases took 7 min 26 s of Hub
    retries, 2.4 s once fixed. (The netblock above cannot show it: a refused lookup falls back at once.)"""
    (tmp_path / "hub_probe.py").write_text(
        "def pytest_collection_finish(session):\n"
        "    import huggingface_hub.constants as c\n"
        "    print('HUB_OFFLINE', c.HF_HUB_OFFLINE)\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTEST_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "conformance",
        "-p",
        "hub_probe",
        "--impl",
        "tests.mutants.qwen2_5_pixels_fp32",
        "--model",
        FLAGSHIP,
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "HUB_OFFLINE True" in out.stdout, out.stdout[-2000:]
