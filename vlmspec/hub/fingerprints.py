"""Vocabulary fingerprints: (text -> ids) and (id <-> token) pairs from a model's public sources.

A registry package named for a model can carry another model's vocabulary (an npm "Llama 2" tokenizer
with ``▁the`` = 272 where Llama 2 has 278). The sha256 pin only proves the bytes are the ones the recipe
names, not that they are the family's vocabulary. So every pack is checked, after its recipe is applied,
against pairs taken from elsewhere: an inference engine's tokenizer test data, a config that pins a
special-token id, the family's published tests. Each pair names its source (registry package and
version, or repository and commit; path; sha256). A pair is never derived from the vocabulary it checks.

Files (project data, committed):

- ``fixtures/fingerprints/<Org>--<Name>.json``, one per model id::

    {"model_id": "Org/Name",
     "vocabulary": "family" | "stand-in",
     "include": ["<set>", ...],             # fixtures/fingerprints/sets/<set>.json, shared pairs
     "sources": {"<key>": {"origin": "pypi:pkg@1.2" | "npm:pkg@1.2" | "github:owner/repo@<40 hex>",
                            "path": "...", "sha256": "<64 hex>", "what": "..."}},
     "encode": [{"text": "...", "ids": [..], "source": "<key>" | ["<key>", ...]}],
     "tokens": [{"id": 151655, "token": "<|image_pad|>", "source": ...}],
     "notes": "..."}

  ``vocabulary`` says whose vocabulary the pairs fingerprint: ``family`` (the model's own; required for a
  REAL or DERIVED pack) or ``stand-in`` (a SYNTHETIC pack's borrowed vocabulary, e.g. the Qwen3 BPE
  under Kimi's special tokens: the pairs prove the borrowed vocabulary is what PROVENANCE.md says).
- ``fixtures/fingerprints/sets/<set>.json``: ``{"set", "description", "sources", "encode", "tokens"}``.

Loading is strict (unknown keys, unknown source keys, malformed pins are errors naming the file and key);
a model's pairs (its own plus its sets') must number at least :data:`MIN_PAIRS`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .recipe import PackError

__all__ = ["FINGERPRINTS", "MIN_PAIRS", "Fingerprints", "Pair", "fingerprints_for", "verify_tokenizer_json"]

FINGERPRINTS = Path(__file__).resolve().parents[2] / "fixtures" / "fingerprints"
MIN_PAIRS = 8
VOCABULARY = ("family", "stand-in")
_ORIGIN = re.compile(r"^(?:(?:pypi|npm):[^@\s]+@[^@\s]+|github:[\w.-]+/[\w.-]+@[0-9a-f]{40})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

_SOURCE_KEYS = {"origin": str, "path": str, "sha256": str, "what": str}
_ENCODE_KEYS = {"text": str, "ids": list, "source": (str, list)}
_TOKEN_KEYS = {"id": int, "token": str, "source": (str, list)}
_MODEL_KEYS = {
    "model_id": str,
    "vocabulary": str,
    "include": list,
    "sources": dict,
    "encode": list,
    "tokens": list,
    "notes": str,
}
_SET_KEYS = {"set": str, "description": str, "sources": dict, "encode": list, "tokens": list}


@dataclass(frozen=True)
class Pair:
    """One fingerprint: ``kind`` ``encode`` (text -> ids) or ``token`` (id <-> token string)."""

    kind: str
    text: str  # the text (encode) or the token string (token)
    ids: tuple[int, ...]  # the expected ids (one id for a token pair)
    sources: tuple[str, ...]
    where: str  # "<file>: encode[3]", for messages

    def describe(self) -> str:
        if self.kind == "encode":
            return f"encode {self.text!r} -> {list(self.ids)}"
        return f"token {self.ids[0]} <-> {self.text!r}"


@dataclass(frozen=True)
class Fingerprints:
    model_id: str
    vocabulary: str
    pairs: tuple[Pair, ...]
    sources: dict[str, dict[str, str]]
    files: tuple[Path, ...]

    def source_text(self, keys: tuple[str, ...]) -> str:
        return "; ".join(
            f"{self.sources[k]['origin']} {self.sources[k]['path']} (sha256 {self.sources[k]['sha256'][:12]}...)"
            for k in keys
        )

    def digest(self) -> str:
        """sha256 over the fingerprint files (a changed fingerprint rebuilds the pack)."""
        listing = "\n".join(f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}" for p in self.files)
        return hashlib.sha256(listing.encode()).hexdigest()


def _hint(name: str, options) -> str:
    near = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean {near[0]!r}?)" if near else f" (valid: {', '.join(options)})"


def _check_keys(obj: Any, keys: dict[str, Any], source: str, path: str, required: set[str]) -> None:
    where = path or "top level"
    if not isinstance(obj, dict):
        raise PackError(f"{source}: {where}: expected an object, got {type(obj).__name__}")
    for key, value in obj.items():
        if key not in keys:
            raise PackError(f"{source}: unknown key {(path + '.' if path else '') + key!r}{_hint(key, keys)}")
        if not isinstance(value, keys[key]) or isinstance(value, bool):
            raise PackError(
                f"{source}: {(path + '.' if path else '') + key}: expected {keys[key]}, got {type(value).__name__}"
            )
    missing = sorted(required - set(obj))
    if missing:
        raise PackError(f"{source}: {where}: missing required key(s) {missing}")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackError(f"{path}: no such fingerprint file") from None
    except json.JSONDecodeError as exc:
        raise PackError(f"{path}: not valid JSON: {exc}") from None


def _parse_body(data: dict, source: str, sources: dict[str, dict[str, str]]) -> list[Pair]:
    """Sources (added to ``sources``) and pairs of one file."""
    for key, src in data.get("sources", {}).items():
        _check_keys(src, _SOURCE_KEYS, source, f"sources.{key}", set(_SOURCE_KEYS))
        if not _ORIGIN.match(src["origin"]):
            raise PackError(
                f"{source}: sources.{key}.origin: {src['origin']!r} is not pinned "
                "(pypi:<package>@<version>, npm:<package>@<version> or github:<owner>/<repo>@<40-hex commit>)"
            )
        if not _SHA256.match(src["sha256"]):
            raise PackError(f"{source}: sources.{key}.sha256: {src['sha256']!r} is not a lowercase sha256")
        if key in sources and sources[key] != src:
            raise PackError(f"{source}: sources.{key}: defined differently in another fingerprint file")
        sources[key] = src
    pairs = []
    for kind, keys in (("encode", _ENCODE_KEYS), ("tokens", _TOKEN_KEYS)):
        for i, entry in enumerate(data.get(kind, ())):
            where = f"{kind}[{i}]"
            _check_keys(entry, keys, source, where, set(keys))
            refs = (entry["source"],) if isinstance(entry["source"], str) else tuple(entry["source"])
            if not refs:
                raise PackError(f"{source}: {where}.source: a pair needs at least one source")
            if kind == "encode":
                if not entry["ids"] or not all(isinstance(x, int) and not isinstance(x, bool) for x in entry["ids"]):
                    raise PackError(f"{source}: {where}.ids: expected a non-empty list of ints")
                pairs.append(Pair("encode", entry["text"], tuple(entry["ids"]), refs, f"{source}: {where}"))
            else:
                pairs.append(Pair("token", entry["token"], (entry["id"],), refs, f"{source}: {where}"))
    return pairs


def load_fingerprints(path: Path, root: Path | None = None) -> Fingerprints:
    """Load one model's fingerprint file and its sets, strictly."""
    root = root or path.parent
    data = _read(path)
    _check_keys(data, _MODEL_KEYS, str(path), "", {"model_id", "vocabulary", "sources"})
    if data["vocabulary"] not in VOCABULARY:
        raise PackError(
            f"{path}: vocabulary: {data['vocabulary']!r} is not one of {VOCABULARY}"
            f"{_hint(data['vocabulary'], VOCABULARY)}"
        )
    sources: dict[str, dict[str, str]] = {}
    files = [path]
    pairs = []
    for name in data.get("include", ()):
        set_path = root / "sets" / f"{name}.json"
        if not set_path.exists():
            known = sorted(p.stem for p in (root / "sets").glob("*.json"))
            raise PackError(f"{path}: include: no fingerprint set {name!r}{_hint(name, known)}")
        set_data = _read(set_path)
        _check_keys(set_data, _SET_KEYS, str(set_path), "", {"set", "sources"})
        if set_data["set"] != name:
            raise PackError(f"{set_path}: set: {set_data['set']!r} must equal the file name {name!r}")
        pairs += _parse_body(set_data, str(set_path), sources)
        files.append(set_path)
    pairs += _parse_body(data, str(path), sources)
    for pair in pairs:
        for ref in pair.sources:
            if ref not in sources:
                raise PackError(f"{pair.where}.source: unknown source {ref!r}{_hint(ref, sorted(sources))}")
    if len(pairs) < MIN_PAIRS:
        raise PackError(f"{path}: {len(pairs)} fingerprint pair(s); every pack needs at least {MIN_PAIRS}")
    return Fingerprints(data["model_id"], data["vocabulary"], tuple(pairs), sources, tuple(files))


def fingerprints_for(model_id: str, root: Path | None = None) -> Fingerprints:
    """The fingerprints of ``model_id`` (``fixtures/fingerprints/<Org>--<Name>.json``)."""
    root = root or FINGERPRINTS
    path = root / f"{model_id.replace('/', '--')}.json"
    if not path.exists():
        raise PackError(
            f"{model_id}: no vocabulary fingerprints ({path} is missing). Every pack is checked against at least "
            f"{MIN_PAIRS} (text -> ids) / (id <-> token) pairs taken from the model's public sources; add them "
            "(see docs/adding-a-family.md)."
        )
    fp = load_fingerprints(path, root)
    if fp.model_id != model_id:
        raise PackError(f"{path}: model_id {fp.model_id!r} does not match the file name ({model_id!r})")
    return fp


def _token_check(tok: Any, token: str, idx: int) -> tuple[bool, str]:
    got_id, got_token = tok.token_to_id(token), tok.id_to_token(idx)
    ok = got_id == idx and got_token == token
    return ok, f"token_to_id({token!r}) = {got_id}, id_to_token({idx}) = {got_token!r}"


def verify_tokenizer_json(model_id: str, tokenizer_json: bytes, fp: Fingerprints, fixture_class: str) -> dict:
    """Check ``tokenizer_json`` against every pair; raise :class:`PackError` listing each failure.

    Returns the manifest entry (``{"vocabulary", "pairs", "files", "sources"}``). A REAL or DERIVED pack
    must be fingerprinted against the family's own vocabulary.
    """
    from tokenizers import Tokenizer

    if fixture_class in ("REAL", "DERIVED") and fp.vocabulary != "family":
        raise PackError(
            f"{model_id}: PROVENANCE.md says {fixture_class}, but its fingerprints are of a {fp.vocabulary} "
            "vocabulary: a pack may be called REAL or DERIVED only when its fingerprints are the family's own "
            '("vocabulary": "family") and pass.'
        )
    try:
        tok = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises plain Exceptions
        raise PackError(f"{model_id}: the built tokenizer.json does not load: {exc}") from None
    failures = []
    for pair in fp.pairs:
        if pair.kind == "encode":
            actual = tok.encode(pair.text, add_special_tokens=False).ids
            ok, got = actual == list(pair.ids), f"actual {actual}"
        else:
            ok, got = _token_check(tok, pair.text, pair.ids[0])
        if not ok:
            failures.append(
                f"  {pair.describe()}: {got}\n    pair  {pair.where}\n    source {fp.source_text(pair.sources)}"
            )
    if failures:
        shown = "\n".join(failures[:12]) + (f"\n  ... and {len(failures) - 12} more" if len(failures) > 12 else "")
        raise PackError(
            f"{model_id}: the vocabulary fails {len(failures)} of {len(fp.pairs)} fingerprint pair(s) "
            f"(expected ids from the sources named; actual from the built tokenizer.json):\n{shown}\n"
            "The registry package does not hold the vocabulary it is named for, or the recipe's edits moved ids. "
            "Refusing the pack."
        )
    return {
        "vocabulary": fp.vocabulary,
        "pairs": len(fp.pairs),
        "passed": len(fp.pairs),
        "files": [p.name for p in fp.files],
        "sources": sorted(fp.sources),
    }
