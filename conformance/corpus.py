"""The fixture corpus: conversations stored as JSON under ``fixtures/conversations/``.

Images are described by ``{"width", "height", "seed", "mode"}`` and generated deterministically, so
the corpus is small, reviewable text. Videos (``{"frames", "width", "height", "seed", "fps"}``) and audio
(``{"seconds", "sample_rate", "seed"}``) are generated the same way and written to real ``.mp4``/``.wav``
files (:mod:`conformance.media`): the documented path hands them to the processor as paths, so its own
loaders run. A case runs on a family only when the family's record declares every medium it holds.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .media import audio_file, video_file

CONVERSATIONS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "conversations"


@dataclass(frozen=True)
class Case:
    id: str
    description: str
    raw: tuple  # JSON conversation, images still as descriptors (kept immutable via tuple of json strings)

    @property
    def conversation(self) -> list[dict[str, Any]]:
        """A fresh conversation with generated PIL images (new objects every call)."""
        return [_materialize_message(json.loads(m)) for m in self.raw]

    @property
    def has_media(self) -> bool:
        """Whether the case holds an image or a video (what makes a fake image unnecessary)."""
        return bool(self.media & {"image", "video"})

    @property
    def clips(self) -> int:
        """Audio items in the conversation."""
        return len(_items(self.raw, "audio"))

    @property
    def sound_tracks(self) -> int:
        """Videos whose file carries an audio track (a ``"sound"`` descriptor): what ``use_audio_in_video`` reads."""
        return sum(isinstance(v.get("video"), dict) and "sound" in v["video"] for v in _items(self.raw, "video"))

    @property
    def media(self) -> frozenset[str]:
        """The media kinds in the conversation: a subset of {"image", "video", "audio"}."""
        return frozenset(kind for kind in MEDIA if any(f'"type": "{kind}"' in m for m in self.raw))


MEDIA = ("image", "video", "audio")


def _items(raw: tuple, kind: str) -> list[dict]:
    """The ``kind`` items of a raw conversation (descriptors, not media), in order."""
    messages = (json.loads(m)["content"] for m in raw)
    return [item for content in messages if isinstance(content, list) for item in content if item.get("type") == kind]


def generate_image(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    """Deterministic noise image: the same descriptor always yields the same pixels."""
    gen = torch.Generator().manual_seed(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    data = torch.randint(0, 256, (height, width, channels), generator=gen, dtype=torch.uint8).numpy()
    return Image.fromarray(data[..., 0] if channels == 1 else data, mode)


def _materialize_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    if isinstance(content, list):
        for item in content:
            kind = item.get("type")
            if kind == "image" and isinstance(item.get("image"), dict):
                item["image"] = generate_image(**item["image"])
            elif kind == "video" and isinstance(item.get("video"), dict):
                item["video"] = video_file(**item["video"])
            elif kind == "audio" and isinstance(item.get("audio"), dict):
                item["audio"] = audio_file(**item["audio"])
    return message


@lru_cache(maxsize=1)
def load_corpus() -> tuple[Case, ...]:
    cases = []
    for path in sorted(CONVERSATIONS_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        raw = tuple(json.dumps(m, ensure_ascii=False) for m in data["conversation"])
        cases.append(Case(data["id"], data.get("description", ""), raw))
    return tuple(cases)


def copy_conversation(conversation):
    return copy.deepcopy(conversation)
