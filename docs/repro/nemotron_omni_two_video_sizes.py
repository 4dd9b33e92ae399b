"""transformers 5.23.0 NemotronH_Omni_Reasoning_V3VideoProcessor: two videos of different aspect ratio in
one call crash (torch.cat of frames resized to per-video tile sizes). Standalone: no vlmspec, no suite.

    python docs/repro/nemotron_omni_two_video_sizes.py
"""
import torch
from transformers.models.nemotron_h_omni.video_processing_nemotron_h_omni import (
    NemotronH_Omni_Reasoning_V3VideoProcessor as VP,
)

vp = VP(patch_size=16, downsample_ratio=0.5, video_target_num_patches=16, norm_mean=[0.5] * 3, norm_std=[0.5] * 3)
square = torch.randint(0, 256, (8, 3, 56, 56), dtype=torch.uint8)
wide = torch.randint(0, 256, (10, 3, 56, 84), dtype=torch.uint8)
print("one video each:", [tuple(vp(videos=[v], do_sample_frames=False)["pixel_values_videos"].shape) for v in (square, wide)])
try:
    vp(videos=[square, wide], do_sample_frames=False)
    print("both in one call: ok")
except RuntimeError as exc:
    print("both in one call: RuntimeError:", exc)
