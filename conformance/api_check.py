"""The ``api`` check: the implementation's names and signatures against the documented API pages.

The pages are stored as data in ``fixtures/api/documented_api.json`` (see its PROVENANCE.md): per
documented module, every documented name and, for a callable, its parameter names in documented order
(``None`` for data such as constants). Conventions:

- every documented parameter is positional-or-keyword (the pages print no ``*`` or ``/``), so a
  conforming implementation accepts it positionally and by keyword;
- ``self`` is skipped on both sides; ``kwargs``/``args`` in the data stand for ``**kwargs``/``*args``
  (any name of the implementation's ``**``/``*`` parameter matches);
- ``Class.method`` resolves through attributes; a class is checked through its constructor;
- an undocumented extra parameter is allowed only where documented calls cannot notice it: it has a
  default and no documented parameter follows it positionally.

The functions return problem lists, one readable line per problem, and never raise for a deviation.
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).resolve().parents[1] / "fixtures" / "api" / "documented_api.json"

# manifest key (module path below ``nemo_automodel.components.``) -> documented module (conformance.impl.DOCUMENTED)
PAGE_MODULES = {
    "datasets.vlm.fake_image": "fake_image",
    "datasets.vlm.collate_fns": "collate_fns",
    "datasets.vlm.pp_media": "pp_media",
    "distributed.pipelining.hf_utils": "pipelining",
    "models.llama_nemotron_vl.model": "llama_nemotron_vl",
}

Documented = Mapping[str, "Sequence[str] | None"]

_VAR_NAMES = {inspect.Parameter.VAR_POSITIONAL: "args", inspect.Parameter.VAR_KEYWORD: "kwargs"}
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def load_manifest(path: Path = MANIFEST) -> dict[str, dict[str, list[str] | None]]:
    """The documented names per documented module name (``fake_image``, ``collate_fns``, ...)."""
    raw = json.loads(Path(path).read_text())
    unknown = sorted(set(raw) - set(PAGE_MODULES))
    if unknown:
        raise ValueError(f"{path}: unknown documented modules {unknown}; known: {sorted(PAGE_MODULES)}")
    return {PAGE_MODULES[key]: names for key, names in raw.items()}


def resolve(module: Any, dotted: str) -> Any:
    """``module.A.b`` for ``dotted == "A.b"``; raises AttributeError naming the first missing part."""
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _documented_name(param: inspect.Parameter) -> str:
    return _VAR_NAMES.get(param.kind, param.name)


def _rename_guess(wanted: str, position: int, params: list[inspect.Parameter], undocumented: list[str]) -> str | None:
    """The undocumented parameter that most likely replaced ``wanted``: closest spelling, else same position."""
    close = difflib.get_close_matches(wanted, undocumented, n=1, cutoff=0.6)
    if close:
        return close[0]
    if position < len(params) and params[position].name in undocumented:
        return params[position].name
    return None


def signature_problems(name: str, documented: Sequence[str], signature: inspect.Signature) -> list[str]:
    """One line per way ``signature`` fails the documented parameter list of ``name``."""
    want = [w for w in documented if w != "self"]
    params = [p for p in signature.parameters.values() if p.name != "self"]
    by_name = {_documented_name(p): p for p in params}
    undocumented = [p.name for p in params if p.kind not in _VAR_NAMES and p.name not in want]
    problems: list[str] = []
    renamed: set[str] = set()
    for position, wanted in enumerate(want):
        if wanted in by_name:
            continue
        if wanted in ("args", "kwargs"):
            star = "**" if wanted == "kwargs" else "*"
            problems.append(
                f"{name}: documented {star}{wanted} has no counterpart: documented extra arguments are rejected"
            )
            continue
        guess = _rename_guess(wanted, position, params, [u for u in undocumented if u not in renamed])
        absorbed = " (only a **kwargs would swallow it)" if "kwargs" in by_name else ""
        if guess:
            renamed.add(guess)
            problems.append(
                f"{name}: documented parameter '{wanted}' has no counterpart (renamed to '{guess}'?){absorbed}"
            )
        else:
            problems.append(f"{name}: documented parameter '{wanted}' has no counterpart{absorbed}")
    for kind, what, fails in (
        (inspect.Parameter.KEYWORD_ONLY, "keyword-only", "a positional call"),
        (inspect.Parameter.POSITIONAL_ONLY, "positional-only", "a keyword call"),
    ):
        hits = [w for w in want if w in by_name and by_name[w].kind is kind]
        if hits:
            listed = ", ".join(f"'{w}'" for w in hits)
            problems.append(
                f"{name}: parameter{'s' if len(hits) > 1 else ''} {listed} {'are' if len(hits) > 1 else 'is'} "
                f"{what}; the page documents {'them' if len(hits) > 1 else 'it'} positional-or-keyword "
                f"({fails} fails)"
            )
    present = [w for w in want if w in by_name]
    actual_order = [_documented_name(p) for p in params if _documented_name(p) in present]
    if actual_order != present:
        problems.append(
            f"{name}: parameters reordered: documented ({', '.join(present)}), "
            f"implementation ({', '.join(actual_order)})"
        )
    for index, param in enumerate(params):
        if param.name not in undocumented or param.name in renamed:
            continue
        if param.default is inspect.Parameter.empty:
            problems.append(
                f"{name}: undocumented parameter '{param.name}' has no default: documented calls omit it and fail"
            )
            continue
        later = [p.name for p in params[index + 1 :] if p.kind in _POSITIONAL and p.name in want]
        if param.kind in _POSITIONAL and later:
            problems.append(
                f"{name}: undocumented parameter '{param.name}' comes before documented '{later[0]}': "
                f"a positional call binds to it"
            )
    return problems


def module_problems(module: Any, documented: Documented) -> list[str]:
    """One line per documented name that ``module`` lacks or whose signature deviates."""
    problems: list[str] = []
    for name in sorted(documented):
        params = documented[name]
        try:
            obj = resolve(module, name)
        except AttributeError:
            problems.append(f"missing: {module.__name__}.{name}")
            continue
        if params is None:
            continue
        if not callable(obj):
            problems.append(f"{name}: documented as a callable ({', '.join(params)}), found {type(obj).__name__}")
            continue
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError) as exc:
            problems.append(f"{name}: signature cannot be read ({exc}); documented ({', '.join(params)})")
            continue
        problems += signature_problems(name, params, signature)
    return problems


def check(documented_module: str, manifest: Mapping[str, Documented] | None = None) -> list[str]:
    """Problems of the active implementation (``conformance.impl``) for one documented module."""
    from . import impl

    manifest = load_manifest() if manifest is None else manifest
    try:
        module = impl.module(documented_module)
    except impl.NotImplementedInImpl as exc:
        return [str(exc)]
    return module_problems(module, manifest[documented_module])
