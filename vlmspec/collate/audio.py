"""Audio items of conversations: validation, decoding and resampling to the feature extractor's rate.

An audio item is ``{"type": "audio", "audio": X}`` where X is a file path, a 1-D (or [C, T] / [T, C])
array or tensor at the feature extractor's rate, a ``(array, sampling_rate)`` pair, or a Hugging Face
datasets dict ``{"array": ..., "sampling_rate": ...}`` (optionally with ``"path"``).
"""

from __future__ import annotations

import os
import wave
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

DEFAULT_SAMPLING_RATE = 16000


def _fail(sample: int, where: str, why: str) -> ValueError:
    return ValueError(f"sample {sample}: field {where!r}: {why}")


def audio_sampling_rate(processor: Any) -> int:
    """The rate the processor's audio feature extractor expects (16 kHz when it does not say)."""
    for name in ("feature_extractor", "audio_processor"):
        fe = getattr(processor, name, None)
        rate = getattr(fe, "sampling_rate", None)
        if isinstance(rate, int) and rate > 0:
            return rate
    rate = getattr(processor, "audio_sampling_rate", None)
    return rate if isinstance(rate, int) and rate > 0 else DEFAULT_SAMPLING_RATE


def _read_wav(path: str) -> tuple[np.ndarray, int]:
    with wave.open(path, "rb") as f:
        rate, width, channels, n = f.getframerate(), f.getsampwidth(), f.getnchannels(), f.getnframes()
        raw = f.readframes(n)
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        data = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise ValueError(f"unsupported WAV sample width {width}")
    return data.reshape(-1, channels).mean(axis=1), rate


def _read_audio_file(path: str) -> tuple[np.ndarray, int]:
    try:
        import soundfile  # optional: decodes FLAC/OGG/... besides WAV

        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return data.mean(axis=1), int(rate)
    except ImportError:
        pass
    try:
        return _read_wav(path)
    except wave.Error as exc:
        raise ValueError(f"cannot decode {path} as WAV ({exc}); install soundfile to read other formats") from exc


def _to_mono(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().float().numpy()
    data = np.asarray(array, dtype=np.float32)
    if data.ndim == 2:  # channels on the short axis
        data = data.mean(axis=0 if data.shape[0] <= data.shape[1] else 1)
    if data.ndim != 1:
        raise ValueError(f"audio must be 1-D or [channels, samples], got shape {data.shape}")
    return data


def resample(data: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear-interpolation resampling (adequate for speech features; no extra dependency)."""
    if rate == target or data.size == 0:
        return data
    n = max(1, int(round(data.size * target / rate)))
    return np.interp(np.arange(n) * (rate / target), np.arange(data.size), data).astype(np.float32)


def load_audio_item(value: Any, sample: int, where: str, target_rate: int) -> np.ndarray:
    """Decode one audio value to mono float32 at *target_rate*; errors name the sample and field."""
    rate = target_rate
    try:
        if isinstance(value, (str, os.PathLike)):
            path = os.fspath(value)
            if "://" in path and not path.startswith("file://"):
                raise _fail(sample, where, f"remote audio is not fetched by the collate: {path}")
            path = path[len("file://") :] if path.startswith("file://") else path
            if not os.path.exists(path):
                raise _fail(sample, where, f"audio path does not exist: {path}")
            data, rate = _read_audio_file(path)
        elif isinstance(value, dict):
            if value.get("array") is not None:
                data, rate = _to_mono(value["array"]), int(value.get("sampling_rate") or target_rate)
            elif value.get("path") is not None:
                return load_audio_item(value["path"], sample, where, target_rate)
            else:
                raise _fail(sample, where, "audio dict has neither 'array' nor 'path'")
        elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], (int, float)):
            data, rate = _to_mono(value[0]), int(value[1])
        elif isinstance(value, (np.ndarray, torch.Tensor, list)):
            data = _to_mono(value)
        elif value is None:
            raise _fail(sample, where, "audio item has no 'audio' value")
        else:
            raise _fail(sample, where, f"unsupported audio value of type {type(value).__name__}")
    except ValueError as exc:
        if str(exc).startswith(f"sample {sample}:"):
            raise
        raise _fail(sample, where, str(exc)) from exc
    if data.size == 0:
        raise _fail(sample, where, "audio clip is empty (0 samples)")
    return resample(data, rate, target_rate)


def _audio_items(conversation: Sequence[dict]) -> list[tuple[str, dict]]:
    found = []
    for m, message in enumerate(conversation):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for k, item in enumerate(content):
            if isinstance(item, dict) and (
                item.get("type") in ("audio", "audio_url") or ("audio" in item and item.get("type") is None)
            ):
                found.append((f"conversation[{m}].content[{k}].audio", item))
    return found


def count_audio_per_sample(conversations: Sequence[Sequence[dict]]) -> list[int]:
    """Number of audio items in each conversation (``len(conversations)`` entries)."""
    return [len(_audio_items(conversation)) for conversation in conversations]


def extract_audio(conversations: Sequence[Sequence[dict]], target_rate: int) -> list[list[np.ndarray]]:
    """Per sample, its audio clips in conversation order (mono float32 at *target_rate*)."""
    out = []
    for s, conversation in enumerate(conversations):
        clips = []
        for where, item in _audio_items(conversation):
            clips.append(load_audio_item(item.get("audio", item.get("audio_url")), s, where, target_rate))
        out.append(clips)
    return out


def audio_kwargs_per_sample(processor: Any):
    """A ``prepare`` hook for :func:`~vlmspec.collate.batching.chat_template_collate`: ``audio=[clips]`` per sample."""
    rate = audio_sampling_rate(processor)

    def prepare(conversations):
        return [{"audio": clips} if clips else {} for clips in extract_audio(conversations, rate)]

    return prepare
