"""``nemotron_omni_collate_fn`` ignores ``_injected_fake``: the fake image stays attended (nemo-automodel 0.7.0).

Bug: the collate never masks the vision tokens of a sample flagged ``_injected_fake``, so
``<img><image>...</img>`` of the injected 56x56 image stay visible to attention. Found in
nemo-automodel 0.7.0 (docs/findings.md#nemotron-omni-collate-ignores-the-fake-image-flag). Runner:
conformance (nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16; its fake_image checks are recorded
xfails for another reason, so the golden's fake-image record catches it). Killed by: golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16"
EXPECT = {"golden"}
SELECT = "single_turn_text"


def _flag_dropped(examples, processor, max_length=None, max_video_frames=8):
    examples = [{k: v for k, v in example.items() if k != "_injected_fake"} for example in examples]
    return _original(examples, processor, max_length=max_length, max_video_frames=max_video_frames)


_original = replace("vlmspec.collate.nemotron:nemotron_omni_collate_fn", _flag_dropped)
