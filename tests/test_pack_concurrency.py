"""Concurrency: processes that build and load the same pack in the same fresh cache at once (two
`pytest -n 2` runs sharing $VLMSPEC_HUB_CACHE) all succeed, and leave one intact, verified pack.

The registry file comes from the already populated download cache (copied into the fresh cache),
so no network is needed.
"""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import pytest

from vlmspec.hub import load_pack, materialize, pack_cache_dir

FLAGSHIP = "Qwen/Qwen2.5-VL-3B-Instruct"
N_PROCESSES = 3


def _worker(cache: str, barrier, results) -> None:
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoProcessor

    try:
        barrier.wait(timeout=120)  # start together
        pack = materialize(FLAGSHIP, cache=Path(cache))
        proc = AutoProcessor.from_pretrained(FLAGSHIP, cache_dir=cache)
        ids = proc.tokenizer("<|im_start|>user\nhi<|im_end|>")["input_ids"]
        results.put(("ok", pack.revision, ids))
    except BaseException as exc:  # reported to the parent, which fails the test with it
        results.put(("error", f"{type(exc).__name__}: {exc}", None))


@pytest.mark.slow  # racing subprocesses, each importing torch and transformers
def test_concurrent_materialize_and_load_share_one_verified_pack(tmp_path):
    downloads = pack_cache_dir() / ".vlmspec-downloads"
    if not any(downloads.glob("*")):
        materialize(FLAGSHIP)  # populates the download cache once (registry access)
    cache = tmp_path / "hub"
    shutil.copytree(downloads, cache / ".vlmspec-downloads")

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(N_PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(cache), barrier, results)) for _ in range(N_PROCESSES)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [o[1] for o in outcomes if o[0] != "ok"]
    assert errors == [], errors
    assert all(p.exitcode == 0 for p in procs)
    assert len({o[1] for o in outcomes}) == 1, "the processes saw different pack revisions"
    assert len({tuple(o[2]) for o in outcomes}) == 1

    pack = load_pack(FLAGSHIP, cache)  # re-verifies every file's sha256
    assert pack is not None and pack.revision == outcomes[0][1]
    repo = pack.snapshot.parents[1]
    assert [p.name for p in (repo / "snapshots").iterdir()] == [pack.revision]
    assert not list(repo.rglob("*.incomplete")), "a half-written blob was left behind"
    # the same pack as a serial build in another fresh cache
    serial = tmp_path / "serial"
    shutil.copytree(downloads, serial / ".vlmspec-downloads")
    assert materialize(FLAGSHIP, cache=serial).manifest["files"] == pack.manifest["files"]


@pytest.mark.parametrize("victim", ["tokenizer.json"])
def test_pack_changed_on_disk_is_refused(tmp_path, victim):
    """The concurrency test's verification can fail: a blob changed after the build is refused."""
    from vlmspec.hub import PackError

    downloads = pack_cache_dir() / ".vlmspec-downloads"
    cache = tmp_path / "hub"
    shutil.copytree(downloads, cache / ".vlmspec-downloads")
    pack = materialize(FLAGSHIP, cache=cache)
    blob = (pack.snapshot / victim).resolve()
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b" ")
    with pytest.raises(PackError, match="changed on disk"):
        load_pack(FLAGSHIP, cache)
