"""With use_audio_in_video, a video's own audio track is not counted as a clip of its sample.

Bug: ``qwen3_omni_collate_fn(use_audio_in_video=True)`` counts a sample's clips from its audio items
only, forgetting that each video's track is one more row of ``input_features``. The counts then no
longer describe the feature rows, and PP media chunking routes the track's features to another
microbatch (or drops them from their sample's chunk): stage 0 fills a clip's ``<|audio_pad|>`` tokens
inside the video span with another sample's audio. The users' report behind it: audio tokens of a video
misaligned once ``use_audio_in_video`` and PP are both on. Runner: conformance (Qwen3-Omni's
``use_audio_in_video`` row: pp_chunking attributes each track to its sample from the corpus).
Killed by: pp_chunking.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "Qwen/Qwen3-Omni-30B-A3B-Instruct@qwen3_omni_collate_fn(use_audio_in_video=True)"
EXPECT = {"pp_chunking"}
SELECT = "use_audio_in_video"


def _standalone_clips_only(conversations):
    from vlmspec.collate.audio import count_audio_per_sample

    return count_audio_per_sample(conversations)


replace("vlmspec.collate.qwen:_clips_with_tracks", _standalone_clips_only)
