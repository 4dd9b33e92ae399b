"""The conformance plugin: command line (model selection, suggestions, listing, offline default), the
implementation lineage and missing-dependency rules (conformance/impl.py), and implementation-level cells
end to end (evidence, per-implementation xfails, XPASS, environment problems)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conformance import impl
from vlmspec.hub.recipe import family_folder

from .conftest import QWEN25

ROOT = Path(__file__).resolve().parents[1]


def _pytest(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "conformance", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_list_models_shows_every_record_with_its_class():
    out = _pytest("--list-models")
    assert out.returncode == 0, out.stderr
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in out.stdout and "DERIVED" in out.stdout
    assert "google/gemma-3-4b-it" in out.stdout and "REAL" in out.stdout


def test_unknown_model_suggests_closest_ids():
    out = _pytest("--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--collect-only", "-q")
    assert out.returncode != 0
    assert "not a registered model, and your Hugging Face cache" in out.stderr
    assert "Registered ids close to it: Qwen/Qwen2.5-VL-3B-Instruct" in out.stderr


def test_unknown_model_offline_says_what_to_do_and_suggests_nothing_unrelated():
    out = _pytest("--model", "llava-hf/llava-1.5-7b-hf", "--collect-only", "-q")
    assert out.returncode != 0
    err = out.stderr
    assert "--online" in err and "`hf download llava-hf/llava-1.5-7b-hf`" in err and "docs/adding-a-family.md" in err
    assert "close to it" not in err
    assert "couldn't find them in the cached files." in err  # the loader's reason, whole


def test_an_unreachable_hub_fails_fast_with_one_message():
    """--online against an endpoint that accepts connections and never answers: seconds, not minutes."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(server.accept()) for _ in range(8)], daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    started = time.monotonic()
    out = _pytest(
        "--online", "--model", "llava-hf/llava-1.5-7b-hf", "--collect-only", "-q", env={"HF_ENDPOINT": endpoint}
    )
    elapsed = time.monotonic() - started
    server.close()
    assert out.returncode != 0
    assert f"the Hub at {endpoint} is unreachable from here" in out.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s"


@pytest.mark.slow  # a pytest run in a subprocess over one model's cases
def test_a_refused_pack_is_one_failure_per_model(tmp_path):
    families = tmp_path / "families"
    shutil.copytree(family_folder(QWEN25).path, families / family_folder(QWEN25).path.name)
    template = families / family_folder(QWEN25).path.name / "chat_template.json"
    template.write_text(template.read_text().replace("assistant", "assistent"))
    out = _pytest(
        "--model",
        QWEN25,
        "-k",
        "labels or golden",
        "-q",
        env={"VLMSPEC_FAMILIES": str(families), "VLMSPEC_HUB_CACHE": str(tmp_path / "hub")},
    )
    assert out.returncode == 1
    summary = out.stdout.strip().splitlines()[-1]
    assert summary.startswith("1 failed,") and " skipped" in summary, summary
    assert "chat_template.json differs from the sha256 recorded in PROVENANCE.md" in out.stdout
    assert "pack refused or unbuildable, reported once on" in out.stdout


@pytest.mark.slow  # a pytest run in a subprocess
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
    code = "import os, pytest\ndef test_env():\n    assert os.environ['HF_HUB_OFFLINE'] == '1'\n"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', sys.argv[1]]))",
            _write_tmp(code),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"},
    )
    assert out.returncode == 0, out.stdout[-1500:]


def _write_tmp(code: str) -> str:
    import tempfile

    fd, path = tempfile.mkstemp(suffix="_offline_probe_test.py")
    with os.fdopen(fd, "w") as f:
        f.write(code)
    return path


# --------------------------------------------------------------------------------------------------
# implementation lineage and missing dependencies (conformance/impl.py)
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def keep_impl(monkeypatch):
    """Restore the active implementation after a test that activates another."""
    monkeypatch.setattr(impl, "_ACTIVE", dict(impl._ACTIVE))


@pytest.fixture
def probe_modules():
    """Forget the probe packages before and after: a later pytest session in this process (mutmut runs
    the suite more than once per process) must import its own tmp_path copy, not a stale one."""

    def forget():
        for name in [n for n in sys.modules if n.split(".")[0] in ("probe_dep", "probe_lineage")]:
            del sys.modules[name]

    forget()
    yield
    forget()


def _package(root: Path, name: str, files: dict[str, str]) -> None:
    (root / name).mkdir()
    for file, text in files.items():
        (root / name / file).write_text(textwrap.dedent(text), encoding="utf-8")


def test_names_follow_the_base_declared_by_a_package_above(tmp_path, monkeypatch, keep_impl, probe_modules):
    _package(
        tmp_path,
        "probe_lineage",
        {
            "__init__.py": 'VLMSPEC_IMPL_BASE = "vlmspec"\n',
            "variant.py": "from conformance.impl import BUILTIN\nVLMSPEC_IMPL = dict(BUILTIN['vlmspec'])\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    impl.activate("probe_lineage.variant")
    assert impl.names() == ["probe_lineage.variant", "vlmspec"]
    impl.activate("vlmspec")
    assert impl.names() == ["vlmspec"]


def test_module_that_needs_an_absent_package_is_an_environment_problem(tmp_path, monkeypatch, keep_impl, probe_modules):
    _package(
        tmp_path,
        "probe_dep",
        {
            "__init__.py": "VLMSPEC_IMPL = {'collate_fns': 'probe_dep.collate', 'fake_image': 'probe_dep.absent'}\n",
            "collate.py": "import zz_vlmspec_absent_probe  # noqa: F401\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    impl.activate("probe_dep")
    with pytest.raises(impl.MissingDependency, match="needs the package `zz-vlmspec-absent-probe`"):
        impl.module("collate_fns")
    with pytest.raises(impl.NotImplementedInImpl, match="probe_dep.absent does not import"):
        impl.module("fake_image")  # the implementation's own module is missing: a verdict


def test_mutants_derive_from_vlmspec():
    text = (ROOT / "tests" / "mutants" / "__init__.py").read_text(encoding="utf-8")
    assert '\nVLMSPEC_IMPL_BASE = "vlmspec"\n' in text


def test_an_absent_builtin_implementation_is_a_usage_error(keep_impl):
    if importlib.util.find_spec("nemo_automodel") is not None:
        pytest.skip("nemo_automodel is installed here")
    with pytest.raises(ValueError, match=r"not installed .*pip install nemo-automodel"):
        impl.activate("nemo_automodel")


def _raise_in_vlmspec(source: str) -> BaseException:
    """The exception ``source`` raises, from a frame whose file lies in vlmspec (the active implementation)."""
    import vlmspec

    filename = str(Path(vlmspec.__file__).parent / "_probe_frame.py")
    try:
        exec(compile(source, filename, "exec"), {})
    except BaseException as exc:  # noqa: BLE001
        return exc
    raise AssertionError("source did not raise")


@pytest.mark.parametrize(
    "source, module, package, hint",
    [
        ("import zz_vlmspec_absent_probe", "zz_vlmspec_absent_probe", "zz-vlmspec-absent-probe", ""),
        ("import zz_vlmspec_absent_probe.sub", "zz_vlmspec_absent_probe", "zz-vlmspec-absent-probe", ""),
        (
            "raise ImportError('qwen_omni_utils is required for qwen3_omni_collate_fn. Install it with: "
            "pip install nemo-automodel[vlm-media]')",
            "qwen_omni_utils",
            "qwen-omni-utils",
            "pip install nemo-automodel[vlm-media]",
        ),
        (  # transformers' require_version: a PackageNotFoundError whose ``name`` is the whole sentence
            "import importlib.metadata\nraise importlib.metadata.PackageNotFoundError(\"The 'zz_vlmspec_absent_probe"
            ">=0.0.9' distribution was not found and is required by this application. Try: `pip install "
            'zz-vlmspec-absent-probe`")',
            "zz_vlmspec_absent_probe",
            "zz-vlmspec-absent-probe",
            "",
        ),
        (
            "try:\n    import zz_vlmspec_absent_probe\nexcept ImportError as e:\n    raise RuntimeError('wrapped') from e",
            "zz_vlmspec_absent_probe",
            "zz-vlmspec-absent-probe",
            "",
        ),
    ],
)
def test_missing_dependency_of_the_implementation(source, module, package, hint):
    found = impl.missing_dependency(_raise_in_vlmspec(source))
    assert found == impl.Dependency(module, package, hint)
    assert f"needs the package `{package}` (module `{module}`): pip install {package}" in found.message


@pytest.mark.parametrize(
    "source",
    [
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')",  # the harness's own module
        "raise ModuleNotFoundError(\"No module named 'vlmspec.x'\", name='vlmspec.x')",  # the implementation's own
        "raise ModuleNotFoundError(\"No module named 'json'\", name='json')",  # importable: not missing
        "raise ImportError('cannot do this')",  # no module named
        "raise KeyError('audio')",
    ],
)
def test_not_a_missing_dependency(source):
    assert impl.missing_dependency(_raise_in_vlmspec(source)) is None


def test_a_missing_program_behind_a_module_is_an_environment_problem(monkeypatch):
    """librosa decodes a video's audio track through audioread, which runs the ffmpeg program."""
    not_installed = type("NotInstalledError", (Exception,), {"__module__": "audioread.ffdec"})
    try:
        try:
            raise not_installed()
        except Exception as exc:
            raise ValueError("sample 0: could not read the audio track") from exc
    except ValueError as wrapped:
        monkeypatch.setattr(impl.shutil, "which", lambda program: None)
        found = impl.missing_dependency(wrapped)
        assert found is not None and found.package == "ffmpeg" and found.module == "audioread"
        assert "needs the program `ffmpeg` (run by the module `audioread`): apt-get install ffmpeg" in found.message
        monkeypatch.setattr(impl.shutil, "which", lambda program: f"/usr/bin/{program}")
        assert impl.missing_dependency(wrapped) is None  # installed after all: a verdict, not the environment


def test_import_error_outside_the_implementation_is_not_an_environment_problem():
    try:
        import zz_vlmspec_absent_probe  # noqa: F401
    except ImportError as exc:
        assert impl.missing_dependency(exc) is None


# --------------------------------------------------------------------------------------------------
# cells end to end: evidence, per-implementation xfails, XPASS, env (a probe implementation in tmp)
# --------------------------------------------------------------------------------------------------
_CELLS = """
import pytest

from conformance.checks import CheckFailure
from probe_impl import needs

CASES = ["pass_case", "check_fails", "known_bug", "fixed_bug", "needs_module", "needs_guard"]


@pytest.mark.vlmspec_cell(model="(implementation)", check="api")
@pytest.mark.parametrize("case", CASES)
def test_cell(case):
    if case == "check_fails":
        raise CheckFailure("[probe | check api] documented name missing: probe_fn")
    if case == "known_bug":
        raise KeyError("audio")
    if case == "needs_module":
        needs.load()
    if case == "needs_guard":
        needs.guarded()
"""


def _probe_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    if not (tmp_path / "probe_impl").exists():
        _package(
            tmp_path,
            "probe_impl",
            {
                "__init__.py": "from conformance.impl import BUILTIN\nVLMSPEC_IMPL = dict(BUILTIN['vlmspec'])\n"
                "VLMSPEC_IMPL_BASE = 'vlmspec'\n",
                "needs.py": "def load():\n    import zz_vlmspec_absent_probe  # noqa: F401\n\n\n"
                "def guarded():\n    raise ImportError('zz_vlmspec_absent_guard is required for guarded(). '\n"
                "                      'Install it with: pip install probe[extra]')\n",
            },
        )
        (tmp_path / "test_cells.py").write_text(_CELLS, encoding="utf-8")
        (tmp_path / "impls").mkdir()
        entry = {"check": "api", "reason": "{} deviation", "link": "docs/findings.md#probe"}
        for name, case in (("vlmspec", "known_bug"), ("probe_impl", "fixed_bug")):
            data = {
                "impl": name,
                "package": f"{name}==1",
                "expected_failures": [{**entry, "fixtures": [case], "reason": f"{case} deviation"}],
            }
            (tmp_path / "impls" / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "test_cells.py",
            "-p",
            "no:cacheprovider",
            "--impl",
            "probe_impl",
            "--conformance-report",
            str(tmp_path / "rep"),
            *args,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "VLMSPEC_IMPLS_DIR": str(tmp_path / "impls")},
    )
    return out, json.loads((tmp_path / "rep" / "conformance-report.json").read_text())


@pytest.mark.slow  # a pytest run in a subprocess
def test_implementation_cells_carry_evidence_xfails_xpass_and_env(tmp_path):
    out, report = _probe_run(tmp_path)
    assert out.returncode == 1, out.stdout[-3000:]  # check_fails and the XPASS of fixed_bug
    assert report["implementation_lineage"] == ["probe_impl", "vlmspec"]
    cell = report["models"]["(implementation)"]["checks"]["api"]
    by_case = {r["case"]: r for r in cell["results"]}
    assert {c: r["outcome"] for c, r in by_case.items()} == {
        "pass_case": "passed",
        "check_fails": "failed",
        "known_bug": "xfailed",
        "fixed_bug": "xpassed",
        "needs_module": "env",
        "needs_guard": "env",
    }
    assert cell["text"] == "FAIL 2/6 +xfail 1"  # the recorded deviation beside the failures stays visible
    assert by_case["check_fails"]["evidence"] == "[probe | check api] documented name missing: probe_fn"
    known = by_case["known_bug"]
    assert (known["reason"], known["link"]) == ("known_bug deviation", "docs/findings.md#probe")  # from the base's file
    assert known["evidence"].startswith("KeyError: 'audio'\n  at test_cells.py:")
    assert by_case["fixed_bug"]["reason"] == "fixed_bug deviation" and "XPASS" in by_case["fixed_bug"]["evidence"]
    environment = report["models"]["(implementation)"]["environment"]
    assert any("`zz-vlmspec-absent-probe` (module `zz_vlmspec_absent_probe`)" in e for e in environment)
    assert any("its own hint: pip install probe[extra]" in e for e in environment)
    assert (
        "(implementation) · api: FAIL 2/6 +xfail 1: [probe | check api] documented name missing: probe_fn" in out.stdout
    )
    md = (tmp_path / "rep" / "conformance-report.md").read_text()
    assert "## Failures and findings" in md and "recorded reason: known_bug deviation" in md


@pytest.mark.slow  # a pytest run in a subprocess
def test_environment_problems_do_not_fail_the_run(tmp_path):
    out, report = _probe_run(tmp_path, "-k", "pass_case or known_bug or needs_module")
    assert out.returncode == 0, out.stdout[-3000:]
    cell = report["models"]["(implementation)"]["checks"]["api"]
    assert cell["status"] == "env" and cell["text"] == "env 1/3 +xfail 1"
    assert "(implementation): environment: the implementation needs the package `zz-vlmspec-absent-probe`" in out.stdout


def test_unknown_cell_check_is_a_usage_error(tmp_path):
    (tmp_path / "test_bad.py").write_text(
        "import pytest\n\n@pytest.mark.vlmspec_cell(model='(implementation)', check='robustnes')\ndef test_x():\n    pass\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "test_bad.py", "-p", "no:cacheprovider", "--collect-only"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 4 and "did you mean 'robustness'" in out.stderr
