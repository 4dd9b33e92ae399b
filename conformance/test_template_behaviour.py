"""Documented template quirks, declared per family (``template_behaviour`` in the record).

Each entry names a fixture, strings its rendering must contain (``rendered_contains``) and strings it
must not (``rendered_not_contains``: e.g. earlier turns' reasoning that a thinking template drops);
``{today}`` is today's ISO date (Mistral's default system prompt carries it, which is why its
fixtures pass a system message). ``add_generation_prompt`` renders the prompt as for inference.
"""

import datetime

import pytest

from conformance.checks import CheckFailure, header
from conformance.corpus import load_corpus
from conformance.loading import load_processor

CHECK = "template_behaviour"


def test_template_behaviour(family):
    if not family.template_behaviour:
        pytest.skip("no documented template behaviour for this family")
    processor = load_processor(family.model_id)
    corpus = {c.id: c for c in load_corpus()}
    today = datetime.date.today().isoformat()
    for entry in family.template_behaviour:
        rendered = processor.apply_chat_template(
            corpus[entry["fixture"]].conversation,
            tokenize=False,
            add_generation_prompt=entry.get("add_generation_prompt", False),
        )
        for want in entry.get("rendered_contains", ()):
            needle = want.format(today=today)
            if needle not in rendered:
                raise CheckFailure(
                    f"{header(family, entry['fixture'], CHECK)} {entry['description']}: "
                    f"{needle!r} not in the rendered prompt {rendered[:300]!r}"
                )
        for unwanted in entry.get("rendered_not_contains", ()):
            needle = unwanted.format(today=today)
            if needle in rendered:
                at = rendered.index(needle)
                raise CheckFailure(
                    f"{header(family, entry['fixture'], CHECK)} {entry['description']}: "
                    f"{needle!r} is in the rendered prompt: ...{rendered[max(0, at - 80) : at + 80]!r}..."
                )
