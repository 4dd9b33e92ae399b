"""The injected fake image's vision tokens are left attended (masking step skipped).

Bug: the collate forgets to call ``mask_fake_vision_tokens_batch`` for ``_injected_fake`` samples,
so the model sees a white square in every text-only sample. Runner: conformance (Qwen2.5-VL).
Killed by: fake_image.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"fake_image"}
SELECT = "single_turn_text or multi_turn_text"

replace("vlmspec.fake_image:mask_fake_vision_tokens_batch", lambda batch, processor, sample_indices: batch)
