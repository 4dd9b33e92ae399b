"""Offline processor packs: family data + pinned registry tokenizer -> a normal HF cache entry."""

from .cache import PACK_MANIFEST, Pack, load_pack, materialize, pack_cache_dir
from .recipe import FamilyFolder, PackError, families_root, family_folder

__all__ = [
    "PACK_MANIFEST",
    "FamilyFolder",
    "Pack",
    "PackError",
    "families_root",
    "family_folder",
    "load_pack",
    "materialize",
    "pack_cache_dir",
]
