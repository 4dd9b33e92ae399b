"""PP media is chunked with ``torch.chunk`` semantics instead of ``torch.tensor_split``.

Bug: microbatch boundaries are ``ceil(B / n)``-sized (``torch.chunk``), while torch's pipelining
splits text with ``tensor_split`` (the first ``B % n`` microbatches get one extra sample). For
B=5, n=4 the media chunks hold samples 2,2,1,0 while the text microbatches hold 2,1,1,1: images
are fed to the wrong microbatch. Runner: conformance (Qwen2.5-VL, real collated batches for
B in 1..5, n <= 4). Killed by: pp_chunking. (tests/test_pp_media.py also kills it, through
test_leading_dim_layouts and test_prepare_chunks_images_and_videos_by_the_same_rule; with
``--hypothesis-seed=0`` the 50 examples of test_flat_layout_chunks_follow_text_microbatches miss it.)
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"pp_chunking"}


def _chunk_bounds(batch_size, n_microbatches):
    size = -(-batch_size // n_microbatches)
    bounds = []
    for k in range(n_microbatches):
        start = min(k * size, batch_size)
        bounds.append((start, min(start + size, batch_size)))
    return bounds


replace("vlmspec.pp.chunking:_sample_bounds", _chunk_bounds)
