"""``prepare_vlm_media_for_pp`` does not know Step-3.7's local crops (nemo-automodel 0.7.0).

Bug: ``pixel_values_local`` and ``num_local_patches`` are not among the media keys, so they stay in
the returned batch for torch PP to cut by row ("raw media ['num_local_patches'] still in the PP
batch"), while the global views (``pixel_values``, ``n_images_per_sample``) are chunked per
microbatch: the media chunks lack the crop counts (and crops) of their images. (Phi-4-multimodal's
``image_pixel_values`` is the same bug in nemo.) Found in nemo-automodel 0.7.0
(docs/findings.md#nemo_automodel-070-pp-media-chunking, finding 5). Runner: conformance
(stepfun-ai/Step-3.7-Flash). Killed by: pp_chunking.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "stepfun-ai/Step-3.7-Flash"
EXPECT = {"pp_chunking"}

_UNKNOWN = ("pixel_values_local", "num_local_patches")  # the bug: not in the media keys


def prepare_vlm_media_for_pp(batch, batch_size, n_microbatches):
    if not hasattr(batch, "items"):
        return _original(batch, batch_size, n_microbatches)
    known = {k: v for k, v in batch.items() if k not in _UNKNOWN}
    out = _original(known, batch_size, n_microbatches)
    out.update({k: v for k, v in batch.items() if k in _UNKNOWN})  # left in the batch, unchunked
    return out


_original = replace("vlmspec.pp.batch:prepare_vlm_media_for_pp", prepare_vlm_media_for_pp)
prepare_vlm_media_for_pp.__doc__ = _original.__doc__
