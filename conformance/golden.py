"""syrupy extension that stores one readable JSON golden per (model, fixture) under ``golden/<model>/``.

Files are ``golden/<model folder>/test_golden-<fixture>.json``. Each model has its own folder, and
each extension discovers only the files directly in its own folder (never sub-folders), so
``--snapshot-update --model A`` never sees (or deletes) model B's goldens.

Transformers version lines
--------------------------
The base goldens are rendered by the pinned transformers line (the ``transformers==X.Y.Z`` pin in
pyproject.toml; :data:`PINNED_LINE`, e.g. ``5.23``). Goldens that legitimately differ on another
line (a processor or template change in that release) are stored as overlays::

    golden/<model>/test_golden-<fixture>.json                        pinned line (5.23.x)
    golden/<model>/@transformers-5.5/test_golden-<fixture>.json      5.5.x, only where it differs

Running on line L compares each fixture with L's overlay when there is one, else with the base file:
a line without an overlay is held to the pinned goldens, so a template or tokenizer change between
versions fails as a golden diff (whose first line names the running version and the golden line), it
never passes silently. ``--snapshot-update`` on line L writes only L's overlay folder of the selected
models (and removes an overlay file that became identical to the base); the base goldens and other
lines' overlays are never touched. The report names the transformers version it ran with.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from syrupy.data import SnapshotCollections
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

ROOT = Path(__file__).resolve().parents[1]
# $VLMSPEC_GOLDEN_DIR: another golden tree (the determinism test writes into temporary copies)
GOLDEN_DIR = Path(os.environ.get("VLMSPEC_GOLDEN_DIR") or ROOT / "golden")
OVERLAY_PREFIX = "@transformers-"


def version_line(version: str) -> str:
    """``"5.22.2"`` -> ``"5.22"`` (a release line: major.minor)."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"not a transformers version: {version!r}")
    return f"{match.group(1)}.{match.group(2)}"


@lru_cache(maxsize=1)
def pinned_line() -> str:
    """The transformers line the base goldens are rendered with: the pin in pyproject.toml."""
    # a regex, not tomllib: the project supports Python 3.10
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^\s*"transformers\s*==\s*([0-9][\w.]*)"', text, re.M)
    if match:
        return version_line(match.group(1))
    raise ValueError("pyproject.toml does not pin transformers==X.Y.Z; the goldens need a pinned line")


@lru_cache(maxsize=1)
def running_version() -> str:
    import transformers

    return transformers.__version__


def running_line() -> str:
    return version_line(running_version())


def overlay_dir(model_folder: str, line: str) -> Path:
    return GOLDEN_DIR / model_folder / f"{OVERLAY_PREFIX}{line}"


def line_dir(model_folder: str, line: str | None = None) -> Path:
    """Where line *line*'s goldens of *model_folder* are written (the base folder for the pinned line)."""
    line = running_line() if line is None else line
    return GOLDEN_DIR / model_folder if line == pinned_line() else overlay_dir(model_folder, line)


def overlay_lines(model_folder: str) -> list[str]:
    """The lines that have an overlay folder for *model_folder*."""
    base = GOLDEN_DIR / model_folder
    if not base.is_dir():
        return []
    return sorted(
        p.name.removeprefix(OVERLAY_PREFIX) for p in base.iterdir() if p.is_dir() and p.name.startswith(OVERLAY_PREFIX)
    )


def describe(model_folder: str) -> str:
    """One line naming the transformers version and the goldens it is compared with."""
    line, pinned = running_line(), pinned_line()
    if line == pinned:
        return f"transformers {running_version()} (pinned line {pinned}): golden/{model_folder}/"
    overlay = overlay_dir(model_folder, line)
    n = len(list(overlay.glob("*.json"))) if overlay.is_dir() else 0
    return (
        f"transformers {running_version()} (line {line}; goldens pinned to {pinned}): "
        f"golden/{model_folder}/{overlay.name}/ ({n} overlay file(s)) over golden/{model_folder}/"
    )


def _base_of(location: Path) -> Path | None:
    """The pinned-line file an overlay file stands in for (None for a base file)."""
    if location.parent.name.startswith(OVERLAY_PREFIX):
        return location.parent.parent / location.name
    return None


class _GoldenJSON(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "json"
    model_folder = ""

    def serialize(self, data: Any, **kwargs: Any) -> str:
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(line_dir(cls.model_folder))

    @classmethod
    def discovery_dirname(cls, *, test_location) -> str:
        return cls.dirname(test_location=test_location)

    def discover_snapshots(self, *, test_location, ignore_extensions: list[str] | None = None) -> SnapshotCollections:
        """Only this model's files of the running line, directly in its folder (other lines' overlay
        folders and other models are never discovered, hence never reported unused or deleted)."""
        discovered = SnapshotCollections()
        folder = Path(self.dirname(test_location=test_location))
        if folder.is_dir():
            for path in sorted(folder.glob(f"*.{self.file_extension}")):
                discovered.add(self.read_snapshot_collection(snapshot_location=str(path)))
        return discovered

    def read_snapshot_data_from_location(self, *, snapshot_location: str, snapshot_name: str, session_id: str):
        data = super().read_snapshot_data_from_location(
            snapshot_location=snapshot_location, snapshot_name=snapshot_name, session_id=session_id
        )
        base = _base_of(Path(snapshot_location))
        if data is None and base is not None:  # no overlay for this fixture: the pinned golden holds
            data = super().read_snapshot_data_from_location(
                snapshot_location=str(base), snapshot_name=snapshot_name, session_id=session_id
            )
        return data

    @classmethod
    def write_snapshot_collection(cls, *, snapshot_collection, name_order=None) -> None:
        location = Path(snapshot_collection.location)
        base = _base_of(location)
        if base is not None and base.exists():
            data = next(iter(snapshot_collection)).data
            if base.read_text(encoding=cls.get_write_encoding() or "utf-8") == data:
                # this line renders like the pinned line: no overlay (remove a stale one)
                location.unlink(missing_ok=True)
                if location.parent.is_dir() and not any(location.parent.iterdir()):
                    location.parent.rmdir()
                return
        location.parent.mkdir(parents=True, exist_ok=True)
        super().write_snapshot_collection(snapshot_collection=snapshot_collection, name_order=name_order)

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        yield f"golden: {describe(self.model_folder)}"
        if running_line() != pinned_line():
            yield (
                f"  (a legitimate difference on this line: --snapshot-update under transformers {running_version()} "
                f"writes it to the {OVERLAY_PREFIX}{running_line()} overlay; review it like code)"
            )
        yield from super().diff_lines(serialized_data, snapshot_data)

    @classmethod
    def matches_test_location(cls, *, test_location, snapshot_location: str) -> bool:
        # Goldens live under golden/<model>/ (or its line overlay), not next to the test module:
        # relate them by folder and name.
        loc = Path(snapshot_location)
        return loc.parent in (
            GOLDEN_DIR / cls.model_folder,
            line_dir(cls.model_folder),
        ) and loc.stem == cls.get_snapshot_name(test_location=test_location)

    @classmethod
    def get_snapshot_name(cls, *, test_location, index=0) -> str:
        """``test_golden-<fixture id>``: the test-name prefix lets syrupy relate the file to its test.

        The fixture id is the part after ``::`` of the parametrize id ``<model>::<fixture>``.
        """
        param = test_location.nodename.partition("[")[2].rstrip("]")
        model, _, fixture = param.rpartition("::")
        fixture = fixture or param
        variant = model.partition("@")[2]  # a record's also_collate run: keep its goldens apart
        if variant:
            fixture = f"{variant}-{fixture}"
        suffix = f".{index}" if index else ""
        return f"{test_location.testname.partition('[')[0]}-{re.sub(r'[^A-Za-z0-9_.]', '_', fixture)}{suffix}"


@cache
def golden_extension(model_folder: str) -> type[SingleFileSnapshotExtension]:
    name = "Golden_" + re.sub(r"\W", "_", model_folder)
    return type(name, (_GoldenJSON,), {"model_folder": model_folder})
