"""Fake-image checks: the injected image's vision tokens are masked, and the model cannot see them."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from . import impl
from .checks import IGNORE, CheckFailure, collate_case, decode_runs, header, runs
from .corpus import Case, load_corpus
from .loading import collate_for, load_processor, load_tiny_model, resolve_module
from .registry import FamilySpec

TOLERANCE = 1e-5  # fp32: the masked image must not change real-token logits beyond round-off
DIAGNOSED_CASES = 3
"""Cases per (model, check) that get the full diagnosis (two more forwards each); later failures of the
same cell quote what those found instead of measuring it again."""
_DIAGNOSES: dict[tuple[str, str], list[tuple[str, list[str]]]] = {}  # per session: (case id, causes)
_NON_MODEL_KEYS = ("labels", "n_images_per_sample", "n_videos_per_sample", "n_audios_per_sample")


def vision_token_ids(spec: FamilySpec, processor: Any) -> list[int]:
    """Vision token ids from the family record (independent of the implementation's own discovery).

    A record may declare none (a family whose sequence holds no image token); then ``[]``, and the
    ``vision_tokens`` check reports what the implementation found rather than a record problem.
    """
    tok = processor.tokenizer
    ids = [tok.convert_tokens_to_ids(t) for t in spec.vision_tokens]
    if any(i is None or i == tok.unk_token_id for i in ids):
        raise CheckFailure(
            f"{spec.model_id}: family record vision_tokens {spec.vision_tokens} not all in the tokenizer"
        )
    return ids


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        if key in _NON_MODEL_KEYS:
            continue
        out[key] = value.to(torch.float32) if value.is_floating_point() else value
    return out


def _forward(
    spec: FamilySpec, batch: dict[str, torch.Tensor], position_ids: torch.Tensor | None = None
) -> tuple[torch.Tensor, bool]:
    """fp32 logits ``[B, L-1, V]`` and whether the vision tower ran (``position_ids``: ``[B, L-1]``, optional)."""
    model = load_tiny_model(spec.model_id, spec.model_class)
    fired = []
    handle = resolve_module(model, spec.vision_module).register_forward_hook(lambda *a: fired.append(True))
    inputs = model_inputs(batch)
    if position_ids is not None:
        inputs["position_ids"] = position_ids
    try:
        with torch.no_grad():
            logits = model(**inputs).logits
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
        raise CheckFailure(
            "\n".join(
                [
                    f"{where} fake-image vision tokens left attended (attention_mask != 0):",
                    *decode_runs(processor.tokenizer, ids.tolist(), visible),
                ]
            )
        )
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
    check_media_helpers(spec, case, fake_conv)
    check_direct_masking(spec, case, fake_conv)
    check_media_neighbours(spec, case, fake_conv)
    _compare_real_logits(spec, case, fake, 0, plain, "fake_image")


_DUMMY_IMAGE_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "image_grid_hws",
    "image_sizes",
    "image_position_ids",
    "pixel_attention_mask",
    "image_attention_mask",
)
"""The image tensors of a text-only batch: all of them are the framework's dummy image."""
_AUDIO_KEYS = (
    "input_features",
    "input_features_mask",
    "feature_attention_mask",
    "audio_input_features",
    "audio_embed_sizes",
    "audio_attention_mask",
)
"""The audio tensors of a batch: the framework's dummy clip in a row that has no audio of its own."""


def check_framework_dummy_image(spec: FamilySpec, case: Case) -> None:
    """A framework's own dummy image for text-only batches (LLaMA-Factory's) obeys the fake-image contract.

    The adapter's ``dummy_image_batch`` gives the batch as the framework hands it to the model (``[B, L]``,
    labels unshifted, the dummy's tokens and pixels kept). Its vision tokens must be unattended and
    unsupervised, the vision tower must run on it (so FSDP/ZeRO-3 collectives match across ranks), and the
    real tokens' logits must equal those of the same row without the dummy's columns and pixels (fp32,
    1e-5): the dummy image is invisible. A clip in a case without audio is the framework's dummy clip
    (LLaMA-Factory, templates with an audio token) and goes with the dummy image.
    """
    dummy_image_batch = impl.get("collate_fns", "dummy_image_batch")
    processor = load_processor(spec.model_id)
    where = header(spec, case.id, "fake_image")
    model = load_tiny_model(spec.model_id, spec.model_class) if spec.model_class is not None else None
    # with the model, the framework's collator adds what it computes from it (LLaMA-Factory: M-RoPE position_ids)
    batch = dummy_image_batch([{"conversation": case.conversation}], processor, model=model)
    ids, mask, labels = batch["input_ids"][0], batch["attention_mask"][0], batch["labels"][0]
    vis = torch.isin(ids, torch.tensor(vision_token_ids(spec, processor)))
    if not vis.any():
        raise CheckFailure(f"{where} the framework's text-only batch carries no dummy image tokens")
    tok = processor.tokenizer
    visible = (vis & (mask != 0)).nonzero().flatten().tolist()
    if visible:
        raise CheckFailure(
            "\n".join([f"{where} dummy-image vision tokens left attended:", *decode_runs(tok, ids.tolist(), visible)])
        )
    supervised = (vis & (labels != IGNORE)).nonzero().flatten().tolist()  # unshifted: label p is token p's
    if supervised:
        raise CheckFailure(f"{where} dummy-image vision tokens are supervised at positions {runs(supervised)}")
    if model is None:
        return
    audio = [k for k in ("input_features", "audio_input_features") if batch.get(k) is not None]
    audio_config = getattr(model.config, "audio_config", "absent")
    if audio and audio_config is None:
        pytest.skip(
            f"the framework adds a dummy audio clip ({audio}) to the text-only batch too, and the pack's tiny "
            f"model has no audio tower (audio_config null), so no forward can take it; masking was checked"
        )
    real = mask != 0
    # the same row without the dummy: its columns cut, the image tensors dropped (they are the dummy's),
    # positions left to the model (a text row's are 0..n-1); the row's own audio stays, but a clip in a
    # row without audio is the framework's dummy clip (LLaMA-Factory adds one where the template has an
    # audio token, its tokens after the dummy image's), so it goes with its columns
    dummy = set(_DUMMY_IMAGE_KEYS) | (set(_AUDIO_KEYS) if "audio" not in case.media else set())
    plain = {}
    for key, value in batch.items():
        if key in dummy or key in ("position_ids", "rope_deltas") or not isinstance(value, torch.Tensor):
            continue
        plain[key] = value[:, real] if value.dim() == 2 and value.shape == (1, ids.shape[0]) else value
    logits_dummy, fired = _forward(spec, batch)
    logits_plain, _ = _forward(spec, plain)
    if not fired:
        raise CheckFailure(f"{where} the vision tower ({spec.vision_module}) did not run on the dummy image")
    diff = (logits_dummy[0][real] - logits_plain[0]).abs()
    if float(diff.max()) > TOLERANCE:
        bad = (diff.amax(-1) > TOLERANCE).nonzero().flatten().tolist()
        raise CheckFailure(
            "\n".join(
                [
                    f"{where} real-token logits differ from the same row without the dummy image: max |Δ| = "
                    f"{float(diff.max()):.3e} > {TOLERANCE:g} at {len(bad)} of {int(real.sum())} real positions",
                    *_position_note(batch.get("position_ids"), real),
                    *decode_runs(tok, ids[real].tolist(), bad)[:8],
                ]
            )
        )


def _position_note(positions: Any, real: torch.Tensor) -> list[str]:
    """Where the framework's own ``position_ids`` for a text-only row are not ``0..n-1`` on the real tokens."""
    if not isinstance(positions, torch.Tensor):
        return []
    rows = positions[:, 0, real] if positions.dim() == 3 else positions[0:1, real]  # M-RoPE [k, B, L] or [B, L]
    expected = torch.arange(int(real.sum()), dtype=torch.float64)
    off = (rows.to(torch.float64) != expected).any(0).nonzero().flatten().tolist()
    if not off:
        return []
    at = off[:4]
    return [
        f"cause: the framework's position_ids ({str(positions.dtype).removeprefix('torch.')}) are not 0..n-1 on "
        f"the real tokens at {len(off)} positions, e.g. position {at} holds {rows[0, at].tolist()}"
    ]


NEIGHBOURS = {"video": "video_short_clip", "audio": "audio_question"}
"""Per medium a family declares beyond images, the real sample batched after the fake-image sample."""


def media_neighbour(spec: FamilySpec, medium: str) -> str | None:
    """The corpus case batched next to the fake image for ``medium``: :data:`NEIGHBOURS`' unless the row runs
    only some cases (a collate option: then the first of them holding the medium), None where none can."""
    if medium not in spec.media:
        return None
    if spec.runs_case(NEIGHBOURS[medium]):
        return NEIGHBOURS[medium]
    corpus = {c.id: c for c in load_corpus()}
    return next(
        (i for i in spec.only_fixtures if medium in corpus[i].media and corpus[i].media <= set(spec.media)), None
    )


def check_media_neighbours(spec: FamilySpec, case: Case, fake_conv: list) -> None:
    """Batched after the fake-image sample, a real video (audio) sample keeps its own attention mask and
    labels: the fake-image mask must never touch a real video's or audio's tokens (SPEC.md, "Video and
    audio"). Compared with that sample collated alone, on its own positions of the padded batch."""
    corpus = {c.id: c for c in load_corpus()}
    processor = load_processor(spec.model_id)
    collate = collate_for(spec)
    where = header(spec, case.id, "fake_image")
    for medium in NEIGHBOURS:
        neighbour_id = media_neighbour(spec, medium)
        if neighbour_id is None:
            continue
        neighbour = corpus[neighbour_id]
        mixed = collate(
            examples=[{"conversation": fake_conv, "_injected_fake": True}, {"conversation": neighbour.conversation}],
            processor=processor,
        )
        solo = collate_case(spec, neighbour).batch  # the neighbour alone, collated once per process
        ids, own = mixed["input_ids"][1].tolist(), solo["input_ids"][0].tolist()
        at = next((k for k in range(len(ids) - len(own) + 1) if ids[k : k + len(own)] == own), None)
        if at is None:
            raise CheckFailure(f"{where} the real {medium} sample {neighbour_id}'s ids change when batched after it")
        span = slice(at, at + len(own))
        masked = [p for p, m in enumerate(mixed["attention_mask"][1][span].tolist()) if m == 0]
        if masked or not torch.equal(mixed["labels"][1][span], solo["labels"][0]):
            lost = [p for p, m in enumerate(solo["attention_mask"][0].tolist()) if m != 0 and p in masked]
            raise CheckFailure(
                "\n".join(
                    [
                        f"{where} batched after the fake-image sample, the real {medium} sample {neighbour_id} "
                        f"changes: {len(lost)} of its attended tokens masked"
                        + ("" if torch.equal(mixed["labels"][1][span], solo["labels"][0]) else ", labels differ"),
                        *decode_runs(processor.tokenizer, own, lost),
                    ]
                )
            )


def check_media_helpers(spec: FamilySpec, case: Case, fake_conv: list) -> None:
    """The documented media predicates agree with the corpus: the text-only conversation has no media,
    the injected one has, and a batch has media iff one of its conversations has."""
    where = header(spec, case.id, "fake_image")
    has_media = impl.get("fake_image", "_conversation_has_media")
    batch_has_media = impl.get("fake_image", "_batch_has_media")
    plain = case.conversation
    answers = {
        "_conversation_has_media(text-only conversation)": (has_media(conversation=plain), False),
        "_conversation_has_media(with the fake image)": (has_media(conversation=fake_conv), True),
        "_batch_has_media([text-only, text-only])": (batch_has_media(conversations=[plain, plain]), False),
        "_batch_has_media([text-only, with the fake image])": (batch_has_media(conversations=[plain, fake_conv]), True),
    }
    wrong = [f"{call} returned {got!r}, expected {want!r}" for call, (got, want) in answers.items() if got != want]
    if wrong:
        raise CheckFailure("\n".join([f"{where} the documented media predicates disagree with the corpus:", *wrong]))


def check_direct_masking(spec: FamilySpec, case: Case, fake_conv: list) -> None:
    """``mask_fake_vision_tokens_batch`` on the processor's own ids masks only the selected row, and
    ``mask_fake_vision_tokens_single`` masks a 1-D sample the same way: ``attention_mask`` 0 at every
    declared vision token and unchanged elsewhere, ``input_ids`` unchanged. The page documents only the
    attention mask and no return value, so the result is the returned dict or, when None, the argument
    (masked in place); labels are not judged here (the collate's are, in :func:`check_fake_masking`)."""
    from .checks import processor_ids

    where = header(spec, case.id, "fake_image")
    processor = load_processor(spec.model_id)
    mask_batch = impl.get("fake_image", "mask_fake_vision_tokens_batch")
    mask_single = impl.get("fake_image", "mask_fake_vision_tokens_single")
    ids = torch.tensor(processor_ids(processor, fake_conv)[0])  # the processor's own ids, unmasked
    vision = torch.isin(ids, torch.tensor(vision_token_ids(spec, processor)))
    expected = (~vision).long()
    batch = {"input_ids": torch.stack([ids, ids]), "attention_mask": torch.ones(2, len(ids), dtype=torch.long)}
    returned = mask_batch(batch=batch, processor=processor, sample_indices=[1])
    out = batch if returned is None else returned
    sample = {"input_ids": ids.clone(), "attention_mask": torch.ones_like(ids)}
    returned = mask_single(sample_dict=sample, processor=processor)
    single = sample if returned is None else returned
    problems = []
    if not torch.equal(out["input_ids"], torch.stack([ids, ids])) or not torch.equal(single["input_ids"], ids):
        problems.append("input_ids changed")
    if not torch.equal(out["attention_mask"][0], torch.ones_like(ids)):
        problems.append("mask_fake_vision_tokens_batch masked row 0, which sample_indices=[1] does not select")
    for name, mask in (
        ("mask_fake_vision_tokens_batch, row 1", out["attention_mask"][1]),
        ("mask_fake_vision_tokens_single", single["attention_mask"]),
    ):
        off = (mask != expected).nonzero().flatten().tolist()
        if off:
            problems.append(f"{name}: attention_mask is not 'declared vision tokens 0, the rest 1' at {runs(off)}:")
            problems += decode_runs(processor.tokenizer, ids.tolist(), off)[:4]
    if problems:
        raise CheckFailure("\n".join([f"{where} masking the fake image's vision tokens directly:", *problems]))


def _compare_real_logits(spec, case, fake, row, plain, check, plain_row=0) -> None:
    """The fake row's real tokens and their logits equal the plain row's; otherwise every cause found.

    The diagnosis does not stop at the first cause: changed real tokens, shifted positions (the plain
    sample run at the positions its tokens get behind the masked image) and state carried through the
    masked tokens (the fake sample run with positions derived from attention_mask) are each measured.
    """
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
    causes = []
    tokens_differ = not torch.equal(ids_fake, ids_plain)
    if tokens_differ:
        causes.append(
            "the real tokens of the fake-image sample differ from the plain sample's tokens:\n"
            f"  fake : {ids_fake.tolist()}\n  plain: {ids_plain.tolist()}"
        )
    if spec.model_class is None:  # no tiny model for this family (stand-in processor): tokens only
        if causes:
            raise CheckFailure(f"{where} {causes[0]}")
        return
    logits_fake, fired = _forward(spec, fake)
    logits_plain, _ = _forward(spec, plain)
    if not fired:
        raise CheckFailure(f"{where} the vision tower ({spec.vision_module}) did not run on the fake image")
    if not tokens_differ:
        diff = (logits_fake[row][real] - logits_plain[plain_row][plain_real]).abs()
        worst = float(diff.max())
        if worst <= TOLERANCE:
            return
        bad = (diff.amax(-1) > TOLERANCE).nonzero().flatten().tolist()
        tok = load_processor(spec.model_id).tokenizer
        ids = ids_plain.tolist()
        causes.append(
            "\n".join(
                [
                    f"the fake image changes real-token logits: max |Δ| = {worst:.3e} > {TOLERANCE:g} at {len(bad)} of "
                    f"{len(ids)} real positions; the mask does not make the image invisible",
                    "affected tokens (positions among the real tokens):",
                    *decode_runs(tok, ids, bad)[:8],
                ]
            )
        )
    done = _DIAGNOSES.setdefault((spec.label, check), [])
    if len(done) < DIAGNOSED_CASES:
        found = _diagnose(spec, fake, row, plain, plain_row, real, plain_real, logits_plain, tokens_differ)
        done.append((case.id, [c.split(":", 1)[0] for c in found]))
        causes += found
    else:
        seen = sorted({name for _, names in done for name in names})
        causes.append(
            f"further causes measured on {', '.join(cid for cid, _ in done)} (not re-measured here): "
            + (", ".join(seen) if seen else "none")
        )
    if len(causes) == 1:
        raise CheckFailure(f"{where} {causes[0]}")
    raise CheckFailure(
        "\n".join(
            [
                f"{where} the fake image is not invisible; {len(causes)} causes:",
                *(f"{k}. {c}" for k, c in enumerate(causes, 1)),
            ]
        )
    )


def _takes_1d_positions(spec: FamilySpec) -> bool:
    import inspect

    from .pp.spec import uses_mrope

    if uses_mrope(spec):
        return False  # 3-D M-RoPE positions come from the image grid, not from a 1-D index
    model = load_tiny_model(spec.model_id, spec.model_class)
    return "position_ids" in inspect.signature(model.forward).parameters


def _diagnose(spec, fake, row, plain, plain_row, real, plain_real, logits_plain, tokens_differ) -> list[str]:
    """Causes beyond the first: shifted positions, and state carried through masked tokens."""
    if not _takes_1d_positions(spec):
        return []
    out = []
    at_fake = real.nonzero().flatten()  # where the real tokens sit in the fake row
    width = plain["input_ids"].shape[1]
    shifted = torch.arange(width)
    shifted[plain_real.nonzero().flatten()] = at_fake
    if int(plain["attention_mask"][plain_row].sum()) > len(at_fake):  # the plain row's tail continues from there
        tail = torch.arange(int(plain_real.nonzero().max()) + 1, width)
        shifted[tail] = at_fake.max() + 1 + torch.arange(len(tail))
    if not torch.equal(at_fake, torch.arange(len(at_fake))):
        moved, _ = _forward(spec, plain, shifted.expand(plain["input_ids"].shape[0], -1).clone())
        effect = float((moved[plain_row][plain_real] - logits_plain[plain_row][plain_real]).abs().max())
        if effect > TOLERANCE:
            offset = int(at_fake[-1]) - (len(at_fake) - 1)
            out.append(
                f"shifted positions: the real tokens sit up to {offset} positions later behind the masked image, "
                f"and the model's positions follow the sequence index, not attention_mask (the shift alone "
                f"changes the plain sample's logits by max |Δ| = {effect:.3e})"
            )
    if not tokens_differ:
        mask = fake["attention_mask"]
        from_mask = (mask.long().cumsum(-1) - 1).clamp(min=0)
        logits, _ = _forward(spec, fake, from_mask)
        residual = float((logits[row][real] - logits_plain[plain_row][plain_real]).abs().max())
        if residual > TOLERANCE:
            out.append(
                "state carried through the masked tokens: with positions derived from attention_mask the real-"
                f"token logits still differ by max |Δ| = {residual:.3e} (a recurrent or convolution state, or "
                "another path that ignores attention_mask)"
            )
    return out


def check_fake_image_mixed_batch(spec: FamilySpec, text_case: Case, image_case: Case) -> None:
    """A fake-image sample batched with a real-image sample: each row's real-token logits equal the
    row collated alone (the fake image must not disturb its neighbour either)."""
    inject_fake_image_into_conversation = impl.get("fake_image", "inject_fake_image_into_conversation")
    processor = load_processor(spec.model_id)
    collate = collate_for(spec)
    fake_conv = inject_fake_image_into_conversation(conversation=text_case.conversation)
    mixed = collate(
        examples=[{"conversation": fake_conv, "_injected_fake": True}, {"conversation": image_case.conversation}],
        processor=processor,
    )
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
        raise CheckFailure(
            f"{where} the real-image neighbour's logits change when batched with a fake-image sample: "
            f"max |Δ| = {float(diff.max()):.3e} > {TOLERANCE:g}"
        )
