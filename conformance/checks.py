"""The checks themselves, independent of pytest plumbing. Each returns data or raises ``CheckFailure``
with a message that names the model, fixture class, fixture and check and shows a readable diff."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

import torch

from . import impl
from .corpus import Case
from .loading import collate_for, fixture_class, load_processor
from .oracle import oracle_supervised_positions, renderer
from .registry import FamilySpec

IGNORE = -100


class CheckFailure(AssertionError):
    pass


def header(spec: FamilySpec, case_id: str, check: str) -> str:
    via = f" | collate {spec.variant}" if spec.variant else ""
    return f"[{spec.model_id} | {fixture_class(spec)}{via} | fixture {case_id} | check {check}]"


def runs(positions: list[int]) -> list[tuple[int, int]]:
    """Group sorted positions into inclusive runs: [3,4,5,9] -> [(3,5),(9,9)]."""
    out: list[tuple[int, int]] = []
    for p in sorted(positions):
        if out and p == out[-1][1] + 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out


_REPEATED_TOKEN = re.compile(r"(<[^<>\s]{1,40}>)\1{3,}")


def compact(text: str) -> str:
    """Decoded text with a run of 4+ identical ``<...>`` tokens written once with its count
    (``'<|video_pad|>×560'``): a diff over media placeholders stays readable."""
    return _REPEATED_TOKEN.sub(lambda m: f"{m.group(1)}×{len(m.group(0)) // len(m.group(1))}", text)


def decode(tokenizer: Any, ids: list[int]) -> str:
    """``repr`` of the decoded ids, placeholder runs compacted (:func:`compact`)."""
    return compact(repr(tokenizer.decode(ids)))


def decode_runs(tokenizer: Any, ids: list[int], positions: list[int]) -> list[str]:
    return [f"  positions {a}-{b}: {decode(tokenizer, ids[a : b + 1])}" for a, b in runs(positions)]


@dataclass(frozen=True)
class Collated:
    """One fixture through the family collate, plus the processor's unshifted ids for reference."""

    batch: dict[str, torch.Tensor]
    full_ids: list[int]  # processor input_ids of the row (unshifted, unpadded), [L]
    rendered: str

    @property
    def supervised(self) -> list[int]:
        """Positions in ``full_ids`` the collate supervises (labels are shifted: labels[t] -> t+1)."""
        labels = self.batch["labels"][0]
        return [t + 1 for t in (labels != IGNORE).nonzero().flatten().tolist()]


def _images_in(conversation: list) -> list:
    return _media_in(conversation, "image")


def _media_in(conversation: list, kind: str) -> list:
    """The ``kind`` items' values (``image``, ``video``, ``audio``) in conversation order."""
    return [
        item[kind]
        for m in conversation
        if isinstance(m["content"], list)
        for item in m["content"]
        if item.get("type") == kind
    ]


def _waveform(processor: Any, audio: Any) -> Any:
    """An audio item as the 1-D float array processors take, read from its file at the processor's rate."""
    if not isinstance(audio, str):
        return audio
    import soundfile

    data, rate = soundfile.read(audio, dtype="float32", always_2d=True)
    wanted = getattr(getattr(processor, "feature_extractor", None), "sampling_rate", rate)
    if rate != wanted:
        raise ValueError(f"{audio}: recorded at {rate} Hz, the processor's feature extractor takes {wanted} Hz")
    return data.mean(axis=1)


def render_transform(spec: FamilySpec):
    """The documented rewrite of the rendered prompt by the family's collate, from its record.

    ``"text_injection": {"after": "<|turn>model\\n", "insert": "<|channel>thought\\n<channel|>"}``
    means: the collate inserts ``insert`` after every ``after`` (Gemma 4's thinking channel).
    """
    injection = spec.injection()
    if not injection:
        return None
    after, insert = injection["after"], injection["insert"]
    return lambda text: text.replace(after, after + insert)


def _audio_from_video_indices(conversation: list) -> list[int | None]:
    """Per audio slot in conversation order: None for a standalone clip, ``i`` for the track of video ``i``
    (transformers' omni processors' ``audio_from_video_indices``)."""
    slots, video = [], 0
    for m in conversation:
        for item in m["content"] if isinstance(m["content"], list) else ():
            if item.get("type") == "audio":
                slots.append(None)
            elif item.get("type") == "video":
                slots.append(video)
                video += 1
    return slots


def processor_ids(
    processor: Any, conversation: list, transform=None, processor_kwargs: dict[str, Any] | None = None
) -> tuple[list[int], str]:
    """The processor's ids of one conversation (unshifted, unpadded) and its rendered prompt.

    processor_kwargs: what a collate option asks the processor for (``load_audio_from_video``: the
    processor reads each video's own audio track itself and interleaves it with the frames).
    """
    rendered = renderer(processor).apply_chat_template(conversation, tokenize=False)
    if transform is not None:
        rendered = transform(rendered)
    images, videos, audio = (_media_in(conversation, kind) for kind in ("image", "video", "audio"))
    kwargs: dict[str, Any] = {"images": [im.convert("RGB") for im in images]} if images else {}
    if videos:  # paths: the processor's own video loader decodes and samples them
        kwargs["videos"] = videos
    if audio:
        kwargs["audio"] = [_waveform(processor, a) for a in audio]
    kwargs.update(processor_kwargs or {})
    if kwargs.get("load_audio_from_video") and videos and audio:
        # standalone clips next to videos: the processor must know which slot is which
        kwargs["audio_from_video_indices"] = _audio_from_video_indices(conversation)
    # the template renders BOS itself; the tokenizer must not add a second one
    out = processor(text=[rendered], return_tensors="pt", add_special_tokens=False, **kwargs)
    return out["input_ids"][0].tolist(), rendered


_COLLATED: dict[tuple[str, str], Collated] = {}


def collate_case(spec: FamilySpec, case: Case) -> Collated:
    key = (spec.label, case.id)
    if key not in _COLLATED:
        _COLLATED[key] = _collate_case(spec, case)
    return _COLLATED[key]


def _collate_case(spec: FamilySpec, case: Case) -> Collated:
    processor = load_processor(spec.model_id)
    collate = collate_for(spec)
    # documented parameters by keyword: every collate page names them ``examples`` and ``processor``
    batch = collate(examples=[{"conversation": case.conversation}], processor=processor)
    full_ids, rendered = reference_ids(spec, case)
    return Collated(batch, full_ids, rendered)


_REFERENCE: dict[tuple[str, str], tuple[list[int], str]] = {}


def reference_ids(spec: FamilySpec, case: Case) -> tuple[list[int], str]:
    """The processor's unshifted ids of one fixture (and the rendered prompt), without the collate.

    The harness's own reference: the chat template rendered as text (plus the record's documented
    injection for this collate), then the processor. Checks that judge the label builders
    (``label_consistency``) start from these ids, so a collate that cannot process the fixture
    fails only the checks that run the collate.
    """
    key = (spec.label, case.id)
    if key not in _REFERENCE:
        _REFERENCE[key] = processor_ids(
            load_processor(spec.model_id), case.conversation, render_transform(spec), dict(spec.processor_kwargs)
        )
    return _REFERENCE[key]


def collate_row_ids(c: Collated) -> list[int]:
    """The collate's own unshifted row: ``input_ids`` (padding dropped) plus the token its last label
    predicts, when that label is supervised (the documented contract drops the last position)."""
    ids = c.batch["input_ids"][0]
    mask = c.batch.get("attention_mask")
    labels = c.batch["labels"][0].tolist()
    row = ids.tolist()
    if mask is not None and not bool(mask[0].all()) and c.batch["input_ids"].shape[0] > 1:
        row = [t for t, m in zip(row, mask[0].tolist()) if m]  # padding only exists next to other samples
    return row + ([labels[len(row) - 1]] if row and labels[len(row) - 1] != IGNORE else [])


def id_diff(tokenizer: Any, reference: list[int], got: list[int], limit: int = 8) -> tuple[dict[int, int], list[str]]:
    """Align the collate's row ``got`` to the template's ``reference`` ids (difflib, token level).

    Returns ``{collate position: reference position}`` for the tokens they share, and one decoded line
    per differing span: ``positions a-b: 'template text' -> 'collate text'``.
    """
    matcher = difflib.SequenceMatcher(a=reference, b=got, autojunk=False)
    where: dict[int, int] = {}
    lines = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            where.update({j1 + k: i1 + k for k in range(i2 - i1)})
            continue
        lines.append(
            f"  template positions {i1}-{i2 - 1} / collate {j1}-{j2 - 1}: "
            f"{decode(tokenizer, reference[i1:i2])} -> {decode(tokenizer, got[j1:j2])}"
        )
    if len(lines) > limit:
        lines = lines[:limit] + [f"  … {len(lines) - limit} more differing span(s)"]
    return where, lines


def check_shift_contract(spec: FamilySpec, case: Case, c: Collated) -> None:
    """input_ids == full[:-1]; every supervised label equals the next input token."""
    where = header(spec, case.id, "labels")
    ids = c.batch["input_ids"][0].tolist()
    if ids != c.full_ids[:-1]:
        _, lines = id_diff(load_processor(spec.model_id).tokenizer, c.full_ids[:-1], ids)
        raise CheckFailure(
            "\n".join(
                [
                    f"{where} collate input_ids are not the processor's ids minus the last position "
                    f"(len {len(ids)} vs {len(c.full_ids) - 1}); decoded differences:",
                    *lines,
                ]
            )
        )
    labels = c.batch["labels"][0].tolist()
    bad = [t for t, v in enumerate(labels) if v != IGNORE and v != c.full_ids[t + 1]]
    if bad:
        raise CheckFailure(f"{where} labels are not shifted by one: labels[t] != input_ids[t+1] at {runs(bad)}")


def check_labels_vs_oracle(spec: FamilySpec, case: Case) -> None:
    c = collate_case(spec, case)
    processor = load_processor(spec.model_id)
    tok = processor.tokenizer
    lines: list[str] = []
    row = collate_row_ids(c)
    if row == c.full_ids or c.batch["input_ids"][0].tolist() == c.full_ids[:-1]:
        check_shift_contract(spec, case, c)
        got, foreign = c.supervised, []
    else:
        # A collate that renders its own template (a training framework's): judge its labels on the
        # tokens it shares with the model's chat template, and show where the two differ.
        # the contract drops the last position: without a supervised last label the row ends one token
        # early, and so does the reference it is compared with
        reference = c.full_ids if len(row) > c.batch["input_ids"].shape[1] else c.full_ids[:-1]
        aligned, diff = id_diff(tok, reference, row)
        lines += ["input_ids differ from the model's chat template (the oracle's reference); decoded:", *diff]
        labels = c.batch["labels"][0].tolist()
        bad = [t for t, v in enumerate(labels) if v != IGNORE and t + 1 < len(row) and v != row[t + 1]]
        if bad:
            lines.append(f"labels are not shifted by one: labels[t] != input_ids[t+1] at {runs(bad)}")
        mine = [t + 1 for t, v in enumerate(labels) if v != IGNORE]
        got = sorted(aligned[p] for p in mine if p in aligned)
        foreign = [p for p in mine if p not in aligned]
    turns = oracle_supervised_positions(processor, case.conversation, c.full_ids, render_transform(spec))
    expected = sorted({p for t in turns for p in t.tokens if p > 0})
    extra = sorted(set(got) - set(expected))
    missing = sorted(set(expected) - set(got))
    if extra or missing or foreign or lines:
        verdict = "differ from" if extra or missing or foreign else "agree with"
        lines = [f"{header(spec, case.id, 'labels')} supervised tokens {verdict} the oracle", *lines]
        if extra:
            lines += ["supervised but not an answer/closing token:", *decode_runs(tok, c.full_ids, extra)]
        if missing:
            lines += ["answer/closing tokens left unsupervised:", *decode_runs(tok, c.full_ids, missing)]
        if foreign:
            lines += ["supervised tokens the chat template does not have:", *decode_runs(tok, row, foreign)]
        lines.append(f"rendered prompt: {c.rendered!r}")
        raise CheckFailure("\n".join(lines))
    n_assistant = sum(m["role"] == "assistant" for m in case.conversation)
    if n_assistant and not got:
        raise CheckFailure(
            f"{header(spec, case.id, 'labels')} sample has {n_assistant} assistant turn(s) "
            "but zero supervised tokens (nan loss)"
        )


def legacy_vs_template(spec: FamilySpec, case: Case) -> dict[str, list[int]]:
    """Compare legacy ``build_labels`` with ``build_labels_from_template`` on the unshifted ids.

    Returns ``{"mislabeled": positions legacy supervises that the template does not,
    "missed": template positions legacy leaves out}``.
    """
    build_labels = impl.get("collate_fns", "build_labels")
    build_labels_from_template = impl.get("collate_fns", "build_labels_from_template")
    processor = load_processor(spec.model_id)
    # the processor's ids, not the collate's: this check judges the two label builders only
    ids = torch.tensor([reference_ids(spec, case)[0]])
    legacy = build_labels(input_ids_batch=ids, conversations=[case.conversation], processor=processor)[0]
    template = build_labels_from_template(input_ids_batch=ids, conversations=[case.conversation], processor=processor)[
        0
    ]
    lpos = set((legacy != IGNORE).nonzero().flatten().tolist())
    tpos = set((template != IGNORE).nonzero().flatten().tolist())
    return {"mislabeled": sorted(lpos - tpos), "missed": sorted(tpos - lpos)}


UNDOCUMENTED_KEYS = ("n_audios_per_sample", "num_frames_per_video")
"""Bookkeeping the reference collates add beyond the data contract (which names only the image and video
counts): a golden that recorded it would hold every other implementation to vlmspec's extension. (vlmspec
adds ``num_frames_per_video`` where the processor says nothing of its stacked frames: Nemotron omni.)"""


def golden_record(spec: FamilySpec, case: Case) -> dict[str, Any]:
    """Readable snapshot of one fixture: rendered prompt, tokens, supervised spans, masks, media."""
    c = collate_case(spec, case)
    tok = load_processor(spec.model_id).tokenizer
    pieces = tok.convert_ids_to_tokens(c.full_ids)
    mask = c.batch["attention_mask"][0].tolist()
    record: dict[str, Any] = {
        "model": spec.model_id,
        "fixture": case.id,
        "fixture_class": fixture_class(spec),
        "rendered": c.rendered,
        "tokens": [f"{i} {p}" for i, p in zip(c.full_ids, pieces)],
        "supervised": [
            {"tokens": f"{a}-{b}", "text": tok.decode(c.full_ids[a : b + 1])} for a, b in runs(c.supervised)
        ],
        "attention_masked": [f"{a}-{b}" for a, b in runs([i for i, m in enumerate(mask) if m == 0])],
        "tensors": {
            k: "x".join(map(str, v.shape)) + f" {str(v.dtype).removeprefix('torch.')}"
            for k, v in sorted(c.batch.items())
            if k not in UNDOCUMENTED_KEYS
        },
    }
    for key in ("image_grid_thw", "n_images_per_sample", "n_videos_per_sample", "video_grid_thw"):
        if key in c.batch:
            record[key] = json.dumps(c.batch[key].tolist())
    if not case.has_media and "fake_image" in spec.checks:
        record["fake_image"] = _fake_image_record(spec, case)
    return record


def _fake_image_record(spec: FamilySpec, case: Case) -> dict[str, Any]:
    """Where the injected fake image lands and what the collate masks."""
    inject_fake_image_into_conversation = impl.get("fake_image", "inject_fake_image_into_conversation")
    processor = load_processor(spec.model_id)
    fake_conv = inject_fake_image_into_conversation(conversation=case.conversation)
    batch = collate_for(spec)(examples=[{"conversation": fake_conv, "_injected_fake": True}], processor=processor)
    ids = batch["input_ids"][0].tolist()
    masked = [i for i, m in enumerate(batch["attention_mask"][0].tolist()) if m == 0]
    return {
        "attention_masked": [f"{a}-{b}" for a, b in runs(masked)],
        "masked_text": [processor.tokenizer.decode(ids[a : b + 1]) for a, b in runs(masked)],
        "n_supervised": int((batch["labels"][0] != IGNORE).sum()),
    }
