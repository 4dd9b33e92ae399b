"""``nemotron_omni_collate_fn`` returns no ``n_images_per_sample`` (nemo-automodel 0.7.0).

Bug: the collate stacks the images of the batch but drops the per-sample image counts that the data
contract requires whenever a sample has images (PP media chunking needs them). Found in
nemo-automodel 0.7.0 (docs/findings.md#nemotron-omni-collate-returns-no-image-counts). Runner:
conformance (nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16). Killed by: golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16"
EXPECT = {"golden"}
SELECT = "single_turn_image"


def _no_counts(examples, processor, max_length=None, max_video_frames=8):
    out = _original(examples, processor, max_length=max_length, max_video_frames=max_video_frames)
    out.pop("n_images_per_sample", None)
    out.pop("n_videos_per_sample", None)
    return out


_original = replace("vlmspec.collate.nemotron:nemotron_omni_collate_fn", _no_counts)
