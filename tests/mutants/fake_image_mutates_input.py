"""Fake-image injection writes into the caller's conversation instead of a deep copy.

Bug: the image item is prepended to the caller's own message dict, so a dataset that caches its
samples grows one more fake image every epoch. Runner: tests/test_fake_image.py (conformance builds
a fresh conversation per call and cannot see it). Killed by:
test_inject_goes_to_first_user_message_on_a_copy.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
RUNNER = "tests/test_fake_image.py"
EXPECT = {"test_inject_goes_to_first_user_message_on_a_copy"}
SELECT = "inject"


def _in_place(conversation):
    new = _original(conversation)
    for i, message in enumerate(new):
        if i < len(conversation) and isinstance(conversation[i], dict) and message != conversation[i]:
            conversation[i].clear()
            conversation[i].update(message)
            new[i] = conversation[i]
    return new


_original = replace("vlmspec.fake_image:inject_fake_image_into_conversation", _in_place)
