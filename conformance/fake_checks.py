"""Fake-image checks: the injected image's vision tokens are masked, and the model cannot see them."""

from __future__ import annotations

from typing import Any

import torch

from . import impl
from .checks import IGNORE, CheckFailure, decode_runs, header, runs
from .corpus import Case
from .loading import collate_for, load_processor, load_tiny_model, resolve_module
from .registry import FamilySpec

TOLERANCE = 1e-5  # fp32: the masked image must not change real-token logits beyond round-off
_NON_MODEL_KEYS = ("labels", "n_images_per_sample", "n_videos_per_sample")


def vision_token_ids(spec: FamilySpec, processor: Any) -> list[int]:
    """Vision token ids from the family record (independent of the implementation's own discovery).

    A record may declare none (a family whose sequence holds no image token); then ``[]``, and the
    ``vision_tokens`` check reports what the implementation found rather than a record problem.
    """
    tok = processor.tokenizer
    ids = [tok.convert_tokens_to_ids(t) for t in spec.vision_tokens]
    if any(i is None or i == tok.unk_token_id for i in ids):
        raise CheckFailure(f"{spec.model_id}: family record vision_tokens {spec.vision_tokens} not all in the tokenizer")
    return ids


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        if key in _NON_MODEL_KEYS:
            continue
        out[key] = value.to(torch.float32) if value.is_floating_point() else value
    return out


def _forward(spec: FamilySpec, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """fp32 logits ``[B, L-1, V]`` and whether the vision tower ran."""
    model = load_tiny_model(spec.model_id, spec.model_class)
    fired = []
    handle = resolve_module(model, spec.vision_module).register_forward_hook(lambda *a: fired.append(True))
    try:
        with torch.no_grad():
            logits = model(**model_inputs(batch)).logits
    finally:
        handle.remove()
    return logits, bool(fired)


def check_fake_masking(spec: FamilySpec, case: Case, batch: dict[str, torch.Tensor], row: int) -> torch.Tensor:
    """Every vision token of the fake sample: attention_mask == 0 and (shifted) label == -100.

    Returns the vision-token boolean mask of the row.
    """
    processor = load_processor(spec.model_id)
    where = header(spec, case.id, "fake_image")
    ids = batch["input_ids"][row]
    declared = vision_token_ids(spec, processor)
    if not declared:
        raise CheckFailure(f"{where} the family record declares no vision_tokens to check the fake image against")
    vis = torch.isin(ids, torch.tensor(declared))
    if not vis.any():
        raise CheckFailure(f"{where} the injected fake image produced no vision tokens")
    visible = (vis & (batch["attention_mask"][row] != 0)).nonzero().flatten().tolist()
    if visible:
        raise CheckFailure("\n".join([f"{where} fake-image vision tokens left attended (attention_mask != 0):",
                                      *decode_runs(processor.tokenizer, ids.tolist(), visible)]))
    labels = batch["labels"][row]
    # labels are shifted: labels[p-1] is the target for the token at position p
    supervised = [p for p in vis.nonzero().flatten().tolist() if p >= 1 and labels[p - 1] != IGNORE]
    if supervised:
        raise CheckFailure(f"{where} fake-image vision tokens are supervised at positions {runs(supervised)}")
    return vis


def check_fake_image_invisible(spec: FamilySpec, case: Case) -> None:
    """Masking, vision tower participation, and identical real-token logits (within 1e-5, fp32)."""
    inject_fake_image_into_conversation = impl.get("fake_image", "inject_fake_image_into_conversation")
    processor = load_processor(spec.model_id)
    collate = collate_for(spec)
    # documented parameters by keyword (fake_image and collate_fns pages); fresh conversations per call
    fake_conv = inject_fake_image_into_conversation(conversation=case.conversation)
    fake = collate(examples=[{"conversation": fake_conv, "_injected_fake": True}], processor=processor)
    plain = collate(examples=[{"conversation": case.conversation}], processor=processor)
    check_fake_masking(spec, case, fake, 0)
    _compare_real_logits(spec, case, fake, 0, plain, "fake_image")


def _compare_real_logits(spec, case, fake, row, plain, check, plain_row=0) -> None:
    where = header(spec, case.id, check)
    real = fake["attention_mask"][row] != 0
    plain_real = plain["attention_mask"][plain_row] != 0
    # Padding in a batch keeps the row's final token that a solo collate drops in the shift, so
    # compare the positions both have.
    n = int(min(real.sum(), plain_real.sum()))
    real = real & (real.cumsum(0) <= n)
    plain_real = plain_real & (plain_real.cumsum(0) <= n)
    ids_fake = fake["input_ids"][row][real]
    ids_plain = plain["input_ids"][plain_row][plain_real]
    if not torch.equal(ids_fake, ids_plain):
        raise CheckFailure(f"{where} the real tokens of the fake-image sample differ from the plain sample's tokens:\n"
                           f"  fake : {ids_fake.tolist()}\n  plain: {ids_plain.tolist()}")
    if spec.model_class is None:
        return  # no tiny model for this family (stand-in processor): masking + identical real tokens only
    logits_fake, fired = _forward(spec, fake)
    logits_plain, _ = _forward(spec, plain)
    if not fired:
        raise CheckFailure(f"{where} the vision tower ({spec.vision_module}) did not run on the fake image")
    diff = (logits_fake[row][real] - logits_plain[plain_row][plain_real]).abs()
    worst = float(diff.max())
    if worst > TOLERANCE:
        per_pos = diff.amax(-1)
        bad = (per_pos > TOLERANCE).nonzero().flatten().tolist()
        tok = load_processor(spec.model_id).tokenizer
        ids = ids_plain.tolist()
        raise CheckFailure("\n".join([
            f"{where} the fake image changes real-token logits: max |Δ| = {worst:.3e} > {TOLERANCE:g} "
            f"at {len(bad)} of {len(ids)} real positions; the mask does not make the image invisible",
            "affected tokens (positions among the real tokens):", *decode_runs(tok, ids, bad)[:8],
        ]))


def check_fake_image_mixed_batch(spec: FamilySpec, text_case: Case, image_case: Case) -> None:
    """A fake-image sample batched with a real-image sample: each row's real-token logits equal the
    row collated alone (the fake image must not disturb its neighbour either)."""
    inject_fake_image_into_conversation = impl.get("fake_image", "inject_fake_image_into_conversation")
    processor = load_processor(spec.model_id)
    collate = collate_for(spec)
    fake_conv = inject_fake_image_into_conversation(conversation=text_case.conversation)
    mixed = collate(examples=[{"conversation": fake_conv, "_injected_fake": True},
                              {"conversation": image_case.conversation}], processor=processor)
    check_fake_masking(spec, text_case, mixed, 0)
    plain_text = collate(examples=[{"conversation": text_case.conversation}], processor=processor)
    _compare_real_logits(spec, text_case, mixed, 0, plain_text, "fake_image_mixed_batch")
    if spec.model_class is None:
        return
    solo_image = collate(examples=[{"conversation": image_case.conversation}], processor=processor)
    where = header(spec, image_case.id, "fake_image_mixed_batch")
    logits_mixed, _ = _forward(spec, mixed)
    logits_solo, _ = _forward(spec, solo_image)
    real_logits = logits_mixed[1][mixed["attention_mask"][1] != 0]
    n = min(len(real_logits), logits_solo.shape[1])  # the solo row lost its last token to the shift
    diff = (real_logits[:n] - logits_solo[0][:n]).abs()
    if float(diff.max()) > TOLERANCE:
        raise CheckFailure(f"{where} the real-image neighbour's logits change when batched with a fake-image sample: "
                           f"max |Δ| = {float(diff.max()):.3e} > {TOLERANCE:g}")
