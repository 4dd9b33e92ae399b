"""Family registry: one JSON record per HF model id under ``fixtures/families/``. Families are data."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

FAMILIES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "families"
CHECKS = ("labels", "vision_tokens", "label_consistency", "fake_image", "fake_image_mixed_batch", "golden", "template_behaviour",
          "pp_chunking", "pp_staged_forward", "pp_distributed", "pp_golden")


@dataclass(frozen=True)
class ExpectedFailure:
    check: str
    reason: str
    fixtures: tuple[str, ...] = ()  # empty = every fixture
    link: str = ""


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
    variant: str = ""  # set on the copies that run an also_collate
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Model id, plus the collate when this is a variant: how reports and test ids name it."""
        return f"{self.model_id}@{self.variant}" if self.variant else self.model_id

    def variants(self) -> list["FamilySpec"]:
        """This record plus one copy per ``also_collate`` (restricted to ``also_collate_checks``)."""
        out = [self]
        for collate in self.also_collate:
            checks = tuple(c for c in self.checks if c in self.also_collate_checks)
            out.append(replace(self, collate=collate, variant=collate, checks=checks, also_collate=()))
        return out

    @property
    def folder(self) -> str:
        return self.model_id.replace("/", "--")

    def injection(self) -> dict | None:
        """The documented text injection of this spec's collate, if any (``text_injection`` by collate)."""
        return self.extra.get("text_injection", {}).get(self.collate)

    def expected_failure(self, check: str, fixture: str | None = None) -> ExpectedFailure | None:
        return _match(self.expected_failures, check, fixture)

    def skip(self, check: str, fixture: str | None = None) -> ExpectedFailure | None:
        return _match(self.skips, check, fixture)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "<record>") -> "FamilySpec":
        known = {"model_id", "family", "processor_class", "collate", "checks", "model_class", "vision_module",
                 "vision_tokens", "expected_failures", "skips", "template_behaviour", "also_collate",
                 "also_collate_checks"}
        entries = lambda key: tuple(  # noqa: E731
            ExpectedFailure(x["check"], x["reason"], tuple(x.get("fixtures", ())), x.get("link", ""))
            for x in data.get(key, ()))
        try:
            checks = tuple(data["checks"])
            unknown = set(checks) - set(CHECKS)
            if unknown:
                raise ValueError(f"{source}: unknown checks {sorted(unknown)} (known: {CHECKS})")
            return cls(
                model_id=data["model_id"], family=data["family"], processor_class=data["processor_class"],
                collate=data["collate"], checks=checks, model_class=data.get("model_class"),
                vision_module=data.get("vision_module"), vision_tokens=tuple(data.get("vision_tokens", ())),
                expected_failures=entries("expected_failures"), skips=entries("skips"),
                template_behaviour=tuple(data.get("template_behaviour", ())),
                also_collate=tuple(data.get("also_collate", ())),
                also_collate_checks=tuple(data.get("also_collate_checks", ("labels", "label_consistency", "golden"))),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except KeyError as exc:
            raise ValueError(f"{source}: family record is missing {exc}") from None


def _match(entries: tuple[ExpectedFailure, ...], check: str, fixture: str | None) -> ExpectedFailure | None:
    for entry in entries:
        if entry.check == check and (not entry.fixtures or fixture in entry.fixtures):
            return entry
    return None


@lru_cache(maxsize=1)
def load_registry() -> dict[str, FamilySpec]:
    specs = {}
    for path in sorted(FAMILIES_DIR.glob("*.json")):
        spec = FamilySpec.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
        specs[spec.model_id] = spec
    return specs


def closest_ids(model_id: str, n: int = 3) -> list[str]:
    ids = list(load_registry())
    lowered = {i.lower(): i for i in ids}
    hits = [lowered[m] for m in difflib.get_close_matches(model_id.lower(), list(lowered), n=n, cutoff=0.4)]
    # prefix matches first: 'Qwen/Qwen2.5-VL-3B' -> 'Qwen/Qwen2.5-VL-3B-Instruct'
    prefix = [i for i in ids if i.lower().startswith(model_id.lower())]
    return list(dict.fromkeys(prefix + hits))[:n]


def adhoc_spec(model_id: str, processor: Any) -> FamilySpec:
    """A record for an unregistered model that the Hub (or the HF cache) provides: label checks only."""
    return FamilySpec(model_id=model_id, family=model_id.split("/")[0].lower(),
                      processor_class=type(processor).__name__, collate="auto",
                      checks=("labels", "label_consistency"), registered=False)
