"""PP media chunking takes ``[N, C, H, W]`` with ``N == batch_size`` as one image per sample (nemo-automodel 0.7.0).

Bug: the layout is resolved on the image count alone: whenever a batch holds as many images as
samples, each sample is given one image, even when ``n_images_per_sample`` says otherwise. Three
samples owning 1, 0 and 2 images are chunked as if each owned one, so a text microbatch gets another
sample's image (B=3, n=2: "text microbatch 0 has 256 <image_soft_token> tokens but its media chunk ...
yields 512"). Found in nemo-automodel 0.7.0 (docs/findings.md#nemo_automodel-070-pp-media-chunking,
finding 2; also Gemma 4 and Mistral 3.1). Runner: conformance (google/gemma-3-4b-it). Killed by:
pp_chunking.
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "google/gemma-3-4b-it"
EXPECT = {"pp_chunking"}


def _image_count_decides(pixel_values, image_grid, batch_size, counts, **fields):
    items, rows = _original(pixel_values, image_grid, batch_size, counts, **fields)
    leading_row_per_item = isinstance(pixel_values, torch.Tensor) and pixel_values.ndim > 2 and rows == [1] * len(rows)
    if leading_row_per_item and len(rows) == batch_size:
        return [1] * batch_size, rows  # the bug: n_images_per_sample is not consulted
    return items, rows


_original = replace("vlmspec.pp.chunking:_resolve_layout", _image_count_decides)
