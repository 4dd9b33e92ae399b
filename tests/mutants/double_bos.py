"""The tokenizer adds a second BOS on top of the one the chat template renders (Gemma 3).

Bug: the collate calls the processor with ``add_special_tokens=True`` on an already rendered
template, so every Gemma sample starts ``<bos><bos>``: ids no longer match the model's expected
prompt. Runner: conformance (google/gemma-3-4b-it). Killed by: labels (shift contract: collate ids
are not the processor's), golden.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"labels", "golden"}
MODEL = "google/gemma-3-4b-it"
SELECT = "single_turn_text or multi_turn_text or single_turn_image"


def _with_specials(conversations, processor, max_length=None, **proc_kwargs):
    return _original(conversations, processor, max_length, **{**proc_kwargs, "add_special_tokens": True})


_original = replace("vlmspec.collate.default:tokenize_conversations", _with_specials)
