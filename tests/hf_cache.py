"""A user's HF cache, made from a registered family's pack: real processor files under a new id."""

from __future__ import annotations

import json
from pathlib import Path

from vlmspec.hub import materialize
from vlmspec.hub.cache import _write_snapshot

# Qwen2.5-VL-3B-Instruct's real sizes, as its PROVENANCE.md records them (shared/families/…/PROVENANCE.md)
QWEN25_REAL_TEXT = {
    "hidden_size": 2048,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "intermediate_size": 11008,
}
QWEN25_REAL_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "out_hidden_size": 2048,
    "intermediate_size": 3420,
    "num_heads": 16,
    "fullatt_block_indexes": [7, 15, 23, 31],
}


def real_size_qwen25_config(tiny: dict) -> dict:
    config = json.loads(json.dumps(tiny))
    config["text_config"].update(QWEN25_REAL_TEXT)
    config["text_config"]["rope_scaling"]["mrope_section"] = [16, 24, 24]
    config["vision_config"].update(QWEN25_REAL_VISION)
    return config


def cache_with_qwen25_under(model_id: str, hub_cache: Path) -> Path:
    """Write the Qwen2.5-VL pack's processor files and a real-size config.json as *model_id* into *hub_cache*."""
    pack = materialize("Qwen/Qwen2.5-VL-3B-Instruct")
    files = {p.name: p.read_bytes() for p in pack.snapshot.iterdir() if p.name != "vlmspec_pack.json"}
    files["config.json"] = json.dumps(real_size_qwen25_config(json.loads(files["config.json"])), indent=2).encode()
    repo = hub_cache / ("models--" + model_id.replace("/", "--"))
    return _write_snapshot(repo, files)
