"""``prepare_vlm_media_for_pp`` takes ``batch_size``/``n_microbatches`` keyword-only (nemo-automodel 0.7.0).

Bug: the signature is ``prepare_vlm_media_for_pp(batch, *, batch_size, n_microbatches)`` where the
``pp_media`` page documents every parameter positional-or-keyword: a positional call, valid by the
page, raises ``TypeError: prepare_vlm_media_for_pp() takes 1 positional argument but 3 were given``.
vlmspec's own caller (``wrap_vlm_collate_for_pp``) passes keywords, as nemo's does, so only the
documented signature deviates; the PP checks call by keyword and pass. Found in nemo-automodel 0.7.0
(docs/findings.md#nemo_automodel-070-api). Runner: conformance (the ``(implementation)`` row; any
``--model``). Killed by: api (case pp_media).
"""

import sys

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "(implementation)"
EXPECT = {"api"}
SELECT = "pp_media"


def prepare_vlm_media_for_pp(batch, *, batch_size, n_microbatches):  # the bug: `*` (no functools.wraps: its
    # __wrapped__ would make inspect.signature report the original signature)
    return _original(batch, batch_size, n_microbatches)


_original = replace("vlmspec.pp.batch:prepare_vlm_media_for_pp", prepare_vlm_media_for_pp)
prepare_vlm_media_for_pp.__doc__ = _original.__doc__
# wrap_vlm_collate_for_pp's call (positional in vlmspec) is by keyword in nemo: keep it working.
sys.modules["vlmspec.pp.batch"].prepare_vlm_media_for_pp = _original
