"""Tiny real HF models and matching batches for the pipelining tests (no Hub access).

Each case builds a model from a tiny config (the family configs under ../shared/families where one
exists) and a batch whose image placeholders match its media, with per-sample image counts 0..2 so
microbatch splits exercise empty, single and multi-image chunks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import transformers
from transformers import AutoConfig

BATCH = 5
# Test vocabularies are cut to this size to keep lm_head cheap (logits are [B, L, V]); placeholder ids
# that fall outside it exercise the out-of-vocabulary paths HF itself has (Gemma3/Gemma4).
SMALL_VOCAB = 2048
IMAGE_COUNTS = [1, 0, 2, 1, 1]  # per sample; sum = 5 images


@dataclasses.dataclass
class Case:
    name: str
    model: torch.nn.Module
    batch: dict[str, torch.Tensor]  # HF forward kwargs + n_images_per_sample
    ref_kwargs: tuple[str, ...]  # keys of `batch` the unsplit HF forward takes
    n_stages: int = 2


def family_config(model_id: str):
    """The family's tiny config.json, from its data folder (found like the packs find it)."""
    from vlmspec.hub import family_folder

    return AutoConfig.from_pretrained(str(family_folder(model_id).path))


def _text_tail(gen: torch.Generator, n: int, low: int = 20, high: int = 1000) -> list[int]:
    return torch.randint(low, high, (n,), generator=gen).tolist()


def _image_sequences(per_image_tokens: list[list[int]], length: int, gen: torch.Generator) -> torch.Tensor:
    """One row per sample: that sample's image token blocks, then random text up to ``length``."""
    rows, k = [], 0
    for count in IMAGE_COUNTS:
        toks: list[int] = []
        for _ in range(count):
            toks += per_image_tokens[k]
            k += 1
        rows.append(toks + _text_tail(gen, length - len(toks)))
    return torch.tensor(rows)


def _padding_mask(length: int) -> torch.Tensor:
    mask = torch.ones(BATCH, length, dtype=torch.long)
    mask[1, -3:] = 0  # right padding on a text-only sample
    mask[4, -1:] = 0
    return mask


def build_llama() -> Case:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 256, (BATCH, 16), generator=gen)
    return Case(
        "llama", model, {"input_ids": ids, "attention_mask": _padding_mask(16)}, ("input_ids", "attention_mask"), 3
    )


def build_qwen2() -> Case:
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    ids = torch.randint(0, 256, (BATCH, 16), generator=torch.Generator().manual_seed(2))
    return Case("qwen2", model, {"input_ids": ids}, ("input_ids",), 2)


def _build_qwen_vl(name: str, model_id: str, model_class: type, patch: int, seed: int, small_vocab: bool) -> Case:
    """A Qwen-VL case: 2x2-merged image blocks of random grids, real 3-D M-RoPE positions."""
    cfg = family_config(model_id)
    if small_vocab:
        cfg.text_config.vocab_size = SMALL_VOCAB
        ids = range(SMALL_VOCAB - 4, SMALL_VOCAB)
        cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id = ids
    torch.manual_seed(0)
    model = model_class(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    grids = [[1, 2 * int(a), 2 * int(b)] for a, b in torch.randint(1, 3, (sum(IMAGE_COUNTS), 2), generator=gen)]
    blocks = [
        [cfg.vision_start_token_id] + [cfg.image_token_id] * (h * w // 4) + [cfg.vision_end_token_id]
        for _, h, w in grids
    ]
    ids = _image_sequences(blocks, 32, gen)
    grid = torch.tensor(grids)
    pixel_values = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * patch * patch, generator=gen)
    # Real 3-D M-RoPE positions: [3, B, L] for HF, passed batch-first ([B, 3, L]) to the PP stages.
    mm_token_type_ids = (ids == cfg.image_token_id).long()
    position_ids, _ = model.model.get_rope_index(ids, mm_token_type_ids, image_grid_thw=grid)
    batch = {
        "input_ids": ids,
        "pixel_values": pixel_values,
        "image_grid_thw": grid,
        "n_images_per_sample": torch.tensor(IMAGE_COUNTS),
        "position_ids": position_ids,
        "mrope_position_ids": position_ids.transpose(0, 1).contiguous(),
    }
    return Case(name, model, batch, ("input_ids", "pixel_values", "image_grid_thw", "position_ids"), 2)


def build_qwen2_5_vl(small_vocab: bool = True) -> Case:
    return _build_qwen_vl(
        "qwen2_5_vl" + ("" if small_vocab else "_family_vocab"),
        "Qwen/Qwen2.5-VL-3B-Instruct",
        transformers.Qwen2_5_VLForConditionalGeneration,
        14,
        1,
        small_vocab,
    )


def build_qwen3_vl(small_vocab: bool = True) -> Case:
    """Qwen3-VL: patch 16, interleaved M-RoPE and DeepStack features (vision level 0 -> decoder layer 0)."""
    return _build_qwen_vl(
        "qwen3_vl", "Qwen/Qwen3-VL-2B-Instruct", transformers.Qwen3VLForConditionalGeneration, 16, 3, small_vocab
    )


def _gemma3_config(layers: int = 4, small_vocab: bool = True):
    cfg = family_config("google/gemma-3-4b-it")
    if small_vocab:
        cfg.text_config.vocab_size = SMALL_VOCAB  # image_token_id 262144 becomes out of vocabulary
    cfg.vision_config.image_size = 56  # 4x4 patches -> 2x2 pooled = 4 tokens per image
    cfg.mm_tokens_per_image = 4
    tc = cfg.text_config
    tc.num_hidden_layers = layers
    tc.layer_types = ["sliding_attention", "full_attention"] * (layers // 2)
    tc.sliding_window = 5  # shorter than the sequences, so sliding masks differ from causal ones
    return cfg


def build_gemma3_text() -> Case:
    tc = _gemma3_config().text_config
    tc.final_logit_softcapping = 30.0
    torch.manual_seed(0)
    model = transformers.Gemma3ForCausalLM(tc).eval()
    ids = torch.randint(0, 1000, (BATCH, 16), generator=torch.Generator().manual_seed(3))
    return Case(
        "gemma3_text",
        model,
        {"input_ids": ids, "attention_mask": _padding_mask(16)},
        ("input_ids", "attention_mask"),
        3,
    )


def build_gemma3_vlm(token_type_ids: bool = True, small_vocab: bool = True) -> Case:
    cfg = _gemma3_config(small_vocab=small_vocab)
    torch.manual_seed(0)
    model = transformers.Gemma3ForConditionalGeneration(cfg).eval()
    gen = torch.Generator().manual_seed(4)
    boi, eoi = (1, 2) if small_vocab else (cfg.boi_token_index, cfg.eoi_token_index)
    block = [boi] + [cfg.image_token_id] * 4 + [eoi]
    ids = _image_sequences([block] * sum(IMAGE_COUNTS), 20, gen)
    batch = {
        "input_ids": ids,
        "pixel_values": torch.randn(sum(IMAGE_COUNTS), 3, 56, 56, generator=gen),
        "n_images_per_sample": torch.tensor(IMAGE_COUNTS),
        "attention_mask": _padding_mask(20),
    }
    keys = ("input_ids", "pixel_values", "attention_mask")
    if token_type_ids:
        batch["token_type_ids"] = (ids == cfg.image_token_id).long()
        keys += ("token_type_ids",)
    name = "gemma3_vlm" + ("_bidir" if token_type_ids else "") + ("" if small_vocab else "_family_vocab")
    return Case(name, model, batch, keys, 2)


def _gemma4_config(layers: int = 4, bidirectional: str | None = None, small_vocab: bool = True):
    cfg = family_config("google/gemma-4-E2B-it")
    tc = cfg.text_config
    if small_vocab:  # image/video/audio ids become out of vocabulary; HF swaps them for pad first
        tc.vocab_size = tc.vocab_size_per_layer_input = SMALL_VOCAB
    tc.num_hidden_layers = layers
    tc.layer_types = ["sliding_attention", "full_attention"] * (layers // 2)
    tc.sliding_window = 5
    tc.final_logit_softcapping = 30.0  # the real E2B checkpoint caps at 30
    tc.use_bidirectional_attention = bidirectional
    return cfg


def build_gemma4_text() -> Case:
    tc = _gemma4_config().text_config
    torch.manual_seed(0)
    model = transformers.Gemma4ForCausalLM(tc).eval()
    ids = torch.randint(0, 1000, (BATCH, 16), generator=torch.Generator().manual_seed(5))
    return Case("gemma4_text", model, {"input_ids": ids}, ("input_ids",), 3)


def gemma4_image(h: int, w: int, max_patches: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``pixel_values [max_patches, 3*16*16]`` and ``image_position_ids [max_patches, 2]`` ((-1, -1) = pad)."""
    pos = torch.full((max_patches, 2), -1, dtype=torch.long)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos[: h * w, 0], pos[: h * w, 1] = xx.flatten(), yy.flatten()
    pixels = torch.zeros(max_patches, 3 * 16 * 16)
    pixels[: h * w] = torch.rand(h * w, 3 * 16 * 16, generator=gen)
    return pixels, pos


def build_gemma4_vlm(bidirectional: str | None = "vision", small_vocab: bool = True) -> Case:
    cfg = _gemma4_config(bidirectional=bidirectional, small_vocab=small_vocab)
    torch.manual_seed(0)
    model = transformers.Gemma4ForConditionalGeneration(cfg).eval()
    gen = torch.Generator().manual_seed(6)
    shapes = [(6, 6), (3, 6), (6, 9), (3, 3), (6, 3)]  # patches; 3x3 pooling -> h*w/9 tokens
    images = [gemma4_image(h, w, 54, gen) for h, w in shapes]
    boi, eoi = (1, 3) if small_vocab else (cfg.boi_token_id, cfg.eoi_token_id)
    blocks = [[boi] + [cfg.image_token_id] * (h * w // 9) + [eoi] for h, w in shapes]
    ids = _image_sequences(blocks, 24, gen)
    batch = {
        "input_ids": ids,
        "pixel_values": torch.stack([p for p, _ in images]),
        "image_position_ids": torch.stack([q for _, q in images]),
        "n_images_per_sample": torch.tensor(IMAGE_COUNTS),
        "mm_token_type_ids": (ids == cfg.image_token_id).long(),
    }
    keys = ("input_ids", "pixel_values", "image_position_ids", "mm_token_type_ids")
    return Case("gemma4_vlm" + ("" if small_vocab else "_family_vocab"), model, batch, keys, 2)


def build_mistral3(small_vocab: bool = True) -> Case:
    cfg = family_config("mistralai/Mistral-Small-3.1-24B-Instruct-2503")
    if small_vocab:
        cfg.text_config.vocab_size = SMALL_VOCAB
    torch.manual_seed(0)
    model = transformers.Mistral3ForConditionalGeneration(cfg).eval()
    gen = torch.Generator().manual_seed(7)
    sizes = [(56, 56), (28, 56), (56, 28), (28, 28), (56, 56)]  # pixels; 14px patches, 2x2 merge
    pixel_values = torch.zeros(len(sizes), 3, 56, 56)
    for i, (h, w) in enumerate(sizes):
        pixel_values[i, :, :h, :w] = torch.randn(3, h, w, generator=gen)
    blocks = [[cfg.image_token_id] * ((h // 28) * (w // 28)) for h, w in sizes]
    ids = _image_sequences(blocks, 20, gen)
    batch = {
        "input_ids": ids,
        "pixel_values": pixel_values,
        "image_sizes": torch.tensor(sizes),
        "n_images_per_sample": torch.tensor(IMAGE_COUNTS),
    }
    return Case(
        "mistral3" + ("" if small_vocab else "_family_vocab"),
        model,
        batch,
        ("input_ids", "pixel_values", "image_sizes"),
        2,
    )


BUILDERS: dict[str, Callable[[], Case]] = {
    "llama": build_llama,
    "qwen2": build_qwen2,
    "qwen2_5_vl": build_qwen2_5_vl,
    "qwen3_vl": build_qwen3_vl,
    "gemma3_text": build_gemma3_text,
    "gemma3_vlm": lambda: build_gemma3_vlm(token_type_ids=False),
    "gemma3_vlm_bidir": build_gemma3_vlm,
    "gemma4_text": build_gemma4_text,
    "gemma4_vlm": build_gemma4_vlm,
    "mistral3": build_mistral3,
}

# The family configs exactly as shipped (full vocabularies), checked once each.
FAMILY_VOCAB_BUILDERS: dict[str, Callable[[], Case]] = {
    "qwen2_5_vl_family_vocab": lambda: build_qwen2_5_vl(small_vocab=False),
    "gemma3_vlm_bidir_family_vocab": lambda: build_gemma3_vlm(small_vocab=False),
    "gemma4_vlm_family_vocab": lambda: build_gemma4_vlm(small_vocab=False),
    "mistral3_family_vocab": lambda: build_mistral3(small_vocab=False),
}


def reference_logits(case: Case) -> torch.Tensor:
    return case.model(**{k: case.batch[k] for k in case.ref_kwargs}).logits


def staged_forward(stages: list[torch.nn.Module], batch: dict[str, Any], n_microbatches: int) -> torch.Tensor:
    """Run ``stages`` one after the other on each microbatch, splitting tensors like torch PP does.

    ``batch`` is a PP batch (``prepare_vlm_media_for_pp`` output after ``stage_vlm_media_for_pp``):
    every tensor is split with ``torch.tensor_split(x, n, dim=0)``, ``input_ids`` goes positionally to
    stage 0 and each stage's output positionally to the next; the other tensors go as kwargs to every
    stage. HF-layout ``position_ids [3, B, L]`` are dropped (the stages get ``mrope_position_ids``).
    """
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    if tensors.get("position_ids") is not None and tensors["position_ids"].ndim == 3:
        tensors.pop("position_ids")
    split = {k: torch.tensor_split(v, n_microbatches, dim=0) for k, v in tensors.items()}
    outputs = []
    for mb in range(n_microbatches):
        kwargs = {k: v[mb] for k, v in split.items()}
        x = kwargs.pop("input_ids")
        for stage in stages:
            x = stage(x, **kwargs)
        outputs.append(x)
    return torch.cat(outputs)
