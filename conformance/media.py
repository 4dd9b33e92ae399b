"""Deterministic video and audio fixtures, written to real files so the processors' own loaders run.

A corpus descriptor names the medium, never its bytes:

- video ``{"frames", "width", "height", "fps", "seed"}``: ``frames`` noise frames (the same generator as
  the corpus images, one seed per frame), encoded as MPEG-4 Part 2 in an ``.mp4`` by PyAV. With
  ``"sound": {"sample_rate", "seed"}`` the file also carries a mono AAC track of :func:`waveform` as long
  as the video (``frames / fps`` seconds): what ``use_audio_in_video`` reads;
- audio ``{"seconds", "sample_rate", "seed"}``: a mono waveform (two seeded sine tones plus seeded noise,
  peak 0.5), written as 16-bit PCM ``.wav`` by soundfile.

Files are cached under ``$VLMSPEC_MEDIA_DIR`` (default: ``<tmp>/vlmspec-media``), named by a hash of the
descriptor and the encoder's version, and written atomically (a temporary name, then ``os.replace``),
so pytest-xdist workers that materialize the same fixture never read a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def media_dir() -> Path:
    path = Path(os.environ.get("VLMSPEC_MEDIA_DIR") or Path(tempfile.gettempdir()) / "vlmspec-media")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached(kind: str, descriptor: dict[str, Any], suffix: str, version: str, write) -> str:
    key = json.dumps({"kind": kind, "version": version, **descriptor}, sort_keys=True)
    path = media_dir() / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}{suffix}"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=suffix)
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return str(path)


def video_frames(frames: int, width: int, height: int, seed: int) -> np.ndarray:
    """``[frames, height, width, 3]`` uint8 noise; frame ``i`` is seeded with ``seed * 1000 + i``."""
    if frames < 1 or width < 2 or height < 2:
        raise ValueError(f"video descriptor needs frames >= 1 and a size >= 2x2, got {frames}x{width}x{height}")
    out = []
    for i in range(frames):
        gen = torch.Generator().manual_seed(seed * 1000 + i)
        out.append(torch.randint(0, 256, (height, width, 3), generator=gen, dtype=torch.uint8).numpy())
    return np.stack(out)


def video_file(frames: int, width: int, height: int, seed: int, fps: int = 2, sound: dict | None = None) -> str:
    """Path of an ``.mp4`` holding :func:`video_frames` at ``fps`` frames per second.

    sound: ``{"sample_rate", "seed"}`` adds a mono AAC audio track holding :func:`waveform` for the
    video's duration (``frames / fps`` s); without it the file is silent (one stream, video).
    """
    import av

    if sound is not None and set(sound) != {"sample_rate", "seed"}:
        raise ValueError(f"video 'sound' descriptor takes exactly 'sample_rate' and 'seed', got {sorted(sound)}")

    def write(path: str) -> None:
        pixels = video_frames(frames, width, height, seed)
        with av.open(path, mode="w", format="mp4") as container:
            stream = container.add_stream("mpeg4", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"qscale": "2"}  # near-lossless: the decoded frames stay close to the noise
            track = None
            if sound is not None:
                track = container.add_stream("aac", rate=sound["sample_rate"])
                track.layout = "mono"
            for frame in pixels:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
            if track is not None:
                _mux_sound(container, track, waveform(frames / fps, sound["sample_rate"], sound["seed"]))

    descriptor = {"frames": frames, "width": width, "height": height, "seed": seed, "fps": fps}
    if sound is not None:  # keeps the silent files' cache names as they were
        descriptor["sound"] = dict(sound)
    return _cached("video", descriptor, ".mp4", f"av-{av.__version__}", write)


def _mux_sound(container: Any, track: Any, samples: np.ndarray, frame_size: int = 1024) -> None:
    """Encode mono float32 *samples* into the AAC *track*, ``frame_size`` samples per frame (AAC's)."""
    import av

    for start in range(0, samples.size, frame_size):
        frame = av.AudioFrame.from_ndarray(samples[None, start : start + frame_size], format="flt", layout="mono")
        frame.sample_rate, frame.pts = track.rate, start
        container.mux(track.encode(frame))
    container.mux(track.encode())


def waveform(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """``[round(seconds * sample_rate)]`` float32 in [-0.5, 0.5]: two seeded tones plus seeded noise."""
    n = round(seconds * sample_rate)
    if n < 1 or sample_rate < 1:
        raise ValueError(f"audio descriptor needs seconds > 0 and sample_rate >= 1, got {seconds} s at {sample_rate}")
    gen = torch.Generator().manual_seed(seed)
    low, high = (110 + 440 * torch.rand(2, generator=gen)).tolist()
    t = np.arange(n, dtype=np.float64) / sample_rate
    noise = torch.rand(n, generator=gen, dtype=torch.float64).numpy() - 0.5
    wave = 0.45 * np.sin(2 * np.pi * low * t) + 0.35 * np.sin(2 * np.pi * high * t) + 0.2 * noise
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def audio_file(seconds: float, seed: int, sample_rate: int = 16000) -> str:
    """Path of a mono 16-bit ``.wav`` holding :func:`waveform`."""
    import soundfile

    def write(path: str) -> None:
        soundfile.write(path, waveform(seconds, sample_rate, seed), sample_rate, subtype="PCM_16", format="WAV")

    descriptor = {"seconds": seconds, "sample_rate": sample_rate, "seed": seed}
    return _cached("audio", descriptor, ".wav", f"soundfile-{soundfile.__version__}", write)


FFMPEG_HINT = (
    "install FFmpeg's shared libraries (Debian/Ubuntu: apt-get install libavcodec59 libavformat59 libavutil57 "
    "libswscale6 libswresample4 libavdevice59 libavfilter8, or conda install ffmpeg): torchcodec loads them"
)


def decoding_problem(kind: str) -> str | None:
    """Why the processors' own loaders cannot read a ``kind`` fixture here ("video"), else None.

    Transformers decodes a video path with torchcodec, which needs FFmpeg's shared libraries. Without
    them no video case can say anything about the implementation: it is an environment problem.
    """
    if kind != "video":
        return None
    try:
        from transformers.utils.import_utils import is_torchcodec_usable
    except ImportError:  # an older transformers decodes with PyAV, which carries its own FFmpeg
        return None if _importable("av") else "environment: video fixtures need PyAV (pip install av)"
    if not _importable("torchcodec"):
        return "environment: video fixtures need torchcodec (pip install -e '.[test]' pins it)"
    if not is_torchcodec_usable(decode="video"):
        return f"environment: torchcodec cannot load FFmpeg, so no processor can read a video file: {FFMPEG_HINT}"
    return None


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
