"""Golden PP layout per model: media chunk shapes for every (B, n) and each stage's decoder layers and
modules for K in {2, 3}. Update with ``pytest conformance --model ID -k pp_golden --snapshot-update``.
"""

from conformance.golden import golden_extension
from conformance.pp.golden import golden_record

CHECK = "pp_golden"


def test_pp_golden(family, snapshot):
    assert golden_record(family) == snapshot.use_extension(golden_extension(family.folder))
