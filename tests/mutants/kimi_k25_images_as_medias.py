"""Kimi-K2.5's collate hands images to the processor as ``medias=`` (nemo-automodel 0.7.0).

Bug: ``medias`` is the keyword of Moonshot's remote-code processor; transformers' ``Kimi_K25Processor``
(what ``AutoProcessor`` loads) takes ``images=`` and ignores the unknown keyword, so every sample with
an image fails: ``ValueError: Found 1 <|media_pad|> tokens in the text but no images were passed``.
Found in nemo-automodel 0.7.0 (docs/findings.md#kimi-k25-collate-passes-images-as-medias). Runner:
conformance (moonshotai/Kimi-K2.5). Killed by: labels, golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "moonshotai/Kimi-K2.5"
EXPECT = {"labels", "golden"}
SELECT = "single_turn_image"


def _as_medias(processor, images):
    text = getattr(processor, "image_token", "<|media_pad|>") * len(images)
    processor(text=text, medias=[{"type": "image", "image": image} for image in images], return_tensors="pt")
    return _original(processor, images)


_original = replace("vlmspec.collate.kimi:_process_images", _as_medias)
