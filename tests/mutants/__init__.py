"""A catalogue of mutants: vlmspec with ONE realistic bug each, to measure what the checks catch.

Each module here is an implementation for ``--impl``: importing it patches vlmspec module attributes
(in that process only) and it defines

- ``VLMSPEC_IMPL``: the vlmspec table (documented module -> module path), so the checks run the
  patched vlmspec;
- ``EXPECT``: what must fail. With ``RUNNER = "conformance"`` (the default) these are conformance
  check names (``labels``, ``golden``...) that must have status FAIL in the conformance report; with
  ``RUNNER = "tests/<file>.py"`` (the check lives in vlmspec's own tests, not in conformance) they are
  test function names that must fail in that file;
- optional ``MODEL`` (conformance: the model to run, default Qwen/Qwen2.5-VL-3B-Instruct; a ``model@collate``
  row label runs that model and reads that row, e.g. a record's ``collate_options`` row) and
  ``SELECT`` (an extra ``-k`` expression that keeps the run cheap);
- optional ``SURVIVES = "reason"``: a mutant known to slip through; the mutation test then asserts it
  still does (so a new check that kills it forces the catalogue to be updated).

Nothing in this package is imported by the test process itself: :func:`catalogue` reads those
constants with ``ast``, and ``tests/test_mutants.py`` runs every mutant in a subprocess::

    python -m pytest conformance --impl tests.mutants.<name> --model <MODEL> -k <checks> ...
    python -m pytest tests/<file>.py --impl tests.mutants.<name> -k <SELECT> ...
"""

from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.impl import BUILTIN

VLMSPEC_TABLE: dict[str, str] = dict(BUILTIN["vlmspec"])
# Every mutant derives from vlmspec (conformance.impl reads this from the package above a mutant module),
# so vlmspec's recorded expected failures still apply: the mutation alone decides what fails.
VLMSPEC_IMPL_BASE = "vlmspec"
DEFAULT_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
HERE = Path(__file__).resolve().parent


class MutantDoesNotApply(RuntimeError):
    """The code a mutant patches is gone or renamed: the mutant must be updated, not silently skipped."""


def replace(target: str, new: Any) -> Any:
    """Replace ``module:name`` by *new* everywhere vlmspec refers to it; return the original.

    Sub-modules import helpers by name (``from .default import shift_for_next_token``), so every loaded
    ``vlmspec`` module attribute (and module-level dict value, e.g. a registry) that *is* the original
    object is replaced, not only the defining module's. Imports the documented facades first so every
    sub-module that could hold a reference is loaded.
    """
    module_path, _, name = target.partition(":")
    for facade in VLMSPEC_TABLE.values():
        try:
            importlib.import_module(facade)
        except Exception:  # noqa: BLE001 - a facade that fails to import is reported by the checks
            pass
    module = importlib.import_module(module_path)
    if not hasattr(module, name):
        raise MutantDoesNotApply(f"{module_path} has no {name!r}: update this mutant")
    original = getattr(module, name)
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod_name == "vlmspec" or mod_name.startswith("vlmspec.")):
            continue
        for attr, value in list(vars(mod).items()):
            if value is original:
                setattr(mod, attr, new)
            elif isinstance(value, dict) and not attr.startswith("__"):
                for key, item in list(value.items()):
                    if item is original:
                        value[key] = new
    return original


@dataclass(frozen=True)
class Mutant:
    name: str
    summary: str  # first docstring line
    runner: str  # "conformance" or "tests/<file>.py"
    expect: tuple[str, ...]
    model: str
    select: str | None
    survives: str | None

    @property
    def module(self) -> str:
        return f"tests.mutants.{self.name}"


def _constants(tree: ast.Module) -> dict[str, Any]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


def catalogue() -> list[Mutant]:
    """Every mutant module's metadata, read without importing (importing would apply the bug)."""
    mutants = []
    for path in sorted(HERE.glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        consts = _constants(tree)
        doc = ast.get_docstring(tree) or ""
        if "EXPECT" not in consts:
            raise ValueError(f"{path}: a mutant must define EXPECT")
        mutants.append(
            Mutant(
                name=path.stem,
                summary=doc.splitlines()[0] if doc else path.stem,
                runner=consts.get("RUNNER", "conformance"),
                expect=tuple(sorted(consts["EXPECT"])),
                model=consts.get("MODEL", DEFAULT_MODEL),
                select=consts.get("SELECT"),
                survives=consts.get("SURVIVES"),
            )
        )
    return mutants
