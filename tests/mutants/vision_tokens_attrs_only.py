"""Vision-token discovery only scans ``*_token_id`` attributes, not the known token strings.

Bug: sources 2 and 3 of ``_get_vision_token_ids`` (token strings, added-token keyword scan) are
dropped; Qwen's processor exposes ``image_token_id`` but not ``<|vision_start|>``/``<|vision_end|>``,
which stay attended in a fake-image sample. Runner: conformance (Qwen2.5-VL). Killed by:
vision_tokens, fake_image.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"vision_tokens", "fake_image"}
SELECT = "vision_tokens or single_turn_text"


def _attrs_only(processor):
    import vlmspec.fake_image as fi

    tokenizer = getattr(processor, "tokenizer", processor)
    ids = set()
    for source in (processor, tokenizer, getattr(processor, "config", None)):
        ids.update(fi._scan_attrs(source, fi._VISION_TOKEN_ID_ATTRS))
    return ids


replace("vlmspec.fake_image:_get_vision_token_ids", _attrs_only)
