"""syrupy extension that stores one readable JSON golden per (model, fixture) under ``golden/<model>/``.

Files are ``golden/<model folder>/test_golden-<fixture>.json``. Each model has its own folder, and syrupy discovers snapshots per extension directory, so
``--snapshot-update --model A`` never sees (or deletes) model B's goldens.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


class _GoldenJSON(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "json"
    model_folder = ""

    def serialize(self, data: Any, **kwargs: Any) -> str:
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(GOLDEN_DIR / cls.model_folder)

    @classmethod
    def matches_test_location(cls, *, test_location, snapshot_location: str) -> bool:
        # Goldens live under golden/<model>/, not next to the test module: relate them by folder and name.
        loc = Path(snapshot_location)
        return loc.parent == GOLDEN_DIR / cls.model_folder and loc.stem == cls.get_snapshot_name(test_location=test_location)

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


@lru_cache(maxsize=None)
def golden_extension(model_folder: str) -> type[SingleFileSnapshotExtension]:
    name = "Golden_" + re.sub(r"\W", "_", model_folder)
    return type(name, (_GoldenJSON,), {"model_folder": model_folder})
