"""The framework adapter plumbing (conformance/frameworks): the contract shift, the '—' cells, and the
labels verdict on a collate that renders its own template, with a toy adapter in place of a framework."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conformance.frameworks import DASH, Framework, to_contract

from .conftest import QWEN25

ROOT = Path(__file__).resolve().parents[1]


def test_to_contract_shifts_labels_and_drops_the_last_position():
    batch = {
        "input_ids": torch.tensor([[1, 2, 3, 4]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0]]),
        "labels": torch.tensor([[-100, -100, 3, 4]]),
        "pixel_values": torch.zeros(2, 3),
        "not_a_tensor": [1],
    }
    out = to_contract(batch)
    assert out["input_ids"].tolist() == [[1, 2, 3]]
    assert out["attention_mask"].tolist() == [[1, 1, 1]]
    assert out["labels"].tolist() == [[-100, 3, 4]]
    assert out["pixel_values"] is batch["pixel_values"] and "not_a_tensor" not in out


def test_to_contract_refuses_what_it_cannot_shift():
    with pytest.raises(KeyError, match="labels"):
        to_contract({"input_ids": torch.ones(1, 3)})
    with pytest.raises(ValueError, match=r"\(1, 3\) and labels \(1, 2\)"):
        to_contract({"input_ids": torch.ones(1, 3), "labels": torch.ones(1, 2)})


def test_a_family_or_check_a_framework_cannot_express_is_a_dash_with_its_reason():
    fw = Framework(
        name="toy",
        package="toy==1.0",
        transformers="5.23.0",
        families={"Qwen2_5_VLProcessor": "qwen"},
        unsupported={"Gemma3Processor": "no gemma3 template (toy/templates.py)"},
        not_expressible={"fake_image": "toy has no fake image"},
    )
    assert fw.family_reason("Qwen2_5_VLProcessor") is None and fw.check_reason("labels") is None
    assert fw.family_reason("Gemma3Processor") == (
        f"{DASH} toy 1.0 does not support this family: no gemma3 template (toy/templates.py)"
    )
    assert "no template or multimodal plugin for KimiVLProcessor" in fw.family_reason("KimiVLProcessor")
    assert fw.check_reason("fake_image") == f"{DASH} toy cannot express fake_image: toy has no fake image"
    assert fw.check_reason("pp_chunking").startswith(f"{DASH} toy cannot express pp_chunking: ")


# A toy framework: the documented vlmspec collate, with the rendering and masking bugs frameworks have.
_TOY = """
from conformance.frameworks import Framework, to_contract
from vlmspec.collate_fns import default_collate_fn

VLMSPEC_IMPL = {"collate_fns": __name__}
FRAMEWORK = Framework(
    name="toy", package="toy==1.0", transformers="5.23.0", families={"Qwen2_5_VLProcessor": "qwen2_vl"},
    unsupported={"Gemma3Processor": "no gemma3 template (toy/templates.py)"},
)
MODE = "%s"


def framework_collate_fn(examples, processor):
    batch = default_collate_fn(examples=examples, processor=processor)
    ids, labels = batch["input_ids"], batch["labels"].clone()
    newline = processor.tokenizer.convert_tokens_to_ids("Ċ")
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    if MODE == "newline":  # also trains on the newline after every closing token
        for t in range(1, ids.shape[1]):
            if ids[0, t - 1] == end and labels[0, t - 2] != -100 and ids[0, t] == newline:
                labels[0, t - 1] = newline
    if MODE == "own_template":  # its own default system prompt, labels right for its ids
        system = processor.tokenizer.encode("You are Toy.", add_special_tokens=False)
        at = 3  # after '<|im_start|>system\\n'
        ids = torch.cat([ids[:, :at], torch.tensor([system]), ids[:, at:]], 1)
        labels = torch.cat([labels[:, :at], torch.full((1, len(system)), -100), labels[:, at:]], 1)
    mask = torch.ones_like(ids)
    return dict(batch, input_ids=ids, labels=labels, attention_mask=mask)
"""


def _toy_run(tmp_path: Path, mode: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "toy_fw.py").write_text("import torch\n" + _TOY % mode, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance", "-p", "no:cacheprovider", "-q", "--impl", "toy_fw"]
        + ["--model", QWEN25, "--model", "google/gemma-3-4b-it", "--conformance-report", str(tmp_path / "rep")]
        + list(args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    return out, json.loads((tmp_path / "rep" / "conformance-report.json").read_text())


@pytest.mark.slow  # two pytest runs in a subprocess over one model's labels
def test_a_toy_framework_is_judged_by_the_oracle_and_what_it_cannot_run_is_a_dash(tmp_path):
    out, report = _toy_run(tmp_path, "newline", "-k", "labels or fake_image or api")
    assert out.returncode == 1, out.stdout[-3000:]
    qwen, gemma = report["models"][QWEN25]["checks"], report["models"]["google/gemma-3-4b-it"]["checks"]
    labels = qwen["labels"]
    # every earlier turn trains on the newline after its <|im_end|> (the toy leaves the row's last one)
    failed = {r["case"] for r in labels["results"] if r["outcome"] == "failed"}
    assert {"multi_turn_text", "image_in_second_turn"} <= failed and "single_turn_text" not in failed
    evidence = next(r["evidence"] for r in labels["results"] if r["case"] == "multi_turn_text")
    assert "supervised but not an answer/closing token:" in evidence and "'\\n'" in evidence
    # the documented collate's other checks, and a family the framework lacks, are '—' with the reason
    assert qwen["fake_image"]["status"] == "skip"
    assert qwen["fake_image"]["results"][0]["reason"].startswith(f"{DASH} toy cannot express fake_image")
    assert gemma["labels"]["status"] == "skip"
    assert "no gemma3 template (toy/templates.py)" in gemma["labels"]["results"][0]["reason"]
    assert report["models"]["(implementation)"]["checks"]["api"]["status"] == "skip"
    # the Gemma 4 variant rows of the documented collate are not a framework's
    assert not [m for m in report["models"] if "@" in m]

    out, report = _toy_run(tmp_path, "own_template", "-k", "labels and single_turn_text")
    labels = report["models"][QWEN25]["checks"]["labels"]
    evidence = labels["results"][0]["evidence"]
    assert labels["status"] == "FAIL", out.stdout[-3000:]
    first, diff = evidence.splitlines()[0], evidence.splitlines()[2]
    assert first.endswith("supervised tokens agree with the oracle"), evidence
    assert "input_ids differ from the model's chat template" in evidence
    assert "You are Toy." in diff, evidence
