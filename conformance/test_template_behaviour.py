"""Documented template quirks, declared per family (``template_behaviour`` in the record).

Each entry names a fixture and strings its rendering must contain; ``{today}`` is today's ISO date
(Mistral's default system prompt carries it, which is why its fixtures pass a system message).
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
        rendered = processor.apply_chat_template(corpus[entry["fixture"]].conversation, tokenize=False)
        for want in entry["rendered_contains"]:
            needle = want.format(today=today)
            if needle not in rendered:
                raise CheckFailure(f"{header(family, entry['fixture'], CHECK)} {entry['description']}: "
                                   f"{needle!r} not in the rendered prompt {rendered[:300]!r}")
