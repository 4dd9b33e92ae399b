"""PP media chunking splits the video stream by the samples' image counts.

Bug: the video branch reuses the image branch's bookkeeping, ``n_images_per_sample``, to decide which
sample owns which ``video_grid_thw`` row, so in a batch that mixes images, videos and text-only samples
the video rows land in the wrong microbatch (or the counts do not add up at all). The users' report
behind it: pipeline splits that cut a video's tokens from its frames. Runner: conformance (Qwen2.5-VL,
whose record declares video: pp_chunking adds a mixed video/image/text batch). Killed by: pp_chunking.
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
EXPECT = {"pp_chunking"}
SELECT = "pp_chunking"


def _by_image_count(batch, batch_size, n):
    if "n_images_per_sample" in batch:
        batch = dict(batch, n_videos_per_sample=batch["n_images_per_sample"])
    else:
        batch = dict(batch, n_videos_per_sample=torch.zeros(batch_size, dtype=torch.long))
    return _original(batch, batch_size, n)


_original = replace("vlmspec.pp.batch:_chunk_video_stream", _by_image_count)
