"""Which implementation of the documented API the checks run against (``--impl``).

The checks never import ``vlmspec`` directly: they ask :func:`get` for a documented name, and the
active implementation's table says which module provides it. ``vlmspec`` is the default;
``nemo_automodel`` maps to the documented module paths of the PyPI package; any other value is a
module path whose module defines ``VLMSPEC_IMPL`` (a table like the ones below) — the mutants under
``tests/mutants/`` use that to run the suite against a deliberately broken copy of vlmspec.
"""

from __future__ import annotations

import importlib
from typing import Any

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

_ACTIVE = {"name": "vlmspec", "table": BUILTIN["vlmspec"]}


class NotImplementedInImpl(AssertionError):
    """The implementation under test lacks a documented name: the check fails as 'not implemented'."""


def activate(name: str) -> None:
    """Select the implementation by built-in name or by a module path that defines ``VLMSPEC_IMPL``."""
    if name in BUILTIN:
        table = BUILTIN[name]
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
    _ACTIVE.update(name=name, table=dict(table))


def active() -> str:
    return _ACTIVE["name"]


def module(documented: str) -> Any:
    path = _ACTIVE["table"].get(documented)
    if path is None:
        raise NotImplementedInImpl(f"not implemented: {active()} provides no module for '{documented}'")
    try:
        return importlib.import_module(path)
    except Exception as exc:
        raise NotImplementedInImpl(f"not implemented: {active()} module {path} does not import: "
                                   f"{type(exc).__name__}: {exc}") from exc


def get(documented: str, name: str) -> Any:
    """``documented.name`` from the implementation under test, or a 'not implemented' failure."""
    mod = module(documented)
    try:
        return getattr(mod, name)
    except AttributeError:
        raise NotImplementedInImpl(f"not implemented: {active()} {mod.__name__} has no '{name}'") from None
