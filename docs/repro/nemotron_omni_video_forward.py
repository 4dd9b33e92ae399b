"""transformers 5.23.0 NemotronH_Omni_Reasoning_V3: every forward with pixel_values_videos crashes.
get_video_features returns pooler_output as one tensor, and the forward torch.cat()s it as if it were the
per-image tuple get_image_features returns. Standalone: no vlmspec, no suite; a tiny random model from the
pack's config (the crash is in the forward's merge, whatever the sizes). From the repository root:

    python docs/repro/nemotron_omni_video_forward.py
"""
import torch
from transformers import AutoConfig
from transformers.models.nemotron_h_omni.modeling_nemotron_h_omni import NemotronH_Omni_Reasoning_V3

# the tiny config of the suite's pack (a data file: RADIO 1 layer, hidden 32, NemotronH 3 layers)
config = AutoConfig.from_pretrained("fixtures/packs/nvidia--Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16")
torch.manual_seed(0)
model = NemotronH_Omni_Reasoning_V3(config).eval()
frames = torch.randn(8, 3, 64, 64)  # 8 frames of 64x64: 4 temporal groups of 2, 2x2 tokens each
ids = torch.tensor([[1] + [config.image_token_id] * 16 + [2]])  # the forward places video features on image tokens
try:
    with torch.no_grad():
        model(input_ids=ids, pixel_values_videos=frames)
    print("video forward: ok")
except Exception as exc:
    print(f"video forward: {type(exc).__name__}: {exc}")

# an image (4x4 patches -> 4 tokens) and the video in one batch: the video's frames use the image
# placeholder too, so the image merge counts 4 + 16 placeholders for the image's 4 features
patches = torch.randn(16, 3 * 16 * 16)
ids = torch.tensor([[1] + [config.image_token_id] * 20 + [2]])
try:
    with torch.no_grad():
        model(input_ids=ids, pixel_values=patches, image_grid_hw=torch.tensor([[4, 4]]), pixel_values_videos=frames)
    print("image + video forward: ok")
except Exception as exc:
    print(f"image + video forward: {type(exc).__name__}: {exc}")
