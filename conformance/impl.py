"""Which implementation of the documented API the checks run against (``--impl``).

The checks never import ``vlmspec`` directly: they ask :func:`get` for a documented name, and the
active implementation's table says which module provides it. ``vlmspec`` is the default;
``nemo_automodel`` maps to the documented module paths of the PyPI package; a training framework's
name (``trl``, ``llamafactory``, ``ms_swift``, ``axolotl``: :data:`conformance.frameworks.ADAPTERS`) runs
its adapter as the documented collate module; any other value is a
module path whose module defines ``VLMSPEC_IMPL`` (a table like the ones below) — the mutants under
``tests/mutants/`` use that to run the suite against a deliberately broken copy of vlmspec.

Such a module (or a package above it) may define ``VLMSPEC_IMPL_BASE = "vlmspec"``: the name of the
implementation it derives from. :func:`names` then lists both, so findings recorded for the base
(expected failures) also apply to the derived implementation.

A module that the implementation needs but that is not installed is an environment problem, not a
verdict: :func:`missing_dependency` recognizes it and :class:`MissingDependency` carries the install hint.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
from dataclasses import dataclass
from typing import Any

from .frameworks import ADAPTER_ROOTS, ADAPTERS

DOCUMENTED = ("fake_image", "collate_fns", "pp_media", "pipelining", "llama_nemotron_vl")

BUILTIN: dict[str, dict[str, str]] = {
    "vlmspec": {
        "fake_image": "vlmspec.fake_image",
        "collate_fns": "vlmspec.collate_fns",
        "pp_media": "vlmspec.pp_media",
        "pipelining": "vlmspec.pipelining",
        "llama_nemotron_vl": "vlmspec.models.llama_nemotron_vl",
    },
    "nemo_automodel": {
        "fake_image": "nemo_automodel.components.datasets.vlm.fake_image",
        "collate_fns": "nemo_automodel.components.datasets.vlm.collate_fns",
        "pp_media": "nemo_automodel.components.datasets.vlm.pp_media",
        "pipelining": "nemo_automodel.components.distributed.pipelining.hf_utils",
        "llama_nemotron_vl": "nemo_automodel.components.models.llama_nemotron_vl.model",
    },
}
# What `pip install` brings each built-in (the usage error when it is not installed names it).
BUILTIN_PACKAGES = {"vlmspec": "vlmspec (pip install -e . in this checkout)", "nemo_automodel": "nemo-automodel"}

# Modules the harness itself imports: if one of these is missing the harness is broken, and that is an
# error of the run, never an environment finding about the implementation.
HARNESS_MODULES = frozenset(
    {
        "vlmspec",
        "conformance",
        "torch",
        "transformers",
        "PIL",
        "pytest",
        "_pytest",
        "pluggy",
        "numpy",
        "tokenizers",
        "huggingface_hub",
        "safetensors",
    }
)
# Import name -> distribution name where they differ by more than '_' -> '-'.
PACKAGES = {
    "qwen_omni_utils": "qwen-omni-utils",
    "qwen_vl_utils": "qwen-vl-utils",
    "cv2": "opencv-python",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "av": "av",
    "decord": "decord",
    "flash_attn": "flash-attn",
    "soundfile": "soundfile",
    "librosa": "librosa",
    "timm": "timm",
    "einops": "einops",
    "mistral_common": "mistral-common",
    "google": "protobuf",
}

_ACTIVE: dict[str, Any] = {"name": "vlmspec", "table": BUILTIN["vlmspec"], "lineage": ("vlmspec",)}


class NotImplementedInImpl(AssertionError):
    """The implementation under test lacks a documented name: the check fails as 'not implemented'."""


@dataclass(frozen=True)
class Dependency:
    """A module the implementation imports that is not installed, and how to install it."""

    module: str  # top-level import name, e.g. "qwen_omni_utils"
    package: str  # distribution to install, e.g. "qwen-omni-utils" (or a program, e.g. "ffmpeg")
    hint: str = ""  # the implementation's own install advice, when its message gives one
    program: str = ""  # a system program the module runs, not a pip package: how to install it

    @property
    def message(self) -> str:
        if self.program:
            return (
                f"environment: the implementation needs the program `{self.package}` (run by the module "
                f"`{self.module}`): {self.program}"
            )
        text = (
            f"environment: the implementation needs the package `{self.package}` (module `{self.module}`): "
            f"pip install {self.package}"
        )
        return text + (f" (its own hint: {self.hint})" if self.hint else "")


class MissingDependency(Exception):
    """A module the implementation under test needs is not installed: an environment problem, no verdict."""

    def __init__(self, dependency: Dependency, detail: str = "") -> None:
        super().__init__(dependency.message + (f" [{detail}]" if detail else ""))
        self.dependency = dependency


def activate(name: str) -> None:
    """Select the implementation by built-in name or by a module path that defines ``VLMSPEC_IMPL``.

    Raises ``ValueError`` (a usage problem) when the implementation itself is not installed: a run
    against an absent implementation must not turn into a green row of environment findings.
    """
    if name in BUILTIN:
        table, lineage = BUILTIN[name], (name,)
        root = next(iter(table.values())).split(".")[0]
        if importlib.util.find_spec(root) is None:
            raise ValueError(
                f"--impl {name}: the implementation is not installed (module `{root}` not found): "
                f"pip install {BUILTIN_PACKAGES.get(name, name)}"
            )
    elif name in ADAPTERS:
        # a training framework through its adapter: the adapter is the documented collate module
        try:
            importlib.import_module(ADAPTERS[name])
        except ImportError as exc:
            raise ValueError(
                f"--impl {name}: the framework's adapter does not import ({type(exc).__name__}: {exc}); "
                f"install the framework with `./dev frameworks --install {name}` and put .venv-fw/{name} on "
                "PYTHONPATH (./dev frameworks does both)"
            ) from exc
        table, lineage = {"collate_fns": ADAPTERS[name]}, (name,)
    else:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"--impl {name}: not a built-in ({', '.join(BUILTIN)}) and not importable: {exc}") from exc
        table = getattr(module, "VLMSPEC_IMPL", None)
        if not isinstance(table, dict):
            raise ValueError(f"--impl {name}: module has no VLMSPEC_IMPL table (documented module -> module path)")
        unknown = set(table) - set(DOCUMENTED)
        if unknown:
            raise ValueError(f"--impl {name}: VLMSPEC_IMPL names unknown modules {sorted(unknown)}")
        base = _declared_base(name)
        lineage = (name,) + ((base,) if base and base != name else ())
    _ACTIVE.update(name=name, table=dict(table), lineage=lineage)


def _declared_base(name: str) -> str | None:
    """``VLMSPEC_IMPL_BASE`` of module ``name`` or, failing that, of the nearest package above it."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        holder = sys.modules.get(".".join(parts[:i]))
        base = getattr(holder, "VLMSPEC_IMPL_BASE", None)
        if isinstance(base, str):
            return base
    return None


def active() -> str:
    return _ACTIVE["name"]


def framework() -> Any:
    """The active implementation's :class:`conformance.frameworks.Framework` when it is a framework
    adapter (``--impl trl``), else None."""
    from .frameworks import framework as lookup

    if active() in BUILTIN:
        return None
    return lookup(active())


def names() -> list[str]:
    """The active implementation's name, then the implementation it derives from (``VLMSPEC_IMPL_BASE``)."""
    return list(_ACTIVE["lineage"])


def module(documented: str) -> Any:
    path = _ACTIVE["table"].get(documented)
    if path is None:
        raise NotImplementedInImpl(f"not implemented: {active()} provides no module for '{documented}'")
    try:
        return importlib.import_module(path)
    except Exception as exc:
        dependency = missing_dependency(exc)
        if dependency is not None:
            raise MissingDependency(dependency, f"{path} does not import: {type(exc).__name__}: {exc}") from exc
        raise NotImplementedInImpl(
            f"not implemented: {active()} module {path} does not import: {type(exc).__name__}: {exc}"
        ) from exc


def get(documented: str, name: str) -> Any:
    """``documented.name`` from the implementation under test, or a 'not implemented' failure."""
    mod = module(documented)
    try:
        return getattr(mod, name)
    except AttributeError:
        raise NotImplementedInImpl(f"not implemented: {active()} {mod.__name__} has no '{name}'") from None


# --------------------------------------------------------------------------------------------------
# Missing dependencies of the implementation
# --------------------------------------------------------------------------------------------------
_NAMED = (
    re.compile(r"No module named '([^']+)'"),
    # the optional-dependency guards libraries write: "qwen_omni_utils is required for ..."
    re.compile(r"^[`'\"]?([A-Za-z_][\w.]*)[`'\"]? (?:is|are) (?:required|needed|not installed)"),
    re.compile(r"requires? (?:the )?[`'\"]?([A-Za-z_][\w.]*)[`'\"]? (?:library|package|module)"),
)
_DISTRIBUTION = re.compile(r"The '([A-Za-z0-9_.\-]+?)(?:[<>=!~ \[;].*)?' distribution was not found")
_HINT = re.compile(r"(pip install [^\s'\"`]+)")


def missing_dependency(exc: BaseException) -> Dependency | None:
    """The uninstalled module behind ``exc`` (or an exception it was raised from), when that module is
    neither the harness's nor the implementation's own and is really not importable; else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MissingDependency):
            return exc.dependency
        if isinstance(exc, ImportError):
            found = _from_import_error(exc)
            if found is not None:
                return found
        found = _missing_program(exc)
        if found is not None:
            return found
        exc = exc.__cause__ or exc.__context__
    return None


_PROGRAMS = {
    # librosa reads what soundfile cannot (a video's audio track) through audioread, whose decoder is the
    # ffmpeg command-line program: without it audioread raises one of these
    ("audioread", "NotInstalledError"): "ffmpeg",
    ("audioread", "NoBackendError"): "ffmpeg",
}
_PROGRAM_INSTALL = "apt-get install ffmpeg (Debian/Ubuntu) or conda install ffmpeg"


def _missing_program(exc: BaseException) -> Dependency | None:
    """The system program behind ``exc`` (a module's 'not installed' error) when it is really absent."""
    root = type(exc).__module__.split(".")[0]
    program = _PROGRAMS.get((root, type(exc).__name__))
    if program is None or shutil.which(program) is not None:
        return None
    return Dependency(root, program, program=_PROGRAM_INSTALL)


def _from_import_error(exc: ImportError) -> Dependency | None:
    message = str(exc)
    name = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if isinstance(exc, importlib.metadata.PackageNotFoundError):
        # transformers' require_version: "The 'qwen_omni_utils>=0.0.9' distribution was not found ...";
        # its ``name`` is that whole sentence, not a module
        hit = _DISTRIBUTION.search(message)
        name = hit.group(1).replace("-", "_") if hit else None
    for pattern in _NAMED:
        if name:
            break
        hit = pattern.search(message)
        name = hit.group(1) if hit else None
    if not name:
        return None
    root = name.split(".")[0]
    if root in HARNESS_MODULES or root in impl_roots() or not _raised_in_implementation(exc):
        return None
    try:
        if importlib.util.find_spec(root) is not None:
            return None  # importable after all: a version or API problem, which is a verdict
    except (ImportError, ValueError):
        pass
    hint = _HINT.search(message)
    package = PACKAGES.get(root, root.replace("_", "-"))
    own = hint.group(1) if hint and hint.group(1) != f"pip install {package}" else ""
    return Dependency(root, package, own)


def impl_roots() -> set[str]:
    """Top-level packages of the active implementation (its table's modules and an ``--impl`` module path;
    for a framework adapter, the framework's package, not the harness that holds the adapter)."""
    if active() in ADAPTERS:
        return {ADAPTER_ROOTS[active()]}
    return {p.split(".")[0] for p in _ACTIVE["table"].values()} | {active().split(".")[0]}


def _impl_dirs() -> list[str]:
    dirs = []
    if active() in ADAPTERS:  # the adapter file itself runs the framework's code
        spec = importlib.util.find_spec(ADAPTERS[active()])
        if spec is not None and spec.origin:
            dirs.append(os.path.realpath(spec.origin))
    for root in impl_roots():
        try:
            spec = importlib.util.find_spec(root)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(os.path.realpath(location) + os.sep)
    return dirs


def _raised_in_implementation(exc: BaseException) -> bool:
    """Whether a frame of ``exc``'s traceback runs the implementation's code (or imports it)."""
    dirs = _impl_dirs()
    tb = exc.__traceback__
    while tb is not None:
        filename = os.path.realpath(tb.tb_frame.f_code.co_filename)
        if any(filename.startswith(d) for d in dirs):
            return True
        tb = tb.tb_next
    return False
