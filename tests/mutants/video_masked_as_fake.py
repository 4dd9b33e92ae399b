"""A real video's tokens are masked as a fake image's.

Bug: the collate decides which samples carry an injected fake image by looking for images (a sample
without an image "must" have had one injected) instead of reading the ``_injected_fake`` flag, so a
video-only sample batched after a fake-image sample gets every vision token, its video's included,
masked out (attention_mask 0): the model never sees the video it is trained to describe. The users'
report behind it: fake/dummy media mixed with video batches. Runner: conformance (Qwen2.5-VL, which
declares video). Killed by: fake_image (the real video neighbour of the fake-image sample changes).
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"fake_image"}
SELECT = "fake_image and single_turn_text"


def _image_less_is_fake(examples):
    conversations, fake = _original(examples)
    no_image = [
        i
        for i, conversation in enumerate(conversations)
        if not any(
            isinstance(m.get("content"), list) and any(item.get("type") == "image" for item in m["content"])
            for m in conversation
        )
    ]
    return conversations, sorted(set(fake) | set(no_image) if fake else fake)


_original = replace("vlmspec.collate.default:prepare_conversations", _image_less_is_fake)
