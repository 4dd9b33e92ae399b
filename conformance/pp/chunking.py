"""Check ``pp_chunking``: media chunk k holds exactly the media of ``torch.tensor_split`` text microbatch k.

For every (B, n) of ``GRID``, over the family's chunking fixtures and over ``IMAGE_FIXTURES`` (plus
``VIDEO_FIXTURES`` / ``AUDIO_FIXTURES`` where the record declares that medium), the batch goes through the
implementation's ``prepare_vlm_media_for_pp``; its chunks must concatenate back to the batch's media, hold
as many images as the microbatch's samples own, and yield exactly the microbatch's placeholder tokens by
the record's own arithmetic. Audio clips are attributed by the conversations themselves: chunk k holds
exactly the feature rows (and per-clip metadata rows) of the clips its samples' conversations contain. Where the
batch has an image grid, ``chunk_vlm_media`` must agree; once per family, ``wrap_vlm_collate_for_pp``
must give the same chunks as collating and preparing by hand.
"""

from __future__ import annotations

import itertools

import torch

from ..checks import CheckFailure
from ..corpus import load_corpus
from ..loading import load_processor
from ..registry import FamilySpec
from .batches import collated, describe_error, fallback_note, media_chunks, prepare, present_media, wrapped_collate
from .spec import (
    AUDIO_CLIP_KEYS,
    AUDIO_FIXTURES,
    AUDIO_KEYS,
    COUNT_KEYS,
    GRID,
    IMAGE_FIXTURES,
    VIDEO_FIXTURES,
    fixture_ids,
    image_token_id,
    pp_api,
    pp_record,
    raise_all,
    shape,
    tokens_per_image,
    where,
    whole_tokens,
)

_GRID_KEYS = ("image_grid_thw", "image_grid_hws", "image_grid_hw", "image_sizes", "image_position_ids")
WRAP_CASE = (3, 2)
"""(B, n) on which ``wrap_vlm_collate_for_pp`` is compared with collate + ``prepare_vlm_media_for_pp``."""


def check_chunking(spec: FamilySpec) -> None:
    """Every (B, n) of ``GRID``; one failure lists every broken microbatch.

    Each batch is judged on its own: a batch that cannot be built here (a missing video decoder) does not
    hide what the other batches show; with no problem elsewhere, its error is the cell's (the plugin
    classifies it: environment problem or crash)."""
    problems, unjudged = [], []
    for fixtures in chunking_batches(spec):
        try:
            problems += [p for batch_size, n in GRID for p in chunking_problems(spec, batch_size, n, fixtures)]
        except Exception as exc:
            unjudged.append((fixtures, exc))
    try:
        problems += wrap_problems(spec, *WRAP_CASE)
    except Exception as exc:
        unjudged.append((("wrap_vlm_collate_for_pp",), exc))
    if not problems and unjudged:
        raise unjudged[0][1]
    notes = [f"note: batch {'+'.join(f or ('pp.fixtures',))} not judged: {describe_error(e)}" for f, e in unjudged]
    raise_all(fallback_note(spec) + notes + problems if problems else [], "PP media chunking failure(s)")


def chunking_batches(spec: FamilySpec) -> list[tuple[str, ...] | None]:
    """The fixture lists the grid runs over (None: the record's ``pp.fixtures``); a collate option's row
    runs its own ``fixtures``, cycled to each batch size."""
    if spec.only_fixtures:
        return [tuple(itertools.islice(itertools.cycle(spec.only_fixtures), max(b for b, _ in GRID)))]
    batches: list[tuple[str, ...] | None] = [None, IMAGE_FIXTURES]
    video = (spec.extra.get("pp") or {}).get("video_fixtures")
    if "video" in spec.media and video != []:  # [] in a record: no video batch (its notes say why)
        batches.append(tuple(video or VIDEO_FIXTURES))
    if "audio" in spec.media:
        batches.append(audio_fixtures(spec))
    return batches


def audio_fixtures(spec: FamilySpec) -> tuple[str, ...]:
    """The audio chunking batch: the record's ``pp.audio_fixtures``, else ``AUDIO_FIXTURES`` with its video
    swapped for two images where the family runs no video batch."""
    pp = spec.extra.get("pp") or {}
    if pp.get("audio_fixtures"):
        return tuple(pp["audio_fixtures"])
    with_video = "video" in spec.media and pp.get("video_fixtures") != []
    return tuple(f if with_video or not f.startswith("video_") else "two_images_one_turn" for f in AUDIO_FIXTURES)


def chunking_problems(spec: FamilySpec, batch_size: int, n: int, fixtures: tuple[str, ...] | None = None) -> list[str]:
    """Media chunks reassemble the batch's media exactly and chunk k feeds exactly text microbatch k.

    The batch is the first ``batch_size`` of ``fixtures`` (default: the family's chunking fixtures)."""
    ids = fixture_ids(spec, batch_size) if fixtures is None else fixtures[:batch_size]
    batch = collated(spec, ids)
    at = lambda k=None: where(spec, "pp_chunking", ids, batch_size, n, k)  # noqa: E731
    try:
        out = prepare(batch, batch_size, n)
    except CheckFailure as exc:
        return [f"{at()} {exc}"]
    except Exception as exc:  # a crash inside the implementation is this cell's evidence, not the grid's end
        return [f"{at()} prepare_vlm_media_for_pp raised {describe_error(exc)}"]
    present = present_media(batch)
    image_id = image_token_id(spec)
    text_mbs = torch.tensor_split(batch["input_ids"], n, dim=0)
    if not present:
        tokens = [int((mb == image_id).sum()) for mb in text_mbs]
        return [f"{at()} a batch without media has image tokens {tokens}"] if any(tokens) else []
    try:
        chunks, _ = media_chunks(out, batch, n)
    except CheckFailure as exc:
        return [f"{at()} {exc}"]
    problems = []
    left = [k for k in present if out.get(k) is not None]
    if left:
        problems.append(f"{at()} raw media {left} still in the PP batch; torch PP would cut them by row")
    problems += [
        f"{at()} text tensor {key} changed"
        for key in batch
        if key not in present and (key not in out or not torch.equal(out[key], batch[key]))
    ]
    # whatever stays in the batch is cut by torch PP on dim 0, so it must be per sample
    problems += [
        f"{at()} {key} ({shape(value)}) stays in the PP batch with {value.shape[0]} rows for {batch_size} samples; "
        f"torch PP would cut it by row"
        for key, value in out.items()
        if key in batch
        and key not in present
        and isinstance(value, torch.Tensor)
        and value.ndim
        and value.shape[0] != batch_size
    ]
    for key in present:
        parts = [c.get(key) for c in chunks]
        if key in COUNT_KEYS and all(p is None for p in parts):
            continue  # bookkeeping only: stage 0 needs the media, not the per-sample counts
        if any(p is None for p in parts):
            problems.append(f"{at()} {key} missing from media chunks {[k for k, p in enumerate(parts) if p is None]}")
            continue
        joined = torch.cat(parts)
        if joined.dtype != batch[key].dtype or not torch.equal(joined, batch[key]):
            problems.append(
                f"{at()} concatenating the {key} chunks {[shape(p) for p in parts]} does not "
                f"reproduce the batch's {key} ({shape(batch[key])})"
            )
    problems += _video_problems(spec, batch, chunks, text_mbs, n, at)
    problems += _audio_problems(spec, ids, batch, chunks, n, at)
    # what each sample owns of the video rows, once per batch: both video checks read it
    video_rows = _rows_alone(spec, ids, "pixel_values_videos") if batch.get("pixel_values_videos") is not None else []
    problems += _video_row_problems(video_rows, batch, chunks, n, at)
    counts = torch.tensor_split(batch["n_images_per_sample"], n) if "n_images_per_sample" in batch else None
    rule = pp_record(spec)["tokens_per_image"]
    in_videos = _video_image_tokens(spec, video_rows, batch) if video_rows else [0] * batch_size
    samples = torch.tensor_split(torch.arange(batch_size), n)
    documented = _documented_chunks(batch, batch_size, n)
    for k, (chunk, text) in enumerate(zip(chunks, text_mbs)):
        got = int((text == image_id).sum()) - sum(in_videos[int(s)] for s in samples[k])
        try:
            per_image = tokens_per_image(spec, chunk)
        except KeyError as exc:
            problems.append(f"{at(k)} media chunk {k} lacks {exc} that the record's rule {rule} reads")
            continue
        if got != sum(per_image):
            key = "pixel_values" if "pixel_values" in chunk else "image_pixel_values"
            pixels = shape(chunk[key]) if key in chunk else "no pixel_values"
            problems.append(
                f"{at(k)} text microbatch {k} has {got} {pp_record(spec)['image_token']} tokens but its "
                f"media chunk ({pixels}, {len(per_image)} images) yields {sum(per_image)} = "
                f"{'+'.join(map(str, per_image)) or '0'} ({rule})"
            )
        if counts is not None and int(counts[k].sum()) != len(per_image):
            problems.append(
                f"{at(k)} the samples of text microbatch {k} own {int(counts[k].sum())} images "
                f"(n_images_per_sample {counts[k].tolist()}) but media chunk {k} holds {len(per_image)}"
            )
        if documented is not None:
            pixels, grid, grid_key = documented[0][k], documented[1][k], documented[2]
            if "pixel_values" not in chunk or grid_key not in chunk:
                continue  # reported above as missing
            if not torch.equal(pixels, chunk["pixel_values"]) or not torch.equal(grid, chunk[grid_key]):
                problems.append(
                    f"{at(k)} chunk_vlm_media and prepare_vlm_media_for_pp disagree on chunk {k}: "
                    f"{shape(pixels)} / {grid.tolist()} vs {shape(chunk['pixel_values'])} / {chunk[grid_key].tolist()}"
                )
    return problems


def _video_problems(spec: FamilySpec, batch, chunks, text_mbs, n: int, at) -> list[str]:
    """Media chunk k holds exactly the videos of text microbatch k: its ``video_grid_thw`` rows yield the
    microbatch's video placeholder tokens (``t*h*w / merge²`` each, the processor's own merge size) and
    as many videos as ``n_videos_per_sample`` gives its samples."""
    if batch.get("video_grid_thw") is None:
        return []
    processor = load_processor(spec.model_id)
    token, merge = getattr(processor, "video_token", None), getattr(processor.video_processor, "merge_size", None)
    if token is None or merge is None:
        return [f"{at()} the processor names no video_token / video_processor.merge_size to count video tokens by"]
    video_id = processor.tokenizer.convert_tokens_to_ids(token)
    counts = torch.tensor_split(batch["n_videos_per_sample"], n) if "n_videos_per_sample" in batch else None
    problems = []
    for k, (chunk, text) in enumerate(zip(chunks, text_mbs)):
        grid = chunk.get("video_grid_thw")
        per_video = [] if grid is None else [int(p) // merge**2 for p in grid.prod(-1).tolist()]
        got = int((text == video_id).sum())
        if got != sum(per_video):
            problems.append(
                f"{at(k)} text microbatch {k} has {got} {token} tokens but media chunk {k}'s video_grid_thw "
                f"{[] if grid is None else grid.tolist()} yields {sum(per_video)} (t*h*w / {merge}²)"
            )
        if counts is not None and int(counts[k].sum()) != len(per_video):
            problems.append(
                f"{at(k)} the samples of text microbatch {k} own {int(counts[k].sum())} videos "
                f"(n_videos_per_sample {counts[k].tolist()}) but media chunk {k} holds {len(per_video)}"
            )
    return problems


def _clips(spec: FamilySpec, case) -> int:
    """Audio clips the case's sample owns: its audio items, plus each sounding video's own track where the
    row's collate option reads them (``use_audio_in_video``: the track is one more clip of the sample)."""
    return case.clips + (case.sound_tracks if dict(spec.collate_kwargs).get("use_audio_in_video") else 0)


def _audio_problems(spec: FamilySpec, ids: tuple[str, ...], batch, chunks, n: int, at) -> list[str]:
    """Media chunk k holds exactly the audio rows of the clips in text microbatch k's conversations.

    The owner of each row comes from the corpus (clips per conversation, in sample order), not from the
    implementation's ``n_audios_per_sample``: a wrong count there would route the clips it describes.
    """
    key = next((k for k in AUDIO_KEYS if batch.get(k) is not None), None)
    if key is None:
        return []
    corpus = {c.id: c for c in load_corpus()}
    clips = [_clips(spec, corpus[i]) for i in ids]
    if sum(clips) != batch[key].shape[0]:
        return [
            f"{at()} the batch's {key} has {batch[key].shape[0]} rows for the {sum(clips)} audio clips {clips} "
            f"of its samples"
        ]
    return _owned_rows_problems((key, *AUDIO_CLIP_KEYS), clips, "audio rows", "clips", batch, chunks, n, at)


def _rows_alone(spec: FamilySpec, ids: tuple[str, ...], key: str) -> list[int]:
    """Rows of ``key`` each sample has when the collate gets it alone (no doubt about the owner there),
    built like the batch itself (:func:`collated`: the implementation's collate, else the reference's)."""
    alone = [collated(spec, (i,)).get(key) for i in ids]
    return [0 if a is None else int(a.shape[0]) for a in alone]


def _video_image_tokens(spec: FamilySpec, video_rows: list[int], batch) -> list[int]:
    """Per sample, the image-token placeholders its video holds, by the record's ``pp.video_tubelets``
    (Nemotron omni writes each tubelet of ``frames`` stacked frames as an image chunk:
    ``ceil(frames_of_the_video / frames) * (H / patch) * (W / patch) / merge²`` tokens); zeros without it.
    ``video_rows``: each sample's ``pixel_values_videos`` rows (:func:`_rows_alone`)."""
    rule = (spec.extra.get("pp") or {}).get("video_tubelets")
    if rule is None:
        return [0] * len(video_rows)
    h, w = (int(d) for d in batch["pixel_values_videos"].shape[-2:])
    per_tubelet = whole_tokens((h // rule["patch"]) * (w // rule["patch"]), rule["merge"] ** 2, "patches / merge²")
    return [-(-rows // rule["frames"]) * per_tubelet for rows in video_rows]


def _video_row_problems(rows: list[int], batch, chunks, n: int, at) -> list[str]:
    """Media chunk k holds exactly the ``pixel_values_videos`` rows (patches or frames) of text microbatch
    k's samples. What a sample owns is what the collate gives that sample alone: a one-sample batch leaves
    no doubt about the owner, whatever bookkeeping (grids, frame counts) the layout has or lacks."""
    key = "pixel_values_videos"
    if batch.get(key) is None:
        return []
    if sum(rows) != batch[key].shape[0]:
        return [
            f"{at()} the batch's {key} has {batch[key].shape[0]} rows, but its samples collated alone have "
            f"{rows} ({sum(rows)})"
        ]
    return _owned_rows_problems((key,), rows, f"{key} rows", "rows", batch, chunks, n, at)


def _owned_rows_problems(keys, owned: list[int], what: str, unit: str, batch, chunks, n: int, at) -> list[str]:
    """Chunk k's ``keys`` equal the batch rows its text microbatch's samples own (``owned[s]`` rows each)."""
    starts = [0]
    for c in owned:
        starts.append(starts[-1] + c)
    problems = []
    for k, (chunk, samples) in enumerate(zip(chunks, torch.tensor_split(torch.arange(len(owned)), n))):
        s0, s1 = (int(samples[0]), int(samples[-1]) + 1) if len(samples) else (0, 0)
        r0, r1 = starts[s0], starts[s1]
        for name in keys:
            want, got = batch.get(name), chunk.get(name)
            if want is None or got is None:
                continue  # a key missing from a chunk is reported with the concatenation check
            if not torch.equal(got, want[r0:r1]):
                problems.append(
                    f"{at(k)} media chunk {k} holds {name} {shape(got)} but the samples of text microbatch {k} "
                    f"own {f'{what} {r0}:{r1}' if r1 > r0 else f'no {what}'} of the batch's {shape(want)} "
                    f"({unit} per sample {owned[s0:s1]})"
                )
    return problems


def _documented_chunks(batch: dict[str, torch.Tensor], batch_size: int, n: int):
    """``(pixel chunks, grid chunks, grid key)`` from the documented ``chunk_vlm_media``, or None when the
    batch has no ``pixel_values`` with an image grid (the page's ``image_grid`` is not optional)."""
    key = next((k for k in _GRID_KEYS if batch.get(k) is not None), None)
    if batch.get("pixel_values") is None or key is None:
        return None
    pixels, grids = pp_api("chunk_vlm_media")(
        pixel_values=batch["pixel_values"],
        image_grid=batch[key],
        batch_size=batch_size,
        n_microbatches=n,
        n_images_per_sample=batch.get("n_images_per_sample"),
    )
    return list(pixels), list(grids), key


def wrap_problems(spec: FamilySpec, batch_size: int, n: int) -> list[str]:
    """``wrap_vlm_collate_for_pp(collate, n)(examples)`` gives the chunks of collate + prepare."""
    first = chunking_batches(spec)[0]
    ids = fixture_ids(spec, batch_size) if first is None else first[:batch_size]
    batch = collated(spec, ids)
    if not present_media(batch):
        return []
    at = where(spec, "pp_chunking", ids, batch_size, n) + " wrap_vlm_collate_for_pp:"
    try:
        wrapped, _ = media_chunks(wrapped_collate(spec, ids, n), batch, n)
        direct, _ = media_chunks(prepare(batch, batch_size, n), batch, n)
    except CheckFailure as exc:
        return [f"{at} {exc}"]
    except Exception as exc:
        return [f"{at} raised {describe_error(exc)}"]
    problems = []
    for k, (w, d) in enumerate(zip(wrapped, direct)):
        if sorted(w) != sorted(d):
            problems.append(f"{at} chunk {k} keys {sorted(w)} vs {sorted(d)} from collate + prepare_vlm_media_for_pp")
            continue
        differ = [key for key in d if not torch.equal(w[key], d[key])]
        if differ:
            problems.append(f"{at} chunk {k} differs from collate + prepare_vlm_media_for_pp in {differ}")
    return problems
