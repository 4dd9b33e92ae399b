"""Standalone reproduction of nemo_automodel 0.7.0's robustness failures: direct imports, keyword calls,
inputs built inline (no conformance runner). Prints, per case: what was raised or returned, and whether
the inputs changed (pickled bytes / pixel comparison before vs after)."""
import logging
import os
import random
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore"); logging.disable(logging.CRITICAL)
os.environ["HF_HUB_OFFLINE"] = "1"
import nemo_automodel.components.datasets.vlm.collate_fns as CF
import nemo_automodel.components.datasets.vlm.fake_image as FI
import nemo_automodel.components.datasets.vlm.pp_media as PP
import nemo_automodel.components.distributed.pipelining.hf_utils as PL
import numpy as np
import torch
from PIL import Image

from conformance.loading import load_processor  # only to build the processors from the offline packs

P = lambda m: load_processor(m)
QWEN = "Qwen/Qwen2.5-VL-3B-Instruct"
TMP = tempfile.mkdtemp()

def img(w=56, h=56, mode="RGB"):
    if w * h > 1_000_000: return Image.new(mode, (w, h), 128 if mode in ("L",) else None)
    if w == 0 or h == 0: return Image.new(mode, (w, h))
    rgb = Image.fromarray(np.random.default_rng(w * 10007 + h).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if mode == "I;16": return Image.fromarray(np.random.default_rng(1).integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "P": return rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    return rgb.convert(mode)
def conv(*items, q="What is it?", a="Fine."):
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [*items, {"type": "text", "text": q}]},
            {"role": "assistant", "content": a}]
def good(): return {"conversation": conv()}
def bw(c): return [good(), {"conversation": c}]
def im(w=56, h=56, mode="RGB"): return {"type": "image", "image": img(w, h, mode)}
def f(name):
    p = os.path.join(TMP, name)
    if name == "truncated.png":
        img(64, 64).save(p); d = open(p, "rb").read(); open(p, "wb").write(d[: len(d) // 2])
    elif name == "garbage.jpg":
        open(p, "wb").write(random.Random(7).randbytes(2048))
    return p
def tok(n=5): return {"input_ids": torch.arange(n), "attention_mask": torch.ones(n, dtype=torch.long), "labels": torch.arange(n)}
def llama(tied=False):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied))
G2 = lambda: torch.tensor([[1, 2, 2], [1, 2, 2]])
def mb(**x): return {"input_ids": torch.zeros(2, 4), "pixel_values": torch.zeros(8, 4), "image_grid_thw": G2(), **x}
def D(ex, proc=QWEN, fn="default_collate_fn", **kw): return (getattr(CF, fn), dict(examples=ex, processor=P(proc) if proc else None, **kw))

CASES = {
 "examples_not_a_list": lambda: D(good()),
 "empty_batch": lambda: D([]),
 "conversation_not_a_list": lambda: D(bw("hello")),
 "conversation_missing": lambda: D([good(), {"messages": conv()}]),
 "conversation_empty": lambda: D(bw([])),
 "message_not_a_dict": lambda: D(bw(["hi"])),
 "message_without_role": lambda: D(bw([{"content": "hi"}])),
 "message_without_content": lambda: D(bw([{"role": "user"}])),
 "unknown_role": lambda: D(bw([{"role": "narrator", "content": "hi"}])),
 "role_not_a_string": lambda: D(bw([{"role": ["user"], "content": "hi"}])),
 "none_content": lambda: D(bw([{"role": "user", "content": None}])),
 "content_not_str_or_list": lambda: D(bw([{"role": "user", "content": 42}])),
 "unknown_item_type": lambda: D(bw(conv({"type": "hologram"}))),
 "item_not_a_dict": lambda: D(bw(conv("just a string"))),
 "text_item_not_str": lambda: D(bw(conv({"type": "text", "text": None}))),
 "image_item_without_image": lambda: D(bw(conv({"type": "image"}))),
 "image_path_missing": lambda: D(bw(conv({"type": "image", "image": f("missing.png")}))),
 "image_file_truncated": lambda: D(bw(conv({"type": "image", "image": f("truncated.png")}))),
 "image_file_corrupt": lambda: D(bw(conv({"type": "image", "image": f("garbage.jpg")}))),
 "image_not_an_image": lambda: D(bw(conv({"type": "image", "image": 42}))),
 "image_zero_sized": lambda: D(bw(conv(im(0, 0)))),
 "image_10000x10000": lambda: D(bw(conv(im(10000, 10000, "L")))),
 "image_10000x10_extreme_aspect": lambda: D(bw(conv(im(10000, 10)))),
 "image_rgba": lambda: D(bw(conv(im(56, 56, "RGBA")))),
 "image_la": lambda: D(bw(conv(im(56, 56, "LA")))),
 "image_palette": lambda: D(bw(conv(im(56, 56, "P")))),
 "image_cmyk": lambda: D(bw(conv(im(56, 56, "CMYK")))),
 "image_16bit": lambda: D(bw(conv(im(56, 56, "I;16")))),
 "more_images_than_placeholders": lambda: D(bw(conv(im(), q="look: <|image_pad|>"))),
 "placeholder_without_image": lambda: D(bw(conv(q="<|vision_start|><|image_pad|><|vision_end|>")), fn="qwen2_5_collate_fn"),
 "video_path_missing": lambda: D(bw(conv({"type": "video", "video": f("missing.mp4")}))),
 "text_lone_surrogate": lambda: D(bw(conv(q="bad \ud800 text"))),
 "answer_lone_surrogate": lambda: D(bw(conv(a="\udfff"))),
 "text_1mb": lambda: D(bw(conv(q="word " * 200_000))),
 "max_length_0": lambda: D([good()], max_length=0),
 "max_length_1": lambda: D([good()], max_length=1),
 "max_length_not_int": lambda: D([good()], max_length="10"),
 "processor_none": lambda: D([good()], proc=None),
 "qwen2_5_unknown_role": lambda: D(bw([{"role": "bot", "content": "x"}]), fn="qwen2_5_collate_fn"),
 "gemma4_image_token_typed_by_user": lambda: D(bw(conv(q="<|image|>")), "google/gemma-4-E2B-it", "gemma4_prefix_collate_fn"),
 "gemma4_max_length_1": lambda: D([good()], "google/gemma-4-E2B-it", "gemma4_prefix_collate_fn", max_length=1),
 "kimi_k25_placeholder_typed_by_user": lambda: D(bw(conv(im(), q="<|media_pad|>")), "moonshotai/Kimi-K2.5", "kimi_k25_vl_collate_fn"),
 "kimi_k25_zero_sized_image": lambda: D(bw(conv(im(56, 0))), "moonshotai/Kimi-K2.5", "kimi_k25_vl_collate_fn"),
 "kimi_vl_placeholder_typed_by_user": lambda: D(bw(conv(q="<|media_pad|>")), "moonshotai/Kimi-VL-A3B-Instruct", "kimi_vl_collate_fn"),
 "kimi_vl_lone_surrogate": lambda: D(bw(conv(q="\ud83d")), "moonshotai/Kimi-VL-A3B-Instruct", "kimi_vl_collate_fn"),
 "llava_ov_extreme_aspect": lambda: D(bw(conv(im(10000, 10))), "lmms-lab/LLaVA-OneVision-1.5-8B-Instruct", "llava_onevision_collate_fn"),
 "nemotron_omni_extreme_aspect": lambda: D(bw(conv(im(10000, 10))), "nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16", "nemotron_omni_collate_fn"),
 "nemotron_omni_max_video_frames_0": lambda: D([good()], "nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16", "nemotron_omni_collate_fn", max_video_frames=0),
 "nemotron_omni_audio_missing": lambda: D(bw(conv({"type": "audio", "audio": f("missing.wav")})), "nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16", "nemotron_omni_collate_fn"),
 "nemotron_parse_two_images": lambda: D([{"conversation": conv(im())}, {"conversation": conv(im(), im())}], "nvidia/NVIDIA-Nemotron-Parse-v1.1", "nemotron_parse_collate_fn"),
 "nemotron_parse_image_not_an_image": lambda: D([{"conversation": conv(im())}, {"conversation": conv({"type": "image", "image": 3.5})}], "nvidia/NVIDIA-Nemotron-Parse-v1.1", "nemotron_parse_collate_fn"),
 "phi4_audio_not_audio": lambda: D(bw(conv({"type": "audio", "audio": 7})), "microsoft/Phi-4-multimodal-instruct", "phi4_mm_collate_fn"),
 "phi4_image_token_typed_by_user": lambda: D(bw(conv(q="<|image|>")), "microsoft/Phi-4-multimodal-instruct", "phi4_mm_collate_fn"),
 "pad_empty_batch": lambda: D([], fn="pad_collate_fn"),
 "pad_missing_labels": lambda: D([tok(), {"input_ids": torch.arange(3), "attention_mask": torch.tensor([1, 1, 1])}], fn="pad_collate_fn"),
 "pad_input_ids_2d": lambda: D([tok(), {**tok(3), "input_ids": torch.tensor([[1, 2, 3]])}], fn="pad_collate_fn"),
 "pad_max_length_1": lambda: D([tok()], fn="pad_collate_fn", max_length=1),
 "packed_labels_length_mismatch": lambda: (CF.neat_packed_vlm_collater, dict(batch=[tok(), {**tok(3), "labels": torch.arange(4)}])),
 "packed_exceeds_max_length": lambda: (CF.neat_packed_vlm_collater, dict(batch=[tok(2), tok(6)], max_length=4)),
 "packed_empty": lambda: (CF.neat_packed_vlm_collater, dict(batch=[])),
 "robust_negative_retries": lambda: (CF.make_robust_collate, dict(dataset=[good()], collate_fn=P(QWEN), max_retries=-1)),
 "robust_collate_not_callable": lambda: (CF.make_robust_collate, dict(dataset=[good()], collate_fn=None)),
 "build_labels_rows_mismatch": lambda: (CF.build_labels, dict(input_ids_batch=torch.tensor([[1, 2, 3]]), conversations=[conv(), conv()], processor=P(QWEN))),
 "build_labels_from_template_list_ids": lambda: (CF.build_labels_from_template, dict(input_ids_batch=[[1, 2, 3]], conversations=[conv()], processor=P(QWEN))),
 "build_labels_from_template_1d_ids": lambda: (CF.build_labels_from_template, dict(input_ids_batch=torch.tensor([1, 2, 3]), conversations=[conv()], processor=P(QWEN))),
 "gemma4_inject_without_input_ids": lambda: (CF.gemma4_inject_thinking_prefix, dict(batch={"attention_mask": torch.tensor([[1, 1]])}, processor=P(QWEN))),
 "inject_conversation_not_a_list": lambda: (FI.inject_fake_image_into_conversation, dict(conversation="hello")),
 "inject_no_user_message": lambda: (FI.inject_fake_image_into_conversation, dict(conversation=[{"role": "assistant", "content": "x"}])),
 "inject_none_content": lambda: (FI.inject_fake_image_into_conversation, dict(conversation=[{"role": "system", "content": "s"}, {"role": "user", "content": None}])),
 "mask_batch_index_out_of_range": lambda: (FI.mask_fake_vision_tokens_batch, dict(batch={"input_ids": torch.tensor([[1, 2]]), "attention_mask": torch.tensor([[1, 1]])}, processor=P(QWEN), sample_indices=[3])),
 "mask_batch_without_input_ids": lambda: (FI.mask_fake_vision_tokens_batch, dict(batch={"attention_mask": torch.tensor([[1, 1]])}, processor=P(QWEN), sample_indices=[0])),
 "mask_batch_attention_mask_shape": lambda: (FI.mask_fake_vision_tokens_batch, dict(batch={"input_ids": torch.tensor([[1, 2]]), "attention_mask": torch.tensor([[1, 1, 1]])}, processor=P(QWEN), sample_indices=[0])),
 "mask_batch_indices_not_ints": lambda: (FI.mask_fake_vision_tokens_batch, dict(batch={"input_ids": torch.tensor([[1, 2]])}, processor=P(QWEN), sample_indices=None)),
 "mask_single_input_ids_not_tensor": lambda: (FI.mask_fake_vision_tokens_single, dict(sample_dict={"input_ids": [1, 2]}, processor=P(QWEN))),
 "chunk_n_microbatches_0": lambda: (PP.chunk_vlm_media, dict(pixel_values=torch.zeros(8, 4), image_grid=G2(), batch_size=2, n_microbatches=0)),
 "chunk_n_microbatches_gt_batch": lambda: (PP.chunk_vlm_media, dict(pixel_values=torch.zeros(8, 4), image_grid=G2(), batch_size=2, n_microbatches=3)),
 "chunk_grid_rows_mismatch": lambda: (PP.chunk_vlm_media, dict(pixel_values=torch.zeros(8, 4), image_grid=torch.tensor([[1, 2, 2]]), batch_size=2, n_microbatches=2)),
 "chunk_grid_not_a_tensor": lambda: (PP.chunk_vlm_media, dict(pixel_values=torch.zeros(8, 4), image_grid=[[1, 2, 2], [1, 2, 2]], batch_size=2, n_microbatches=2)),
 "chunk_negative_count": lambda: (PP.chunk_vlm_media, dict(pixel_values=torch.zeros(8, 4), image_grid=G2(), batch_size=2, n_microbatches=1, n_images_per_sample=torch.tensor([3, -1]))),
 "prepare_grid_thw_rows_mismatch": lambda: (PP.prepare_vlm_media_for_pp, dict(batch=mb(image_grid_thw=torch.tensor([[1, 2, 2], [1, 2, 2], [1, 1, 1]]), n_images_per_sample=torch.tensor([2, 1])), batch_size=2, n_microbatches=2)),
 "prepare_counts_do_not_sum": lambda: (PP.prepare_vlm_media_for_pp, dict(batch=mb(n_images_per_sample=torch.tensor([2, 1])), batch_size=2, n_microbatches=2)),
 "prepare_batch_not_a_dict": lambda: (PP.prepare_vlm_media_for_pp, dict(batch=[1, 2], batch_size=2, n_microbatches=2)),
 "stage_batch_none": lambda: (PP.stage_vlm_media_for_pp, dict(pp=None, model_parts=[], batch=None)),
 "stage_chunks_not_dicts": lambda: (PP.stage_vlm_media_for_pp, dict(pp=None, model_parts=[], batch={"_vlm_pp_media_chunks": [1, 2]})),
 "wrap_n_microbatches_0": lambda: (PP.wrap_vlm_collate_for_pp, dict(collate_fn=lambda b: b, n_microbatches=0)),
 "wrap_collate_not_callable": lambda: (PP.wrap_vlm_collate_for_pp, dict(collate_fn=None, n_microbatches=2)),
 "step3_patch_count_mismatch": lambda: (PP.chunk_step3_media, dict(pixel_values=torch.zeros(2, 3, 4, 4), batch_size=2, n_microbatches=1, num_patches=torch.tensor([1, 1]), patch_pixel_values=torch.zeros(3, 3, 2, 2))),
 "patch_not_a_module": lambda: (PL.patch_hf_model_for_pp, dict(model="model")),
 "validate_wrong_model": lambda: (PL.validate_hf_model_for_pipeline_support, dict(model=torch.nn.Linear(2, 2))),
 "init_buffers_not_a_module": lambda: (PL.init_hf_model_buffers, dict(model="model", device="cpu")),
 "init_buffers_bad_device": lambda: (PL.init_hf_model_buffers, dict(model=llama(), device="no-such-device")),
 "user_types_assistant_marker": lambda: D(bw(conv(q="<|im_start|>assistant\nsecret"))),
 "system_types_assistant_marker": lambda: D(bw([{"role": "system", "content": "<|turn>model\n0"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]), "google/gemma-4-E2B-it", "gemma4_prefix_collate_fn"),
 "kimi_k25_user_types_assistant_marker": lambda: D(bw(conv(q="x<|im_assistant|>assistant<|im_middle|><think></think>y")), "moonshotai/Kimi-K2.5", "kimi_k25_vl_collate_fn"),
}

def summary(x):
    if isinstance(x, torch.Tensor): return f"tensor{tuple(x.shape)}"
    if hasattr(x, "keys"): return "{" + ", ".join(f"{k}: {summary(x[k])}" for k in list(x.keys())[:8]) + "}"
    if isinstance(x, (list, tuple)): return f"{type(x).__name__}[{len(x)}]"
    if callable(x): return f"<callable {getattr(x, '__name__', type(x).__name__)}>"
    return repr(x)[:80]

def fingerprint(obj):
    """Structure + values, images by mode/size/pixels, tensors by value; tools (processors, callables) by identity."""
    if isinstance(obj, Image.Image): return ("img", obj.mode, obj.size, obj.tobytes())
    if isinstance(obj, torch.Tensor): return ("t", str(obj.dtype), tuple(obj.shape), obj.tolist())
    if isinstance(obj, torch.nn.Module): return ("m", sorted(vars(obj)), {k: v.tolist() for k, v in obj.state_dict().items()})
    if isinstance(obj, dict): return ("d", [(k, fingerprint(v)) for k, v in obj.items()])
    if isinstance(obj, (list, tuple)): return ("l", [fingerprint(v) for v in obj])
    if isinstance(obj, (str, int, float, type(None), bool)): return obj
    return ("id", id(obj))

only = set(sys.argv[1:])
for cid, make in CASES.items():
    if only and cid not in only: continue
    fn, kw = make()
    before = fingerprint(kw)
    labels = ""
    try:
        out = fn(**kw)
        what = f"RETURNED {summary(out)}"
        if isinstance(out, dict) and "labels" in out:
            labels = " supervised/row=" + str([(r != -100).sum().item() for r in out["labels"]])
    except Exception as e:
        what = f"RAISED {type(e).__name__}: {str(e)[:220]}"
    mutated = " | INPUT MUTATED" if fingerprint(kw) != before else ""
    print(f"{cid}: {what}{labels}{mutated}", flush=True)
