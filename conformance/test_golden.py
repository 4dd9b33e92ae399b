"""Golden snapshots: rendered prompt, tokens, supervised spans, masks and media shapes per fixture.

Update with ``pytest conformance --model ID --snapshot-update`` and review the diff under golden/.
"""

from conformance.checks import golden_record
from conformance.golden import golden_extension

CHECK = "golden"


def test_golden(family, case, snapshot):
    assert golden_record(family, case) == snapshot.use_extension(golden_extension(family.folder))
