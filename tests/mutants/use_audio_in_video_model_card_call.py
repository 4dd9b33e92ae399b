"""use_audio_in_video calls the processor the model card's way, which transformers 5.23 rejects (nemo 0.7.0).

Bug: with ``use_audio_in_video=True`` the collate hands every clip, the videos' tracks included, to the
processor as ``audio=`` with the deprecated ``use_audio_in_video=True`` (the Qwen3-Omni model card's call,
and nemo-automodel 0.7.0's), without ``audio_from_video_indices``. transformers 5.23 maps the keyword to
``load_audio_from_video`` and counts every clip against the text's audio placeholders: ValueError on any
conversation with a video. Runner: conformance (Qwen3-Omni's ``use_audio_in_video`` row, fixture
``video_with_sound``). Killed by: labels, golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "Qwen/Qwen3-Omni-30B-A3B-Instruct@qwen3_omni_collate_fn(use_audio_in_video=True)"
EXPECT = {"labels", "golden"}
SELECT = "video_with_sound"


def _model_card_call(conversations, processor, *args, **kwargs):
    if kwargs.pop("load_audio_from_video", False):
        kwargs.pop("audio_from_video_indices", None)
        kwargs["use_audio_in_video"] = True
    return _original(conversations, processor, *args, **kwargs)


_original = replace("vlmspec.collate.default:tokenize_conversations", _model_card_call)
