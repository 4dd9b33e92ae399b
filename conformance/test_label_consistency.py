"""Template-marker labels vs the legacy pattern matcher.

Where the legacy path labels tokens, they must be template-labelled too. Where it mislabels (e.g. an
answer that repeats the user's words is matched in the user turn), the fixture must be declared in
the family record's ``expected_failures`` — a strict xfail, so a fixed legacy path shows up.
Turns the legacy path misses entirely are recorded in the report, not failed: that is its known
fragility.
"""

from conformance.checks import CheckFailure, decode_runs, header, legacy_vs_template, reference_ids
from conformance.loading import load_processor

CHECK = "label_consistency"


def test_label_consistency(family, case, record_property):
    diff = legacy_vs_template(family, case)
    record_property("legacy_missed_positions", len(diff["missed"]))
    if diff["mislabeled"]:
        tok = load_processor(family.model_id).tokenizer
        ids = reference_ids(family, case)[0]
        raise CheckFailure(
            "\n".join(
                [
                    f"{header(family, case.id, CHECK)} legacy build_labels supervises tokens the template markers do not:",
                    *decode_runs(tok, ids, diff["mislabeled"]),
                ]
            )
        )
