"""``n_images_per_sample`` counts messages that carry images, not images.

Bug: a sample with two images in one user turn reports 1, so PP media chunking assigns the second
image to the wrong microbatch. Runner: conformance (Qwen2.5-VL). Killed by: golden
(``n_images_per_sample`` is part of the golden).
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"golden"}
SELECT = "image"


def _per_message(conversations):
    _, n_videos = _original(conversations)
    n_images = []
    for conversation in conversations:
        n_images.append(
            sum(
                1
                for m in conversation
                if isinstance(m.get("content"), list)
                and any(isinstance(i, dict) and i.get("type") == "image" for i in m["content"])
            )
        )
    return n_images, n_videos


_original = replace("vlmspec.collate.media:_count_media_per_sample", _per_message)
