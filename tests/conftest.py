"""Shared fixtures for vlmspec's own tests: real processors from offline packs, built once."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QWEN25 = "Qwen/Qwen2.5-VL-3B-Instruct"


def load_pack_processor(model_id: str):
    from transformers import AutoProcessor

    from vlmspec.hub import materialize

    pack = materialize(model_id)
    return AutoProcessor.from_pretrained(model_id, cache_dir=str(pack.cache_dir))


@pytest.fixture(scope="session")
def qwen25_processor():
    return load_pack_processor(QWEN25)
