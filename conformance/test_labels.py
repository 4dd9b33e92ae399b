"""Labels vs the independent oracle, for every fixture of every selected model."""

from conformance.checks import check_labels_vs_oracle

CHECK = "labels"


def test_labels(family, case):
    check_labels_vs_oracle(family, case)
