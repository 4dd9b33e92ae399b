"""A collate passes None for a sample without a medium, so a batch of mixed media crashes (nemo 0.7.0).

Bug: the per-sample media lists handed to the processor hold ``None`` for a sample that has no image
(``images=[[img], None]``) instead of an empty list, as nemo-automodel 0.7.0's ``qwen3_omni_collate_fn``
does; transformers rejects the ``None`` entry (TypeError), so any batch in which one sample has an image
and another has none fails. Runner: conformance (Qwen3-Omni: ``fake_image`` batches the fake-image sample
with a real audio and a real video sample, which own no image). Killed by: fake_image.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "Qwen/Qwen3-Omni-30B-A3B-Instruct"
EXPECT = {"fake_image"}
SELECT = "single_turn_text"


class _NoneForNoMedia:
    """The processor, called with ``None`` in place of a sample's empty image list."""

    def __init__(self, processor):
        self._processor = processor

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def __call__(self, *args, **kwargs):
        if isinstance(kwargs.get("images"), list):
            kwargs["images"] = [sample or None for sample in kwargs["images"]]
        return self._processor(*args, **kwargs)


def _tokenize(conversations, processor, *args, **kwargs):
    return _original(conversations, _NoneForNoMedia(processor), *args, **kwargs)


_original = replace("vlmspec.collate.default:tokenize_conversations", _tokenize)
