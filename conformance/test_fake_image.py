"""Fake-image masking and invisibility on a tiny random-weight model of the family."""

from conformance.fake_checks import check_fake_image_invisible

CHECK = "fake_image"


def case_filter(case):
    return not case.has_media


def test_fake_image(family, case):
    check_fake_image_invisible(family, case)
