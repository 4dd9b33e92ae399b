"""The default collate tokenizes through ``processor.apply_chat_template(tokenize=True)`` (nemo-automodel 0.7.0).

Bug: transformers 5.23's processor path turns an empty string ``content`` into an empty list before
rendering, and Mistral 3.1's template indexes ``content[0]``: an empty assistant reply crashes the
collate with ``UndefinedError: list object has no element 0`` (rendering to text first works).
Found in nemo-automodel 0.7.0 (docs/findings.md#default_collate_fn-crashes-on-an-empty-reply-mistral-31).
Runner: conformance (mistralai/Mistral-Small-3.1-24B-Instruct-2503). Killed by: labels, golden.
"""

import copy

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "mistralai/Mistral-Small-3.1-24B-Instruct-2503"
EXPECT = {"labels", "golden"}
SELECT = "empty_assistant_turn"


def _through_processor(conversations, processor, max_length=None, **kwargs):
    processor.apply_chat_template(copy.deepcopy(list(conversations)), tokenize=True, return_dict=True)
    return _original(conversations, processor, max_length, **kwargs)


_original = replace("vlmspec.collate.default:tokenize_conversations", _through_processor)
