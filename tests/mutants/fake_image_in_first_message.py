"""The fake image goes into the first message (often the system prompt), not the first user message.

Bug: ``inject_fake_image_into_conversation`` takes ``conversation[0]`` regardless of role. The
vision tokens land inside the system turn. Runner: conformance (Qwen2.5-VL). Killed by: golden (the
golden records where the fake image lands).
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"golden"}
SELECT = "single_turn_text or multi_turn_text"


def _first_message(conversation):
    new = [dict(m) for m in conversation]
    roles = [m.get("role") for m in new]
    if roles and roles[0] != "user":
        renamed = dict(new[0], role="user")
        injected = _original([renamed] + new[1:])
        injected[0]["role"] = roles[0]
        return injected
    return _original(conversation)


_original = replace("vlmspec.fake_image:inject_fake_image_into_conversation", _first_message)
