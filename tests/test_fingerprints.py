"""Vocabulary fingerprints: every pack is checked against sourced (text -> ids) / (id <-> token) pairs."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from vlmspec.hub import PackError, materialize, pack_cache_dir
from vlmspec.hub import fingerprints as fp_mod
from vlmspec.hub.fingerprints import MIN_PAIRS, fingerprints_for, load_fingerprints, verify_tokenizer_json
from vlmspec.hub.recipe import family_folder, sha256_bytes

from .conftest import QWEN25


def _registered() -> list[str]:
    from conformance.registry import load_registry

    return sorted(load_registry())


@pytest.mark.parametrize("model_id", _registered())
def test_every_registered_model_has_sourced_fingerprints(model_id):
    fp = fingerprints_for(model_id)  # strict: unknown keys, unpinned sources, unknown source keys raise
    assert len(fp.pairs) >= MIN_PAIRS
    for pair in fp.pairs:
        for ref in pair.sources:
            src = fp.sources[ref]
            assert src["origin"] and src["path"] and len(src["sha256"]) == 64, (pair.where, ref)
    kinds = {p.kind for p in fp.pairs}
    assert "token" in kinds or "encode" in kinds


@pytest.mark.parametrize("model_id", _registered())
def test_class_agrees_with_whose_vocabulary_is_fingerprinted(model_id):
    """REAL / DERIVED only with the family's own vocabulary fingerprinted (the materializer refuses otherwise)."""
    cls = family_folder(model_id).fixture_class
    if cls in ("REAL", "DERIVED"):
        assert fingerprints_for(model_id).vocabulary == "family", model_id


@pytest.fixture()
def shifted_family(tmp_path, monkeypatch):
    """A copy of the Qwen2.5-VL family folder whose registry file has every id shifted by one.

    The shifted file is put in a fresh download cache under its own sha256 and the recipe pins that
    sha256, so the pack passes every checksum: only the fingerprints can notice the wrong vocabulary.
    """
    materialize(QWEN25)  # the session cache holds the verified base file (no network)
    recipe = family_folder(QWEN25).recipe
    base = json.loads((pack_cache_dir() / ".vlmspec-downloads" / recipe.sha256).read_bytes())
    base["model"]["vocab"] = {tok: idx + 1 for tok, idx in base["model"]["vocab"].items()}
    for tok in base["added_tokens"]:
        tok["id"] += 1
    shifted = json.dumps(base, ensure_ascii=False).encode()
    digest = sha256_bytes(shifted)
    cache = tmp_path / "hub"
    (cache / ".vlmspec-downloads").mkdir(parents=True)
    (cache / ".vlmspec-downloads" / digest).write_bytes(shifted)
    root = tmp_path / "families"
    folder = root / QWEN25.replace("/", "--")
    shutil.copytree(family_folder(QWEN25).path, folder)
    data = json.loads((folder / "tokenizer_recipe.json").read_text())
    data["base"]["sha256"] = digest
    (folder / "tokenizer_recipe.json").write_text(json.dumps(data))
    monkeypatch.setenv("VLMSPEC_FAMILIES", str(root))
    monkeypatch.setenv("VLMSPEC_HUB_CACHE", str(cache))
    return cache


def test_a_shifted_vocabulary_is_refused_naming_pair_ids_and_source(shifted_family):
    with pytest.raises(PackError) as err:
        materialize(QWEN25)
    msg = str(err.value)
    assert "fails" in msg and "Refusing the pack" in msg
    # the pair, the expected ids (from llama.cpp's test data), the actual ids and where the pair came from
    assert "encode 'Hello world' -> [9707, 1879]: actual [9708, 1880]" in msg
    assert "encode '333' -> [18, 18, 18]: actual [19, 19, 19]" in msg  # digits
    assert "pypi:llama-cpp-python@0.3.36 vendor/llama.cpp/models/ggml-vocab-qwen2.gguf.out" in msg
    assert "qwen2-bpe.json: encode[2]" in msg
    assert not list((shifted_family / "models--Qwen--Qwen2.5-VL-3B-Instruct").glob("snapshots/*")), (
        "a refused pack must not be written"
    )


def test_a_borrowed_vocabulary_passes_the_checksums_but_not_the_fingerprints(tmp_path):
    """The npm 'Llama 2' case: a real file, correctly pinned, that is another model's vocabulary.

    The Llama 3.1 tokenizer (a real registry file) offered as Qwen2.5-VL's: its ids for the same text differ.
    """
    from vlmspec.hub.recipe import fetch_registry_file

    llama = family_folder("nvidia/llama-nemotron-embed-vl-1b-v2").recipe
    other = fetch_registry_file(llama, pack_cache_dir() / ".vlmspec-downloads")
    with pytest.raises(PackError, match=r"encode 'Hello world' -> \[9707, 1879\]: actual \[9906, 1917\]"):
        verify_tokenizer_json(QWEN25, other, fingerprints_for(QWEN25), "DERIVED")


def test_derived_needs_fingerprints_of_the_familys_own_vocabulary():
    fp = fingerprints_for("moonshotai/Kimi-VL-A3B-Instruct")
    assert fp.vocabulary == "stand-in"
    with pytest.raises(PackError, match="may be called REAL or DERIVED only"):
        verify_tokenizer_json(fp.model_id, b"{}", fp, "DERIVED")


def test_manifest_records_the_fingerprints_and_a_changed_pair_rebuilds(tmp_path, monkeypatch):
    shutil.copytree(fp_mod.FINGERPRINTS, tmp_path / "fp")
    monkeypatch.setattr(fp_mod, "FINGERPRINTS", tmp_path / "fp")
    cache = tmp_path / "hub"
    shutil.copytree(pack_cache_dir() / ".vlmspec-downloads", cache / ".vlmspec-downloads")
    first = materialize(QWEN25, cache=cache)
    rec = first.manifest["fingerprints"]
    assert rec["vocabulary"] == "family" and rec["passed"] == rec["pairs"] >= MIN_PAIRS
    assert materialize(QWEN25, cache=cache).revision == first.revision  # unchanged: reused
    path = tmp_path / "fp" / "sets" / "qwen-vl-vision.json"
    data = json.loads(path.read_text())
    data["tokens"][0]["id"] = 151654  # a wrong expectation must now refuse the existing pack too
    path.write_text(json.dumps(data))
    with pytest.raises(PackError, match=r"token 151654 <-> '<\|image_pad\|>'"):
        materialize(QWEN25, cache=cache)


def _write(tmp_path, data, sets=None):
    root = tmp_path / "fp"
    (root / "sets").mkdir(parents=True, exist_ok=True)
    for name, body in (sets or {}).items():
        (root / "sets" / f"{name}.json").write_text(json.dumps(body))
    path = root / "Org--M.json"
    path.write_text(json.dumps(data))
    return path


_SRC = {"s": {"origin": "pypi:pkg@1.0", "path": "a/b.txt", "sha256": "a" * 64, "what": "test"}}
_TOKENS = [{"id": i, "token": f"t{i}", "source": "s"} for i in range(MIN_PAIRS)]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(vocabulry="family"), "unknown key 'vocabulry' (did you mean 'vocabulary'?)"),
        (lambda d: d.update(vocabulary="borrowed"), "is not one of"),
        (lambda d: d["sources"]["s"].update(origin="pypi:pkg"), "is not pinned"),
        (lambda d: d["sources"]["s"].update(sha256="abc"), "is not a lowercase sha256"),
        (lambda d: d["tokens"][0].update(source="t"), "unknown source 't'"),
        (lambda d: d["tokens"][0].update(idx=1), "unknown key 'tokens[0].idx'"),
        (lambda d: d.update(tokens=d["tokens"][: MIN_PAIRS - 1]), f"{MIN_PAIRS - 1} fingerprint pair"),
        (lambda d: d.update(include=["nope"]), "no fingerprint set 'nope'"),
    ],
)
def test_fingerprint_files_load_strictly(tmp_path, edit, message):
    data = {
        "model_id": "Org/M",
        "vocabulary": "family",
        "sources": json.loads(json.dumps(_SRC)),
        "tokens": json.loads(json.dumps(_TOKENS)),
    }
    edit(data)
    with pytest.raises(PackError, match=re.escape(message)):
        load_fingerprints(_write(tmp_path, data))


def test_sets_are_shared_and_counted(tmp_path):
    body = {"set": "base", "sources": _SRC, "tokens": _TOKENS[:5]}
    data = {
        "model_id": "Org/M",
        "vocabulary": "family",
        "include": ["base"],
        "sources": {},
        "encode": [{"text": "x", "ids": [1], "source": "s"}] * 3,
    }
    fp = load_fingerprints(_write(tmp_path, data, {"base": body}))
    assert len(fp.pairs) == 8 and {p.kind for p in fp.pairs} == {"token", "encode"}
    assert len(fp.files) == 2


def test_missing_fingerprints_are_a_clear_error(tmp_path):
    with pytest.raises(PackError, match="no vocabulary fingerprints"):
        fingerprints_for("Org/Nothing", root=tmp_path)
