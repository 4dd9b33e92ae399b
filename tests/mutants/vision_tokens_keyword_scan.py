"""Vision-token discovery knows only a short list of token strings and keywords (nemo-automodel 0.7.0).

Bug: ``_get_vision_token_ids`` scans id attributes, 15 curated strings and added tokens containing
``image/video/media/vision/img_pad/vid_pad``; Step-3.7's ``<im_start>``/``<im_end>``/``<patch_start>``/
``<patch_end>`` (and ``<img>``/``</img>``, ``<IMG_CONTEXT>`` elsewhere) match none of them and stay
attended in a fake-image sample. Found in nemo-automodel 0.7.0
(docs/findings.md#vision-token-discovery-misses-declared-tokens). Runner: conformance
(stepfun-ai/Step-3.7-Flash). Killed by: vision_tokens.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "stepfun-ai/Step-3.7-Flash"
EXPECT = {"vision_tokens"}
SELECT = "vision_tokens"

# nemo-automodel 0.7.0's lists (fake_image._VISION_TOKEN_STRINGS / _VISION_TOKEN_KEYWORDS)
_STRINGS = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|media_start|>",
    "<|media_content|>",
    "<|media_end|>",
    "<|media_pad|>",
    "<image>",
    "<video>",
    "<|image|>",
    "<|video|>",
    "[IMG]",
    "[IMG_END]",
    "[IMG_BREAK]",
)
_KEYWORDS = ("image", "video", "media", "vision", "img_pad", "vid_pad")


def _keyword_scan(processor):
    import vlmspec.fake_image as fi

    ids = set()
    for source in (processor, getattr(processor, "config", None)):
        ids.update(fi._scan_attrs(source, fi._VISION_TOKEN_ID_ATTRS))
    tokenizer = getattr(processor, "tokenizer", processor)
    unk = getattr(tokenizer, "unk_token_id", None)
    for token in _STRINGS:
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != unk:
            ids.add(tid)
    for tid, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if any(kw in getattr(tok, "content", str(tok)).lower() for kw in _KEYWORDS):
            ids.add(int(tid))
    return ids


replace("vlmspec.fake_image:_get_vision_token_ids", _keyword_scan)
