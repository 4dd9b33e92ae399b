"""Vision-token discovery finds nothing, so fake-image masking silently does nothing.

Bug: ``_get_vision_token_ids`` reads a renamed attribute and returns an empty set; the collate only
logs a warning. Runner: conformance (Qwen2.5-VL). Killed by: vision_tokens, fake_image.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"vision_tokens", "fake_image"}
SELECT = "vision_tokens or single_turn_text"

replace("vlmspec.fake_image:_get_vision_token_ids", lambda processor: set())
