"""Family registry and findings: data under ``fixtures/``, loaded strictly.

- ``fixtures/families/<org>--<name>.json``: one record per HF model id (what the checks need, which
  checks apply, expected failures and skips);
- ``fixtures/impls/<impl>.json``: findings about one implementation (its expected failures), see
  ``fixtures/impls/README.md`` (``VLMSPEC_IMPLS_DIR`` points elsewhere).

Loading is strict: an unknown key at any level, an unknown check name, rule kind, fixture id, model or
implementation name is a ``ValueError`` naming the file, the key path and the closest valid name. A
typo therefore cannot silently turn into an ignored key (and a skipped check).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import impl as impl_mod
from .schema import Choice, Either, ListOf, MapOf, Obj, Tagged, closest, validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FAMILIES_DIR = FIXTURES / "families"
IMPLS_DIR = Path(os.environ.get("VLMSPEC_IMPLS_DIR") or FIXTURES / "impls")  # findings kept elsewhere (tests)
CONVERSATIONS_DIR = FIXTURES / "conversations"
CHECKS = (
    "labels",
    "vision_tokens",
    "label_consistency",
    "fake_image",
    "fake_image_mixed_batch",
    "golden",
    "template_behaviour",
    "pp_chunking",
    "pp_staged_forward",
    "pp_distributed",
    "pp_golden",
)
"""Per-family checks (a record's ``checks``)."""
IMPL_CHECKS = ("api", "robustness", "pp_layouts")
"""Implementation-level checks: one matrix row, :data:`IMPL_ROW`; recorded only in ``fixtures/impls/``."""
IMPL_ROW = "(implementation)"


@dataclass(frozen=True)
class ExpectedFailure:
    check: str
    reason: str
    fixtures: tuple[str, ...] = ()  # empty = every fixture (case)
    link: str = ""
    impls: tuple[str, ...] = ()  # empty = every implementation
    models: tuple[str, ...] = ()  # impl findings only; empty = every model

    def matches(
        self, check: str, fixture: str | None, impl_names: Sequence[str] = (), model_label: str = "", model_id: str = ""
    ) -> bool:
        return (
            self.check == check
            and (not self.fixtures or fixture in self.fixtures)
            and (not self.impls or any(n in self.impls for n in impl_names))
            and (not self.models or model_label in self.models or model_id in self.models)
        )


@dataclass(frozen=True)
class FamilySpec:
    """What the suite needs to know about one model id."""

    model_id: str
    family: str
    processor_class: str
    collate: str
    checks: tuple[str, ...]
    model_class: str | None = None
    vision_module: str | None = None
    vision_tokens: tuple[str, ...] = ()
    expected_failures: tuple[ExpectedFailure, ...] = ()
    skips: tuple[ExpectedFailure, ...] = ()  # checks that cannot apply to some fixtures, with the reason
    template_behaviour: tuple[dict, ...] = ()  # documented template quirks to verify
    registered: bool = True
    also_collate: tuple[str, ...] = ()  # further collates to run (e.g. default_collate_fn beside the family's)
    also_collate_checks: tuple[str, ...] = ("labels", "label_consistency", "golden")
    variant: str = ""  # set on the copies that run an also_collate or a collate option
    media: tuple[str, ...] = ("image",)  # what the processor takes: corpus cases with other media do not run
    collate_options: tuple[dict[str, Any], ...] = ()  # documented collate parameters to run as extra rows
    collate_kwargs: tuple[tuple[str, Any], ...] = ()  # set on a collate option's copy: (name, value) pairs
    processor_kwargs: tuple[tuple[str, Any], ...] = ()  # ... and how the harness's reference asks the processor
    only_fixtures: tuple[str, ...] = ()  # a collate option's copy runs only these cases (empty = all)
    extra: dict[str, Any] = field(default_factory=dict)  # validated: pp, text_injection, processor_factory, notes

    @property
    def label(self) -> str:
        """Model id, plus the collate when this is a variant: how reports and test ids name it."""
        return f"{self.model_id}@{self.variant}" if self.variant else self.model_id

    def variants(self) -> list[FamilySpec]:
        """This record plus one copy per ``also_collate`` (restricted to ``also_collate_checks``) and one per
        ``collate_options`` entry (the family collate called with that entry's documented ``kwargs``, on its
        ``fixtures``, restricted to its ``checks``; labelled ``<collate>(name=value, ...)``)."""
        out = [self]
        for collate in self.also_collate:
            checks = tuple(c for c in self.checks if c in self.also_collate_checks)
            out.append(
                replace(self, collate=collate, variant=collate, checks=checks, also_collate=(), collate_options=())
            )
        for option in self.collate_options:
            kwargs = tuple(sorted(option["kwargs"].items()))
            out.append(
                replace(
                    self,
                    variant=f"{self.collate}({', '.join(f'{k}={v!r}' for k, v in kwargs)})",
                    checks=tuple(c for c in self.checks if c in option["checks"]),
                    also_collate=(),
                    collate_options=(),
                    collate_kwargs=kwargs,
                    processor_kwargs=tuple(sorted(option.get("processor_kwargs", {}).items())),
                    only_fixtures=tuple(option.get("fixtures", ())),
                )
            )
        return out

    def runs_case(self, case_id: str) -> bool:
        """Whether this row runs the corpus case (a collate option's row runs only its ``fixtures``)."""
        return not self.only_fixtures or case_id in self.only_fixtures

    @property
    def folder(self) -> str:
        return self.model_id.replace("/", "--")

    @property
    def pp(self) -> dict[str, Any]:
        """The record's ``pp`` block (validated against :data:`PP`), or ``{}``."""
        return self.extra.get("pp") or {}

    def injection(self) -> dict | None:
        """The documented text injection of this spec's collate, if any (``text_injection`` by collate)."""
        return self.extra.get("text_injection", {}).get(self.collate)

    def expected_failure(
        self, check: str, fixture: str | None = None, impl_names: Sequence[str] | None = None
    ) -> ExpectedFailure | None:
        """The record's expected failure for this cell and implementation (default: the active one)."""
        names = impl_mod.names() if impl_names is None else impl_names
        return next((x for x in self.expected_failures if x.matches(check, fixture, names)), None)

    def skip(self, check: str, fixture: str | None = None) -> ExpectedFailure | None:
        return next((x for x in self.skips if x.matches(check, fixture)), None)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "<record>") -> FamilySpec:
        validate(data, record_schema(data), source)
        for key in ("expected_failures", "skips"):
            for i, x in enumerate(data.get(key, ())):
                if x["check"] not in data["checks"]:
                    raise ValueError(
                        f"{source}: {key}[{i}].check: {x['check']!r} is not one of this record's checks "
                        f"({', '.join(data['checks'])}), so the entry could never apply"
                    )
        for i, option in enumerate(data.get("collate_options", ())):
            idle = [c for c in option["checks"] if c not in data["checks"]]
            if idle:
                raise ValueError(
                    f"{source}: collate_options[{i}].checks: {idle} are not this record's checks "
                    f"({', '.join(data['checks'])}), so the option would never run them"
                )
        entries = lambda key: tuple(_entry(x) for x in data.get(key, ()))  # noqa: E731
        return cls(
            model_id=data["model_id"],
            family=data["family"],
            processor_class=data["processor_class"],
            collate=data["collate"],
            checks=tuple(data["checks"]),
            model_class=data.get("model_class"),
            vision_module=data.get("vision_module"),
            vision_tokens=tuple(data.get("vision_tokens", ())),
            expected_failures=entries("expected_failures"),
            skips=entries("skips"),
            template_behaviour=tuple(data.get("template_behaviour", ())),
            also_collate=tuple(data.get("also_collate", ())),
            also_collate_checks=tuple(data.get("also_collate_checks", ("labels", "label_consistency", "golden"))),
            media=tuple(data.get("media", ("image",))),
            collate_options=tuple(data.get("collate_options", ())),
            extra={k: v for k, v in data.items() if k in _EXTRA},
        )


def _entry(x: dict[str, Any]) -> ExpectedFailure:
    impls = x.get("impl", ())
    return ExpectedFailure(
        x["check"],
        x["reason"],
        tuple(x.get("fixtures", ())),
        x.get("link", ""),
        (impls,) if isinstance(impls, str) else tuple(impls),
        tuple(x.get("models", ())),
    )


@dataclass(frozen=True)
class ImplFindings:
    """``fixtures/impls/<impl>.json``: what is known to deviate in one implementation (and which version)."""

    impl: str
    package: str
    expected_failures: tuple[ExpectedFailure, ...] = ()
    source: str = ""


# --------------------------------------------------------------------------------------------------
# Schemas (every key any conformance module reads from a record; a new key must be added here)
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def fixture_ids() -> tuple[str, ...]:
    """Ids of the conversation corpus (file stems of ``fixtures/conversations/*.json``)."""
    return tuple(sorted(p.stem for p in CONVERSATIONS_DIR.glob("*.json")))


def known_impls() -> tuple[str, ...]:
    """Built-in implementations plus every implementation with a findings file."""
    return tuple(dict.fromkeys([*impl_mod.BUILTIN, *sorted(p.stem for p in IMPLS_DIR.glob("*.json"))]))


FIXTURE = Choice(fixture_ids, "fixture")
FIXTURE_LIST = ListOf(FIXTURE)
_SIZES = tuple(map(str, range(1, 65)))
# A list of fixtures cycled to each batch size, or one list per batch size ("2": [two ids]).
BATCH_FIXTURES = Either(FIXTURE_LIST, MapOf(FIXTURE_LIST, key=Choice(_SIZES, "batch size"), sized=True))
TOKENS_PER_IMAGE = Tagged(
    "kind",
    {
        "grid": Obj({"merge": int, "grid_key": str}, required={"merge"}),
        "fixed": Obj({"tokens": int}, required={"tokens"}),
        "valid_patches": Obj({"pool": int}, required={"pool"}),
        "image_sizes": Obj({"pixels": int}, required={"pixels"}),
        "phi4_hd": Obj({"crop": int, "global": int}, required={"crop", "global"}),
        "local_crops": Obj({"global": int, "per_crop": int}, required={"global", "per_crop"}),
    },
)
PP = Obj(
    {
        "image_token": str,
        "tokens_per_image": TOKENS_PER_IMAGE,
        "position_ids": Choice(("mrope",), "position_ids kind"),
        "layers_per_stage": MapOf(ListOf(int), key=Choice(_SIZES, "stage count"), sized=True),
        "fixtures": BATCH_FIXTURES,
        "staged_fixtures": BATCH_FIXTURES,
        "distributed_fixtures": BATCH_FIXTURES,
        "video_fixtures": BATCH_FIXTURES,
        "audio_fixtures": BATCH_FIXTURES,
        "media_staged_fixtures": FIXTURE_LIST,
        "video_tubelets": Obj({"frames": int, "patch": int, "merge": int}, required={"frames", "patch", "merge"}),
        "notes": str,
    },
    required={"image_token", "tokens_per_image"},
)
TEMPLATE_ENTRY = Obj(
    {
        "fixture": FIXTURE,
        "description": str,
        "rendered_contains": ListOf(str),
        "rendered_not_contains": ListOf(str),
        "add_generation_prompt": bool,
    },
    required={"fixture", "description"},
)
_SCALAR = Either(bool, Either(int, Either(float, str)))
COLLATE_OPTION = Obj(
    {
        "kwargs": MapOf(_SCALAR),
        "processor_kwargs": MapOf(_SCALAR),
        "checks": ListOf(Choice(CHECKS, "check")),
        "fixtures": FIXTURE_LIST,
        "notes": str,
    },
    required={"kwargs", "checks", "notes"},
)
"""A documented collate parameter run as its own row: the family collate called with ``kwargs``; the
harness's reference asks the processor for the same thing with ``processor_kwargs``; ``fixtures`` (default:
every case) are the cases the option applies to, ``notes`` say why."""
_EXTRA = ("pp", "text_injection", "processor_factory", "notes")


def _entry_schema(checks: Sequence[str], extra: dict[str, Any], required: set[str]) -> Obj:
    return Obj(
        {"check": Choice(tuple(checks), "check"), "reason": str, "fixtures": FIXTURE_LIST, "link": str, **extra},
        required={"check", "reason", *required},
    )


def record_schema(data: dict[str, Any]) -> Obj:
    """The schema of a family record (``text_injection`` may only name the record's own collates)."""
    collates = tuple(x for x in [data.get("collate"), *(data.get("also_collate") or ())] if isinstance(x, str))
    impl_names = Choice(known_impls, "implementation")
    return Obj(
        {
            "model_id": str,
            "family": str,
            "processor_class": str,
            "collate": str,
            "checks": ListOf(Choice(CHECKS, "check")),
            "model_class": str,
            "vision_module": str,
            "vision_tokens": ListOf(str),
            "expected_failures": ListOf(_entry_schema(CHECKS, {"impl": Either(impl_names, ListOf(impl_names))}, set())),
            "skips": ListOf(_entry_schema(CHECKS, {}, set())),
            "template_behaviour": ListOf(TEMPLATE_ENTRY),
            "also_collate": ListOf(str),
            "also_collate_checks": ListOf(Choice(CHECKS, "check")),
            "media": ListOf(Choice(("image", "video", "audio"), "medium")),
            "collate_options": ListOf(COLLATE_OPTION),
            "text_injection": MapOf(
                Obj({"after": str, "insert": str}, required={"after", "insert"}),
                key=Choice(collates, "collate of this record"),
            ),
            "pp": PP,
            "processor_factory": str,
            "notes": str,
        },
        required={"model_id", "family", "processor_class", "collate", "checks"},
    )


def impl_schema(stem: str) -> Obj:
    models = Choice(lambda: (IMPL_ROW, *model_labels()), "model")
    entry = _entry_schema((*CHECKS, *IMPL_CHECKS), {"models": ListOf(models), "fixtures": ListOf(str)}, {"link"})
    return Obj(
        {
            "impl": Choice((stem,), "implementation (the file's name)"),
            "package": str,
            "notes": str,
            "expected_failures": ListOf(entry),
        },
        required={"impl", "package", "expected_failures"},
    )


def model_labels() -> tuple[str, ...]:
    """Every registered model id, every ``id@collate`` variant label, and ``id@<own collate>`` (the base row)."""
    return tuple(
        label
        for s in load_registry().values()
        for label in (*(v.label for v in s.variants()), f"{s.model_id}@{s.collate}")
    )


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None


@lru_cache(maxsize=1)
def load_registry() -> dict[str, FamilySpec]:
    specs = {}
    for path in sorted(FAMILIES_DIR.glob("*.json")):
        spec = FamilySpec.from_json(_read(path), str(path))
        specs[spec.model_id] = spec
    return specs


@lru_cache(maxsize=1)
def load_impl_findings() -> dict[str, ImplFindings]:
    """Every ``fixtures/impls/*.json``, validated (``impl`` must equal the file name)."""
    out = {}
    for path in sorted(IMPLS_DIR.glob("*.json")):
        data = _read(path)
        validate(data, impl_schema(path.stem), str(path))
        _check_rows(data, str(path))
        out[path.stem] = ImplFindings(
            data["impl"], data["package"], tuple(_entry(x) for x in data["expected_failures"]), str(path)
        )
    return out


def _check_rows(data: dict[str, Any], source: str) -> None:
    """Implementation-level checks live on the ``(implementation)`` row only, family checks never do."""
    for i, x in enumerate(data["expected_failures"]):
        models = x.get("models") or []
        if x["check"] in IMPL_CHECKS and any(m != IMPL_ROW for m in models):
            raise ValueError(
                f"{source}: expected_failures[{i}].models: check {x['check']!r} is implementation-level; "
                f"its only row is {IMPL_ROW!r} (leave models empty)"
            )
        if x["check"] in CHECKS and IMPL_ROW in models:
            raise ValueError(
                f"{source}: expected_failures[{i}].models: {IMPL_ROW!r} has no per-family check "
                f"{x['check']!r} (implementation-level checks: {', '.join(IMPL_CHECKS)})"
            )
        if x["check"] in CHECKS:  # family checks run over the corpus: a fixture must be a corpus id
            validate(x.get("fixtures", []), FIXTURE_LIST, source, f"expected_failures[{i}].fixtures")


def expected_failure_for(
    model_label: str,
    model_id: str,
    check: str,
    fixture: str | None,
    impl_names: Sequence[str],
    family_entries: bool = True,
) -> ExpectedFailure | None:
    """The recorded expected failure of one case, or None.

    Looks in each implementation's findings file (``impl_names`` in order: the active implementation,
    then the one it derives from), then in the model's family record (entries without ``impl`` apply to
    every implementation). ``model_label`` is ``id`` or ``id@collate``; impl entries naming the plain id
    cover its variants, entries naming ``id@<the record's own collate>`` only the base row. Implementation-level cells use ``model_label == model_id == IMPL_ROW``.
    ``family_entries=False`` leaves the family record out (a check that judges something else than what
    the record's entries describe: a framework's own dummy image under ``fake_image``).
    """
    findings = load_impl_findings()
    spec = load_registry().get(model_id)
    # the base row may also be named by its own collate (``id@<record's collate>``): an entry so named
    # covers that row only, not the ``also_collate`` variants that a plain id would cover too
    own = f"{model_id}@{spec.collate}" if spec is not None and model_label == model_id else None
    for name in impl_names:
        record = findings.get(name)
        hit = (
            next(
                (
                    x
                    for x in record.expected_failures
                    if x.matches(check, fixture, impl_names, model_label, model_id)
                    or (own is not None and own in x.models and x.matches(check, fixture, impl_names, own, own))
                ),
                None,
            )
            if record
            else None
        )
        if hit is not None:
            return hit
    if not family_entries or spec is None:
        return None
    return spec.expected_failure(check, fixture, impl_names)


def closest_ids(model_id: str, n: int = 3) -> list[str]:
    ids = list(load_registry())
    lowered = {i.lower(): i for i in ids}
    hits = [lowered[m] for m in difflib.get_close_matches(model_id.lower(), list(lowered), n=n, cutoff=0.8)]
    # prefix matches first: 'Qwen/Qwen2.5-VL-3B' -> 'Qwen/Qwen2.5-VL-3B-Instruct'
    prefix = [i for i in ids if i.lower().startswith(model_id.lower())]
    return list(dict.fromkeys(prefix + hits))[:n]


def closest_check(name: str) -> str | None:
    """The nearest valid check name (family or implementation-level), for error messages."""
    return closest(name, (*CHECKS, *IMPL_CHECKS))
