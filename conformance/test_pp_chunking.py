"""PP media chunking on real collated batches: media chunk k holds exactly the media of text microbatch k.

For every B in 1..5 (fixture conversations with 0, 1 and 2 images) and n <= min(B, 4) microbatches:
the chunks of ``prepare_vlm_media_for_pp`` concatenate back to the batch's media, agree with
``chunk_vlm_media``, and each text microbatch (``torch.tensor_split(input_ids, n)``) has exactly as many
image placeholder tokens as its chunk's images yield (rule: the record's ``pp.tokens_per_image``).
One test per model covers the grid: the processor is loaded once.
"""

from conformance.pp.chunking import check_chunking

CHECK = "pp_chunking"


def test_pp_chunking(family):
    check_chunking(family)
