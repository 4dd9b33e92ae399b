"""nemo-automodel 0.7.0 PP media chunking, called directly (no suite): which samples' media land in which chunk."""
import torch
from nemo_automodel.components.datasets.vlm.pp_media import chunk_vlm_media, prepare_vlm_media_for_pp


def tsplit(b, n):
    return [t.tolist() for t in torch.tensor_split(torch.arange(b), n)]

# 1. three samples owning 1, 0 and 2 images of [C, H, W] (Gemma 3 / Mistral 3 / Gemma 4 style): N == B by chance
pv = torch.arange(3).view(3, 1, 1, 1).float().expand(3, 3, 4, 4)
grid = torch.tensor([[4, 4], [4, 4], [4, 4]])
chunks, _ = chunk_vlm_media(pixel_values=pv, image_grid=grid, batch_size=3, n_microbatches=2,
                            n_images_per_sample=torch.tensor([1, 0, 2]))
print("1. samples per text microbatch", tsplit(3, 2), "| images per chunk", [c.shape[0] for c in chunks],
      "(expected [1, 2])")

# 2. flat patches (Qwen-VL style), B=4, n=3: one image of 4 patches per sample
pv = torch.arange(16).view(16, 1).float()
grid = torch.tensor([[1, 2, 2]] * 4)
chunks, _ = chunk_vlm_media(pixel_values=pv, image_grid=grid, batch_size=4, n_microbatches=3,
                            n_images_per_sample=torch.tensor([1, 1, 1, 1]))
print("2. samples per text microbatch", tsplit(4, 3), "| patches per chunk", [c.shape[0] for c in chunks],
      "(expected [8, 4, 4])")

# 3. B=5, n=4
try:
    chunk_vlm_media(pixel_values=torch.zeros(20, 1), image_grid=torch.tensor([[1, 2, 2]] * 5), batch_size=5,
                    n_microbatches=4, n_images_per_sample=torch.ones(5, dtype=torch.long))
    print("3. B=5 n=4: no error")
except Exception as exc:
    print(f"3. B=5 n=4: {type(exc).__name__}: {exc}")

# 4. one [C, H, W] image per image-bearing sample, no grid (Gemma 3), B=2 with images [1, 0]
try:
    out = prepare_vlm_media_for_pp(batch={"input_ids": torch.zeros(2, 5, dtype=torch.long),
                                          "pixel_values": torch.zeros(1, 3, 8, 8),
                                          "n_images_per_sample": torch.tensor([1, 0])},
                                   batch_size=2, n_microbatches=2)
    print("4. Gemma-3 layout:", {k: [t.shape for t in v] for k, v in out["_vlm_pp_media_chunks"].items()})
except Exception as exc:
    print(f"4. Gemma-3 layout, B=2 images [1, 0]: {type(exc).__name__}: {exc}")

# 5. [N, C, H, W] images with image_sizes (Mistral 3 / Pixtral), B=4 owning 1, 0, 2, 0 images
try:
    out = prepare_vlm_media_for_pp(batch={"input_ids": torch.zeros(4, 5, dtype=torch.long),
                                          "pixel_values": torch.zeros(3, 3, 56, 84),
                                          "image_sizes": torch.tensor([[56, 84]] * 3),
                                          "n_images_per_sample": torch.tensor([1, 0, 2, 0])},
                                   batch_size=4, n_microbatches=2)
    print("5. Pixtral layout, B=4 n=2: images per chunk", [t.shape[0] for t in out["_vlm_pp_media_chunks"]["pixel_values"]],
          "(expected [1, 2])")
except Exception as exc:
    print(f"5. Pixtral layout: {type(exc).__name__}: {exc}")

# 6. audio clips (Qwen3-Omni style): B=2, n=2, sample 0 text-only, sample 1 one clip, plus one image in sample 1
out = prepare_vlm_media_for_pp(batch={"input_ids": torch.zeros(2, 5, dtype=torch.long),
                                      "pixel_values": torch.zeros(4, 8), "image_grid_thw": torch.tensor([[1, 2, 2]]),
                                      "n_images_per_sample": torch.tensor([0, 1]),
                                      "input_features": torch.ones(1, 128, 100),
                                      "feature_attention_mask": torch.ones(1, 100, dtype=torch.int32)},
                               batch_size=2, n_microbatches=2)
left = [k for k in ("input_features", "feature_attention_mask") if k in out]
print("6. audio, B=2 n=2: left in the batch", left, "| torch PP's row split gives the clip rows",
      [t.shape[0] for t in torch.tensor_split(out["input_features"], 2)], "(expected [0, 1]: the clip is sample 1's)")
