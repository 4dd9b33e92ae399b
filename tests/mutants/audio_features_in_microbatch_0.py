"""PP media chunking leaves every audio clip with microbatch 0.

Bug: the audio stream is treated as per-batch data rather than per-sample media: ``input_features``
and its per-clip mask go whole into media chunk 0 (the other chunks get none), so stage 0 embeds every
sample's clips into the first microbatch and the later microbatches' ``<|audio_pad|>`` tokens have no
features, or the wrong ones. The users' report behind it: audio placeholders of one sample filled with
another sample's clip once PP is on. Runner: conformance (Qwen3-Omni, whose record declares audio:
pp_chunking adds a batch of clips next to a text-only sample, an image and a video). Killed by: pp_chunking.
"""

import torch

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "Qwen/Qwen3-Omni-30B-A3B-Instruct"
EXPECT = {"pp_chunking"}
SELECT = "pp_chunking"


def _all_in_first(batch, batch_size, n):
    chunks = _original(batch, batch_size, n)
    whole = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0] if k != "n_audios_per_sample"}
    return [
        dict(c, **({**whole} if k == 0 else {key: t[:0] for key, t in whole.items()})) for k, c in enumerate(chunks)
    ]


_original = replace("vlmspec.pp.batch:_chunk_audio_stream", _all_in_first)
