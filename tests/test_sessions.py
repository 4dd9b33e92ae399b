"""Two pytest sessions in one process judge two implementations, not one.

mutmut runs every mutant in a process forked from one that already ran the suite, and a user may
compare ``--impl`` runs from one Python process. The checks cache what the implementation made
(collated batches, patched stages, validator answers) and the processors it was handed; before the
plugin dropped them at session start, the second session silently reused the first one's results.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"

SCRIPT = f"""
import sys, pytest
args = ["conformance", "--model", {MODEL!r}, "-k", "test_labels and single_turn", "-q",
        "-p", "no:cacheprovider", "-p", "no:xdist"]
first = int(pytest.main([*args, "--impl", "vlmspec", "--conformance-report", sys.argv[1] + "/a"]))
second = int(pytest.main([*args, "--impl", "tests.mutants.labels_not_shifted", "--conformance-report", sys.argv[1] + "/b"]))
print("EXIT", first, second)
"""


@pytest.mark.slow  # two conformance sessions in a subprocess
def test_second_session_judges_its_own_implementation(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["HF_HUB_OFFLINE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    exits = [line for line in out.stdout.splitlines() if line.startswith("EXIT")]
    assert exits, out.stdout[-3000:] + out.stderr[-3000:]
    # vlmspec passes; the mutant (labels not shifted) fails `labels` in the same process (it passed when
    # the second session reused the first one's collated batches)
    assert exits[-1] == "EXIT 0 1", out.stdout[-3000:]
