"""Qwen3-Omni and LLaVA-OneVision-1.5 collates, with the optional ``qwen-vl-utils`` / ``qwen-omni-utils``.

Both utilities are optional (``pip install qwen-vl-utils qwen-omni-utils``). Without them every
collate here still works. Qwen3-Omni's ``use_audio_in_video=True`` reads each video's audio track with
qwen-omni-utils when it is installed (the reference reader), else with torchcodec (what transformers
reads video files with); with neither it raises ``ImportError`` saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .audio import audio_sampling_rate, count_audio_per_sample, extract_audio
from .default import collate_tokenized, prepare_conversations, tokenize_conversations
from .media import _is_image, _is_video, _iter_items

try:
    from qwen_vl_utils import process_vision_info

    HAVE_QWEN_VL_UTILS = True
except ImportError:  # optional: images then go to the processor as given
    process_vision_info = None
    HAVE_QWEN_VL_UTILS = False

try:
    from qwen_omni_utils import process_audio_info

    HAVE_QWEN_OMNI_UTILS = True
except ImportError:  # optional: one of the two readers of audio tracks out of video files
    process_audio_info = None
    HAVE_QWEN_OMNI_UTILS = False


def _have_torchcodec() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchcodec") is not None


def _video_items(conversation: Sequence[dict]) -> list[dict]:
    return [item for item in _iter_items(conversation) if _is_video(item)]


def _tracks_by_qwen_omni_utils(videos: list[dict], sample: int) -> list:
    try:
        tracks = process_audio_info(
            [[{"role": "user", "content": [dict(v, type="video") for v in videos]}]], use_audio_in_video=True
        )
    except Exception as exc:  # decoder errors, silent videos (the package asserts an audio track)
        raise ValueError(
            f"sample {sample}: qwen-omni-utils could not read the audio track of its "
            f"{len(videos)} video(s): {type(exc).__name__}: {exc}"
        ) from exc
    if tracks is None or len(tracks) != len(videos):
        raise ValueError(
            f"sample {sample}: qwen-omni-utils returned {0 if tracks is None else len(tracks)} audio "
            f"tracks for {len(videos)} videos"
        )
    return list(tracks)


def _track_by_torchcodec(video: dict, sample: int, index: int, rate: int) -> np.ndarray:
    """One video file's audio track as mono float32 at *rate* (torchcodec decodes and resamples)."""
    from torchcodec.decoders import AudioDecoder

    value = video.get("video", video.get("video_url", video.get("path")))
    where = f"sample {sample}: video {index}"
    if not isinstance(value, str):
        raise ValueError(
            f"{where}: use_audio_in_video=True reads the video file's own audio track, but this video is given "
            f"as {type(value).__name__} (frames have no track): pass the file's path"
        )
    path = value[len("file://") :] if value.startswith("file://") else value
    try:
        track = AudioDecoder(path, sample_rate=rate, num_channels=1).get_all_samples().data
    except Exception as exc:  # no audio stream, unreadable file, missing FFmpeg
        raise ValueError(
            f"{where} ({path}): could not read its audio track, which use_audio_in_video=True needs: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if track.numel() == 0:
        raise ValueError(f"{where} ({path}): its audio track is empty")
    return track.reshape(-1).float().numpy()


def _audio_in_video_inputs(conversations: list, rate: int) -> tuple[list, list]:
    """Audio clips in conversation order with ``audio_from_video_indices`` (None = standalone clip).

    Standalone clips are decoded by :mod:`vlmspec.collate.audio`. Each video's own audio track is read
    by qwen-omni-utils' ``process_audio_info`` when installed (16 kHz, Qwen-Omni's rate), else by
    torchcodec at the feature extractor's rate. A video without a track is an error, as in qwen-omni-utils.
    """
    standalone = extract_audio(conversations, rate)
    audio, sources, video_index = [], [], 0
    for s, conversation in enumerate(conversations):
        clips = iter(standalone[s])
        videos = _video_items(conversation)
        if not videos:
            tracks = []
        elif HAVE_QWEN_OMNI_UTILS:
            tracks = _tracks_by_qwen_omni_utils(videos, s)
        else:
            tracks = [_track_by_torchcodec(v, s, i, rate) for i, v in enumerate(videos)]
        tracks = iter(tracks)
        for item in _iter_items(conversation):
            if item.get("type") in ("audio", "audio_url") or ("audio" in item and item.get("type") is None):
                audio.append(next(clips))
                sources.append(None)
            elif _is_video(item):
                audio.append(next(tracks))
                sources.append(video_index)
                video_index += 1
    return audio, sources


def _clips_with_tracks(conversations: list) -> list[int]:
    """Audio clips per sample under ``use_audio_in_video``: its audio items plus one track per video."""
    return [a + len(_video_items(c)) for a, c in zip(count_audio_per_sample(conversations), conversations)]


def qwen3_omni_collate_fn(
    examples: Sequence[dict[str, Any]],
    processor: Any,
    use_audio_in_video: bool = False,
) -> dict[str, torch.Tensor]:
    """Collate for Qwen3-Omni processors (image, video and audio items).

    Audio items are decoded to 16 kHz mono and passed as ``audio``; the processor expands
    ``<|audio_pad|>`` / ``<|image_pad|>`` / ``<|video_pad|>``. use_audio_in_video: interleave each
    video's own audio track with its frames (read by qwen-omni-utils, else torchcodec; ``ImportError``
    with neither; ``ValueError`` naming the sample for a video without a track). Each track is one more
    clip of its sample in ``input_features`` and ``n_audios_per_sample``.

    Returns ``input_ids, attention_mask, labels: [B, L-1]`` (labels -100 = ignore, already shifted),
    ``pixel_values`` / ``pixel_values_videos`` (bf16), grids, ``input_features`` /
    ``feature_attention_mask`` when there is audio, and ``n_images_per_sample`` / ``n_audios_per_sample`` /
    ``n_videos_per_sample: [B]`` when present.
    """
    conversations, fake = prepare_conversations(examples)
    has_video = any(_video_items(c) for c in conversations)
    kwargs: dict[str, Any] = {"padding_side": "right"}
    n_audios = None
    if use_audio_in_video and has_video:
        if not (HAVE_QWEN_OMNI_UTILS or _have_torchcodec()):
            raise ImportError(
                "qwen3_omni_collate_fn(use_audio_in_video=True) reads each video's audio track with qwen-omni-utils "
                "or torchcodec, and neither is installed: pip install qwen-omni-utils (or torchcodec)"
            )
        audio, sources = _audio_in_video_inputs(conversations, audio_sampling_rate(processor))
        n_audios = _clips_with_tracks(conversations)
        kwargs.update(audio=audio, audio_from_video_indices=sources)
        if hasattr(processor, "load_audio_from_video"):  # transformers >= 5.23 omni processors
            kwargs["load_audio_from_video"] = True
        else:
            kwargs["use_audio_in_video"] = True
    else:
        clips = [c for sample in extract_audio(conversations, audio_sampling_rate(processor)) for c in sample]
        if clips:
            kwargs["audio"] = clips
    batch = tokenize_conversations(conversations, processor, **kwargs)
    return collate_tokenized(batch, conversations, processor, fake, n_audios=n_audios)


def _apply_vision_info(conversations: list) -> None:
    """Replace media items (on the collate's copies) by qwen-vl-utils' fetched, smart-resized versions."""
    out = process_vision_info(conversations)
    images, videos = list(out[0] or []), list(out[1] or [])
    for conversation in conversations:
        for item in _iter_items(conversation):
            if _is_image(item) and images:
                item["image"] = images.pop(0)
            elif _is_video(item) and videos:
                item["video"] = videos.pop(0)


def llava_onevision_collate_fn(
    examples: Sequence[dict[str, Any]],
    processor: Any,
) -> dict[str, torch.Tensor]:
    """Collate for LLaVA-OneVision-1.5 processors (Qwen-style template, image and video items).

    With qwen-vl-utils installed its ``process_vision_info`` fetches and smart-resizes the media
    (the reference preprocessing); without it the processor receives them as given. Output contract
    as :func:`default_collate_fn`: ``labels: [B, L-1]`` (-100 = ignore, already shifted), pixels in
    bf16, ``n_images_per_sample`` / ``n_videos_per_sample: [B]`` when present.
    """
    conversations, fake = prepare_conversations(examples)
    if HAVE_QWEN_VL_UTILS and any(_is_image(i) or _is_video(i) for c in conversations for i in _iter_items(c)):
        _apply_vision_info(conversations)
    batch = tokenize_conversations(conversations, processor)
    return collate_tokenized(batch, conversations, processor, fake)
