"""``phi4_mm_collate_fn`` requires a top-level ``example["audio"]`` (nemo-automodel 0.7.0).

Bug: the collate reads ``example["audio"]`` for every example, a key neither the page nor the data
contract defines (audio is a ``{"type": "audio"}`` content item); every documented example, text,
image or audio, raises ``KeyError: 'audio'``. Found in nemo-automodel 0.7.0
(docs/findings.md#phi-4-collate-requires-a-top-level-audio-key). Runner: conformance
(microsoft/Phi-4-multimodal-instruct). Killed by: labels, golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "microsoft/Phi-4-multimodal-instruct"
EXPECT = {"labels", "golden"}
SELECT = "single_turn_text"


def _audio_key(examples, processor):
    [example["audio"] for example in examples]  # noqa: B018 - the KeyError is the bug
    return _original(examples, processor)


_original = replace("vlmspec.collate.phi4:phi4_mm_collate_fn", _audio_key)
