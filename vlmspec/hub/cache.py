"""Materialize a family's processor into a Hugging Face cache, offline, from pinned registry files.

The result is an ordinary hub-cache entry (``models--Org--Name/{blobs,snapshots,refs}``), so
``AutoProcessor.from_pretrained(model_id, cache_dir=pack_cache_dir())`` — or the same call with
``HF_HUB_CACHE`` pointing there — works under ``HF_HUB_OFFLINE=1`` through transformers' normal code path.

Packs live in their own cache (``$VLMSPEC_HUB_CACHE``, default ``~/.cache/vlmspec/hub``), never in the
user's real HF cache: a DERIVED pack must not shadow a real download of the same model id.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import WeakFileLock

from .fingerprints import fingerprints_for, verify_tokenizer_json
from .recipe import (
    META_FILES,
    PROJECT_PACKS,
    FamilyFolder,
    PackError,
    build_extra_files,
    build_tokenizer_json,
    family_folder,
    fetch_registry_file,
    recorded_table,
    sha256_bytes,
)

__all__ = ["PACK_MANIFEST", "Pack", "load_pack", "materialize", "pack_cache_dir"]

CACHE_ENV = "VLMSPEC_HUB_CACHE"
PACK_MANIFEST = "vlmspec_pack.json"
_FORMAT = 1


def pack_cache_dir() -> Path:
    """Root of the pack cache, laid out exactly like ``HF_HUB_CACHE``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vlmspec" / "hub"


@dataclass(frozen=True)
class Pack:
    """A materialized, verified pack."""

    model_id: str
    snapshot: Path
    cache_dir: Path
    manifest: dict

    @property
    def fixture_class(self) -> str:
        return self.manifest["fixture_class"]

    @property
    def revision(self) -> str:
        return self.snapshot.name


def _repo_dir(cache: Path, model_id: str) -> Path:
    return cache / repo_folder_name(repo_id=model_id, repo_type="model")


def _commit_hash(files: dict[str, str]) -> str:
    """Deterministic 40-hex 'commit' for a pack: sha1 over its (name, sha256) listing."""
    listing = "\n".join(f"{name} {digest}" for name, digest in sorted(files.items()))
    return hashlib.sha1(listing.encode()).hexdigest()


def _verify(snapshot: Path, manifest: dict) -> None:
    for name, want in manifest["files"].items():
        path = snapshot / name
        if not path.exists():
            raise PackError(
                f"pack {manifest['model_id']}: {path} is missing; re-run `vlmspec pack {manifest['model_id']} --force`"
            )
        got = sha256_bytes(path.read_bytes())
        if got != want:
            raise PackError(
                f"pack {manifest['model_id']}: {name} changed on disk since it was verified\n"
                f"  expected {want}\n  actual   {got}\n"
                f"Refusing to use it. Re-materialize with `vlmspec pack {manifest['model_id']} --force`."
            )


def load_pack(model_id: str, cache: Path | None = None, verify: bool = True) -> Pack | None:
    """The materialized pack for ``model_id`` or None. Re-verifies every file's sha256 by default."""
    cache = cache or pack_cache_dir()
    # try_to_load_from_cache resolves refs/main -> snapshot the same way hf_hub_download does offline.
    manifest_path = try_to_load_from_cache(model_id, PACK_MANIFEST, cache_dir=cache)
    if not isinstance(manifest_path, str):
        return None
    snapshot = Path(manifest_path).parent
    manifest = json.loads(Path(manifest_path).read_text())
    if manifest.get("format") != _FORMAT:
        return None
    if verify:
        _verify(snapshot, manifest)
    return Pack(model_id, snapshot, cache, manifest)


def _write_snapshot(repo: Path, files: dict[str, bytes]) -> Path:
    digests = {name: sha256_bytes(data) for name, data in files.items()}
    commit = _commit_hash(digests)
    blobs, snapshot = repo / "blobs", repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = blobs / digests[name]
        if not blob.exists():
            tmp = blob.with_suffix(".incomplete")
            tmp.write_bytes(data)
            tmp.replace(blob)
        link = snapshot / name
        if link.is_symlink() or link.exists():
            link.unlink()
        # Relative symlink into blobs/, as huggingface_hub itself writes them.
        link.symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / hf_constants.DEFAULT_REVISION).write_text(commit)
    return snapshot


def _folder_digest(folder: FamilyFolder) -> str:
    """sha256 over every file of the family folder and its overlay (recipe and PROVENANCE.md included)."""
    listing = "\n".join(
        f"{i}/{p.name} {sha256_bytes(p.read_bytes())}" if i else f"{p.name} {sha256_bytes(p.read_bytes())}"
        for i, root in enumerate(folder.folders)
        for p in sorted(root.iterdir())
        if p.is_file()
    )
    return hashlib.sha256(listing.encode()).hexdigest()


def _verify_folder_files(model_id: str, folder: FamilyFolder) -> None:
    """Every file of the family folder is in its PROVENANCE.md table, with the recorded sha256."""
    unlisted = folder.unrecorded()
    if unlisted:
        raise PackError(
            f"{model_id}: {', '.join(str(p) for p in unlisted)} "
            f"{'is' if len(unlisted) == 1 else 'are'} not in PROVENANCE.md's file table, so nothing vouches for "
            f"{'it' if len(unlisted) == 1 else 'them'}. Record the source in PROVENANCE.md, then update the table "
            f"with `vlmspec provenance --write {model_id}` (or remove the file)."
        )
    for path in folder.folders:
        for name, want in recorded_table(path).items():
            if name in META_FILES and path.resolve().parent != PROJECT_PACKS.resolve():
                # third-party data: its recipe is pinned by the sha256 of what it downloads, and its
                # table is the curator's; only the files that go into the pack must match it
                continue
            if not (path / name).is_file():
                if path != folder.folders[0]:
                    continue  # an overlay's table may also list the third-party files it extends
                raise PackError(
                    f"{model_id}: PROVENANCE.md in {path} lists {name}, which is missing; restore it, "
                    f"or update the table with `vlmspec provenance --write {model_id}`"
                )
            got = sha256_bytes((path / name).read_bytes())
            if got != want:
                raise PackError(
                    f"{model_id}: {path / name} differs from the sha256 recorded in PROVENANCE.md\n"
                    f"  expected {want}\n  actual   {got}\n"
                    "Restore the family folder, or update PROVENANCE.md if the change is reviewed "
                    f"(`vlmspec provenance --write {model_id}`)."
                )


def materialize(
    model_id: str, cache: Path | None = None, force: bool = False, folder: FamilyFolder | None = None
) -> Pack:
    """Build (or reuse) the pack for ``model_id``. Idempotent and safe against concurrent workers.

    A verified pack is reused while its family folder and its vocabulary fingerprints are unchanged (the
    manifest records a digest of both); editing either (a template, a config, the recipe, a pair) rebuilds it.

    After the recipe is applied, the built ``tokenizer.json`` must pass every vocabulary fingerprint of
    the model (:mod:`vlmspec.hub.fingerprints`); a REAL or DERIVED pack needs fingerprints of the
    family's own vocabulary.

    Raises :class:`PackError` when the family folder or the fingerprints are missing, a registry is
    unreachable, a sha256 differs or a fingerprint fails; it never falls back to anything else.
    """
    cache = cache or pack_cache_dir()
    repo = _repo_dir(cache, model_id)
    repo.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(repo / ".vlmspec.lock"):
        existing = None if force else load_pack(model_id, cache)
        try:
            folder = folder or family_folder(model_id)
        except PackError:
            if existing is not None:
                return existing  # built from a folder that is gone: still verified, still usable
            raise
        fingerprints = fingerprints_for(model_id)
        if (
            existing is not None
            and existing.manifest.get("folder_sha256") == _folder_digest(folder)
            and existing.manifest.get("fingerprints", {}).get("sha256") == fingerprints.digest()
        ):
            return existing
        # no pack yet, or the family folder changed since it was built: (re)build
        recipe = folder.recipe
        if recipe is None:
            raise PackError(
                f"{model_id}: {folder.path} has no tokenizer_recipe.json, so no pack can be built from "
                "registry files (this family needs a SYNTHETIC stand-in processor)"
            )
        _verify_folder_files(model_id, folder)
        files = folder.snapshot_files()
        base = fetch_registry_file(recipe, cache / ".vlmspec-downloads")
        files.update(build_extra_files(recipe, base))
        files["tokenizer.json"] = build_tokenizer_json(recipe, base)
        checked = verify_tokenizer_json(model_id, files["tokenizer.json"], fingerprints, folder.fixture_class)
        digests = {name: sha256_bytes(data) for name, data in files.items()}
        manifest = {
            "format": _FORMAT,
            "model_id": model_id,
            "fixture_class": folder.fixture_class,
            "source": {
                "registry": recipe.registry,
                "package": recipe.package,
                "version": recipe.version,
                "path": recipe.path,
                "sha256": recipe.sha256,
                "kind": recipe.kind,
                **({"dist": recipe.dist} if recipe.dist != "wheel" else {}),
            },
            "edits": {
                "drop_added_tokens_with_id_gte": recipe.drop_added_tokens_with_id_gte,
                "rename_tokens": recipe.rename_tokens,
                "add_tokens": [list(x) for x in recipe.add_tokens],
            },
            "files": digests,
            "folder_sha256": _folder_digest(folder),
            "fingerprints": {**checked, "sha256": fingerprints.digest()},
        }
        files[PACK_MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode()
        snapshot = _write_snapshot(repo, files)
        return Pack(model_id, snapshot, cache, manifest)
