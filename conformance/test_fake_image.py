"""Fake-image masking and invisibility on a tiny random-weight model of the family."""

from conformance import impl
from conformance.fake_checks import check_fake_image_invisible, check_framework_dummy_image

CHECK = "fake_image"


def case_filter(case):
    return not case.has_media


def test_fake_image(family, case):
    if impl.framework() is not None:  # a framework adapter: its own dummy image (where it expresses one)
        check_framework_dummy_image(family, case)
    else:
        check_fake_image_invisible(family, case)
