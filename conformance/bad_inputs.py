"""The bad-input table, as data: one dict per case, run by ``conformance/robustness.py``.

Each case names a documented entry point as ``documented_module:name`` (resolved through
``conformance.impl``, so it judges whichever implementation is active), its arguments as ``kwargs``
— always by the documented parameter names: the pages document every parameter positional-or-keyword,
so a keyword call is the form every conforming implementation accepts — and the expected outcome:

- ``"raises": "ValueError" | "TypeError"`` with ``"match"``: substrings the message must contain
  (the sample index and the field wherever the input has samples, else the argument's name);
- ``"ok": {...}``: handled as documented (e.g. an RGBA image is converted to RGB: ``_ensure_rgb``); the
  batch must satisfy the label contract and carry the given number of images per sample.

A ``raises`` case may also carry ``"page_allows"``: another outcome that the function's API page permits
for this very input, with the page's words (``"page"``). The error is then not the only pass: the
documented handling counts too. Outcomes (``"outcome"``), each judged strictly by the runner:

- ``"noop"``: returns normally and every input is unchanged — without the ``DOCUMENTED_IN_PLACE``
  exemption, since the documented effect on this input is empty; with ``"returns_arg": name``, the
  return value must equal that argument;
- ``"batch"``: returns a batch that satisfies the label contract (as an ``ok`` case);
- ``"fake_image_conversation"``: returns a new conversation whose first user message holds one fake
  image (the page's 56x56 white image) besides its own content, every other message unchanged (a
  conversation without a user message gets one user message holding only the fake image);
- ``"deferred"``: returns a callable (the page's return type) that raises the case's error — same
  type, same ``match`` — when first called with ``"args"`` (positional, built like ``kwargs``).

The conformance check (``conformance/test_robustness.py``) accepts these outcomes; vlmspec's own unit
test (``tests/test_bad_inputs.py``) does not: vlmspec keeps raising the error.

A case with ``"then": {"args": [...]}`` judges the callable its function returns: the runner calls it
with ``args`` (positional), and ``raises``/``ok`` apply to that call.

In every case the inputs must be unchanged afterwards (deep comparison; PIL images by pixels).

Values are literals; a dict with a single ``$``-key is built by the runner:

- ``{"$processor": name}``: the conformance registry's processor for ``PROCESSORS[name]``
  (``conformance.loading.load_processor``: the model's offline pack);
- ``{"$image": [w, h, mode]}``: a PIL image with deterministic pixels;
- ``{"$file": name}``: a path in a temp dir: ``missing.png``, ``missing.mp4``, ``missing.wav`` (never
  created), ``truncated.png`` (half of a valid PNG), ``garbage.jpg`` (random bytes);
- ``{"$repeat": [text, n]}``: ``text * n``;
- ``{"$tensor": nested_list}``, ``{"$zeros": shape}`` (float32), ``{"$arange": n}`` (long);
- ``{"$model": "linear" | "llama" | "llama_tied"}``: a torch module (a tiny random LlamaForCausalLM);
- ``{"$callable": "identity"}``: ``lambda batch: batch``.
"""

from __future__ import annotations

from typing import Any

QWEN = {"$processor": "qwen25"}

# Which registered model's processor each "$processor" name loads.
PROCESSORS = {
    "qwen25": "Qwen/Qwen2.5-VL-3B-Instruct",
    "phi4": "microsoft/Phi-4-multimodal-instruct",
    "qwen3_omni": "Qwen/Qwen3-Omni-30B-A3B-Instruct",
    "kimi_k25": "moonshotai/Kimi-K2.5",
    "kimi_vl": "moonshotai/Kimi-VL-A3B-Instruct",
    "llava_onevision": "lmms-lab/LLaVA-OneVision-1.5-8B-Instruct",
    "nemotron_omni": "nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16",
    "nemotron_parse": "nvidia/NVIDIA-Nemotron-Parse-v1.1",
    "gemma4": "google/gemma-4-E2B-it",
}


# Arguments a documented function modifies in place by its page: exempt from the unchanged-inputs rule
# after a call that returns normally (a call that raises must still leave every input unchanged).
DOCUMENTED_IN_PLACE: dict[str, tuple[str, ...]] = {
    # "Move VLM media tensors into pre-chunked PP media storage on the batch."
    "pp_media:prepare_vlm_media_for_pp": ("batch",),
    # "Attach dataloader-prepared VLM media chunks to PP stage 0 for one schedule call."
    "pp_media:stage_vlm_media_for_pp": ("model_parts",),
    # "Sets attention_mask = 0 for every vision token in the given sample_indices of the batch."
    "fake_image:mask_fake_vision_tokens_batch": ("batch",),
    # "Sets attention_mask = 0 for every vision token in sample_dict."
    "fake_image:mask_fake_vision_tokens_single": ("sample_dict",),
    # "Patch a HF model/module to produce pipeline-compatible forward."
    "pipelining:patch_hf_model_for_pp": ("model",),
    # "Initialize HuggingFace model buffers needed before pipeline execution."
    "pipelining:init_hf_model_buffers": ("model",),
}


def text(t: str) -> dict:
    return {"type": "text", "text": t}


def image(w: int = 56, h: int = 56, mode: str = "RGB") -> dict:
    return {"type": "image", "image": {"$image": [w, h, mode]}}


def conv(*items: dict, question: str = "What is it?", answer: str = "Fine.") -> list[dict]:
    """system / user (items + question) / assistant: the message indices are 0, 1, 2."""
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [*items, text(question)]},
        {"role": "assistant", "content": answer},
    ]


def good() -> dict:
    return {"conversation": conv()}


def batch_with(bad_conversation: Any) -> list[dict]:
    """A good sample 0 and the bad sample 1: every message must name sample 1."""
    return [good(), {"conversation": bad_conversation}]


def tokenized(n: int = 5) -> dict:
    return {"input_ids": {"$arange": n}, "attention_mask": {"$tensor": [1] * n}, "labels": {"$arange": n}}


def collate(name: str, processor: dict | None, examples: Any, **kwargs: Any) -> dict:
    """A documented collate, ``name(examples=..., processor=..., **kwargs)``."""
    return {"entry": f"collate_fns:{name}", "kwargs": {"examples": examples, "processor": processor, **kwargs}}


def call(entry: str, **kwargs: Any) -> dict:
    return {"entry": entry, "kwargs": kwargs}


def raises(exc: str, *match: str) -> dict:
    return {"raises": exc, "match": list(match)}


def ok(n_images: list[int] | None = None) -> dict:
    return {"ok": {"n_images_per_sample": n_images}}


PAGE_OUTCOMES = ("noop", "batch", "fake_image_conversation", "deferred")


def page_allows(outcome: str, page: str, **details: Any) -> dict:
    """Besides the error, the outcome the function's page permits for this input (``page``: its words)."""
    return {"page_allows": {"outcome": outcome, "page": page, **details}}


D = "default_collate_fn"
S1 = "sample 1"
_M1 = "conversation[1]"  # the user message of conv()
GRID2 = {"$tensor": [[1, 2, 2], [1, 2, 2]]}
PP = "pp_media"
PL = "pipelining"
FI = "fake_image"
CF = "collate_fns"


# The pages' words for the outcomes they permit besides the error (``page_allows``).
_OMNI_PAGE = (
    "nemotron_omni_collate_fn(examples, processor, max_length: Optional[int] = None, max_video_frames: int = 8): "
    "'Collate for NemotronOmni (image / video / audio). Defers <image>/<video>/<audio> placeholder expansion "
    "to the processor; the collate only gathers media into processor kwargs, pads, builds labels, and stacks "
    "tensors.' No range is given for max_video_frames, and this batch has no video for it to limit."
)
_INJECT_PAGE = (
    "inject_fake_image_into_conversation: 'Inject a fake image into a single conversation's first user "
    "message. Returns a deep-copied conversation so the original is never mutated.' Module: 'inject a tiny "
    "(56x56) white image into pure-text samples ... labels = -100 (automatic, because the fake image lives "
    "in a *user* message, never an assistant turn)'."
)
_MASK_BATCH_PAGE = (
    "mask_fake_vision_tokens_batch: 'Mask vision tokens in specified batch samples (2D tensors). Sets "
    "attention_mask = 0 for every vision token in the given sample_indices of the batch.' Here no sample "
    "index is given, the batch has no attention_mask and ids [1, 2] hold no vision token: nothing to set."
)
_MASK_SINGLE_PAGE = (
    "mask_fake_vision_tokens_single: 'Sets attention_mask = 0 for every vision token in sample_dict.' "
    "Here sample_dict has no attention_mask and ids [1, 2] hold no vision token: nothing to set."
)
_WRAP_PAGE = (
    "wrap_vlm_collate_for_pp(collate_fn, n_microbatches) -> Callable[[Any], MutableMapping[str, Any]]: "
    "'Wrap a VLM collate function so it prepares media tensors for PP.' The preparation (and so the check "
    "of n_microbatches) may happen when the wrapper runs; prepare_vlm_media_for_pp is the documented step."
)
_GEMMA4_INJECT_PAGE = (
    "gemma4_inject_thinking_prefix(batch, processor): 'Inject Gemma4's thinking-channel prefix after "
    "every assistant turn marker. ... Safe no-op for non-Gemma4 tokenizers.' The processor here is "
    "Qwen2.5-VL's."
)
# make_robust_collate: 'Wrap collate_fn so that on failure the entire batch is re-sampled.' max_retries: 'Maximum
# number of retry attempts.' A retry is an attempt after a failure: with 0 retries the wrapper still makes its first
# attempt, and returns what collate_fn returns.
_TOKENIZED_BATCH = {
    "input_ids": {"$tensor": [[5, 6, 7]]},
    "attention_mask": {"$tensor": [[1, 1, 1]]},
    "labels": {"$tensor": [[6, 7, -100]]},
}


def _media_batch(**extra: Any) -> dict:
    return {"input_ids": {"$zeros": [2, 4]}, "pixel_values": {"$zeros": [8, 4]}, "image_grid_thw": GRID2, **extra}


CASES: list[dict] = [
    # ------------------------------------------------------------ structure (default collate, real Qwen2.5-VL)
    {"id": "examples_not_a_list", **collate(D, QWEN, good()), **raises("TypeError", "examples", "dict")},
    {"id": "empty_batch", **collate(D, QWEN, []), **raises("ValueError", "empty batch")},
    {
        "id": "conversation_not_a_list",
        **collate(D, QWEN, batch_with("hello")),
        **raises("TypeError", S1, "'conversation'"),
    },
    {
        "id": "conversation_missing",
        **collate(D, QWEN, [good(), {"messages": conv()}]),
        **raises("ValueError", S1, "'conversation'", "missing"),
    },
    {
        "id": "conversation_empty",
        **collate(D, QWEN, batch_with([])),
        **raises("ValueError", S1, "'conversation'", "no messages"),
    },
    {"id": "message_not_a_dict", **collate(D, QWEN, batch_with(["hi"])), **raises("TypeError", S1, "conversation[0]")},
    {
        "id": "message_without_role",
        **collate(D, QWEN, batch_with([{"content": "hi"}])),
        **raises("ValueError", S1, "conversation[0].role", "missing"),
    },
    {
        "id": "message_without_content",
        **collate(D, QWEN, batch_with([{"role": "user"}])),
        **raises("ValueError", S1, "conversation[0].content", "missing"),
    },
    {
        "id": "unknown_role",
        **collate(D, QWEN, batch_with([{"role": "narrator", "content": "hi"}])),
        **raises("ValueError", S1, "conversation[0].role", "narrator"),
    },
    {
        "id": "role_not_a_string",
        **collate(D, QWEN, batch_with([{"role": ["user"], "content": "hi"}])),
        **raises("TypeError", S1, "conversation[0].role"),
    },
    {
        "id": "none_content",
        **collate(D, QWEN, batch_with([{"role": "user", "content": None}])),
        **raises("ValueError", S1, "conversation[0].content", "None"),
    },
    {
        "id": "content_not_str_or_list",
        **collate(D, QWEN, batch_with([{"role": "user", "content": 42}])),
        **raises("TypeError", S1, "conversation[0].content"),
    },
    {
        "id": "unknown_item_type",
        **collate(D, QWEN, batch_with(conv({"type": "hologram"}))),
        **raises("ValueError", S1, f"{_M1}.content[0].type", "hologram"),
    },
    {
        "id": "item_not_a_dict",
        **collate(D, QWEN, batch_with(conv("just a string"))),
        **raises("TypeError", S1, f"{_M1}.content[0]"),
    },
    {
        "id": "text_item_not_str",
        **collate(D, QWEN, batch_with(conv({"type": "text", "text": None}))),
        **raises("TypeError", S1, f"{_M1}.content[0].text"),
    },
    # ------------------------------------------------------------ images
    {
        "id": "image_item_without_image",
        **collate(D, QWEN, batch_with(conv({"type": "image"}))),
        **raises("ValueError", S1, f"{_M1}.content[0].image"),
    },
    {
        "id": "image_path_missing",
        **collate(D, QWEN, batch_with(conv({"type": "image", "image": {"$file": "missing.png"}}))),
        **raises("ValueError", S1, f"{_M1}.content[0].image", "does not exist"),
    },
    {
        "id": "image_file_truncated",
        **collate(D, QWEN, batch_with(conv({"type": "image", "image": {"$file": "truncated.png"}}))),
        **raises("ValueError", S1, "'image'", "cannot decode"),
    },
    {
        "id": "image_file_corrupt",
        **collate(D, QWEN, batch_with(conv({"type": "image", "image": {"$file": "garbage.jpg"}}))),
        **raises("ValueError", S1, "'image'", "cannot decode"),
    },
    {
        "id": "image_not_an_image",
        **collate(D, QWEN, batch_with(conv({"type": "image", "image": 42}))),
        **raises("TypeError", S1, f"{_M1}.content[0].image", "int"),
    },
    {
        "id": "image_zero_sized",
        **collate(D, QWEN, batch_with(conv(image(0, 0)))),
        **raises("ValueError", S1, f"{_M1}.content[0].image", "zero-sized"),
    },
    {"id": "image_1x1", **collate(D, QWEN, batch_with(conv(image(1, 1)))), **ok([0, 1])},
    {"id": "image_10000x10000", **collate(D, QWEN, batch_with(conv(image(10000, 10000, "L")))), **ok([0, 1])},
    {
        "id": "image_10000x10_extreme_aspect",
        **collate(D, QWEN, batch_with(conv(image(10000, 10)))),
        **raises("ValueError", S1, "'conversation'", "aspect ratio"),
    },
    {"id": "image_rgba", **collate(D, QWEN, batch_with(conv(image(56, 56, "RGBA")))), **ok([0, 1])},
    {"id": "image_la", **collate(D, QWEN, batch_with(conv(image(56, 56, "LA")))), **ok([0, 1])},
    {"id": "image_palette", **collate(D, QWEN, batch_with(conv(image(56, 56, "P")))), **ok([0, 1])},
    {"id": "image_cmyk", **collate(D, QWEN, batch_with(conv(image(56, 56, "CMYK")))), **ok([0, 1])},
    {"id": "image_16bit", **collate(D, QWEN, batch_with(conv(image(56, 56, "I;16")))), **ok([0, 1])},
    {
        "id": "more_images_than_placeholders",
        **collate(D, QWEN, batch_with(conv(image(), question="look: <|image_pad|>"))),
        **raises("ValueError", S1, "'conversation'", "<|image_pad|>"),
    },
    {
        "id": "placeholder_without_image",
        **collate("qwen2_5_collate_fn", QWEN, batch_with(conv(question="<|vision_start|><|image_pad|><|vision_end|>"))),
        **raises("ValueError", S1, "'conversation'", "no images"),
    },
    # ------------------------------------------------------------ video / text
    {
        "id": "video_path_missing",
        **collate(D, QWEN, batch_with(conv({"type": "video", "video": {"$file": "missing.mp4"}}))),
        **raises("ValueError", S1, f"{_M1}.content[0].video", "does not exist"),
    },
    {"id": "text_with_nul_bytes", **collate(D, QWEN, batch_with(conv(question="a\x00b\x00", answer="c\x00d"))), **ok()},
    {
        "id": "text_lone_surrogate",
        **collate(D, QWEN, batch_with(conv(question="bad \ud800 text"))),
        **raises("ValueError", S1, f"{_M1}.content[0].text", "Unicode"),
    },
    {
        "id": "answer_lone_surrogate",
        **collate(D, QWEN, batch_with(conv(answer="\udfff"))),
        **raises("ValueError", S1, "conversation[2].content", "Unicode"),
    },
    {"id": "text_1mb", **collate(D, QWEN, batch_with(conv(question={"$repeat": ["word ", 200_000]}))), **ok()},
    # ------------------------------------------------------------ arguments
    {"id": "max_length_0", **collate(D, QWEN, [good()], max_length=0), **raises("ValueError", "max_length", "got 0")},
    {"id": "max_length_1", **collate(D, QWEN, [good()], max_length=1), **raises("ValueError", "max_length", "got 1")},
    {
        "id": "max_length_not_int",
        **collate(D, QWEN, [good()], max_length="10"),
        **raises("TypeError", "max_length", "str"),
    },
    {"id": "processor_none", **collate(D, None, [good()]), **raises("TypeError", "processor", "NoneType")},
    # ------------------------------------------------------------ family collates
    {
        "id": "qwen2_5_unknown_role",
        **collate("qwen2_5_collate_fn", QWEN, batch_with([{"role": "bot", "content": "x"}])),
        **raises("ValueError", S1, "conversation[0].role"),
    },
    {
        "id": "gemma4_image_token_typed_by_user",
        **collate("gemma4_prefix_collate_fn", {"$processor": "gemma4"}, batch_with(conv(question="<|image|>"))),
        **raises("ValueError", S1, "'conversation'", "Gemma4Processor"),
    },
    {
        "id": "gemma4_max_length_1",
        **collate("gemma4_prefix_collate_fn", {"$processor": "gemma4"}, [good()], max_length=1),
        **raises("ValueError", "max_length"),
    },
    {
        "id": "kimi_k25_placeholder_typed_by_user",
        **collate(
            "kimi_k25_vl_collate_fn", {"$processor": "kimi_k25"}, batch_with(conv(image(), question="<|media_pad|>"))
        ),
        **raises("ValueError", S1, "placeholder"),
    },
    {
        "id": "kimi_k25_zero_sized_image",
        **collate("kimi_k25_vl_collate_fn", {"$processor": "kimi_k25"}, batch_with(conv(image(56, 0)))),
        **raises("ValueError", S1, f"{_M1}.content[0].image", "zero-sized"),
    },
    {
        "id": "kimi_vl_placeholder_typed_by_user",
        **collate("kimi_vl_collate_fn", {"$processor": "kimi_vl"}, batch_with(conv(question="<|media_pad|>"))),
        **raises("ValueError", S1, "'conversation'"),
    },
    {
        "id": "kimi_vl_lone_surrogate",
        **collate("kimi_vl_collate_fn", {"$processor": "kimi_vl"}, batch_with(conv(question="\ud83d"))),
        **raises("ValueError", S1, f"{_M1}.content[0].text"),
    },
    {
        "id": "llava_ov_extreme_aspect",
        **collate("llava_onevision_collate_fn", {"$processor": "llava_onevision"}, batch_with(conv(image(10000, 10)))),
        **raises("ValueError", S1, "'conversation'", "aspect ratio"),
    },
    {
        "id": "llava_ov_rgba",
        **collate(
            "llava_onevision_collate_fn", {"$processor": "llava_onevision"}, batch_with(conv(image(64, 40, "RGBA")))
        ),
        **ok([0, 1]),
    },
    {
        "id": "nemotron_omni_extreme_aspect",
        **collate("nemotron_omni_collate_fn", {"$processor": "nemotron_omni"}, batch_with(conv(image(10000, 10)))),
        **raises("ValueError", S1, "'conversation'"),
    },
    {
        "id": "nemotron_omni_max_video_frames_0",
        **collate("nemotron_omni_collate_fn", {"$processor": "nemotron_omni"}, [good()], max_video_frames=0),
        **raises("ValueError", "max_video_frames"),
        **page_allows("batch", _OMNI_PAGE, n_images_per_sample=None),
    },
    {
        "id": "nemotron_omni_audio_missing",
        **collate(
            "nemotron_omni_collate_fn",
            {"$processor": "nemotron_omni"},
            batch_with(conv({"type": "audio", "audio": {"$file": "missing.wav"}})),
        ),
        **raises("ValueError", S1, f"{_M1}.content[0].audio", "does not exist"),
    },
    {
        "id": "nemotron_parse_two_images",
        **collate(
            "nemotron_parse_collate_fn",
            {"$processor": "nemotron_parse"},
            [{"conversation": conv(image())}, {"conversation": conv(image(), image())}],
        ),
        **raises("ValueError", S1, "one page image", "got 2"),
    },
    {
        "id": "nemotron_parse_image_not_an_image",
        **collate(
            "nemotron_parse_collate_fn",
            {"$processor": "nemotron_parse"},
            [{"conversation": conv(image())}, {"conversation": conv({"type": "image", "image": 3.5})}],
        ),
        **raises("TypeError", S1, f"{_M1}.content[0].image"),
    },
    {
        "id": "phi4_audio_not_audio",
        **collate("phi4_mm_collate_fn", {"$processor": "phi4"}, batch_with(conv({"type": "audio", "audio": 7}))),
        **raises("ValueError", S1, f"{_M1}.content[0].audio"),
    },
    {
        "id": "phi4_image_token_typed_by_user",
        **collate("phi4_mm_collate_fn", {"$processor": "phi4"}, batch_with(conv(question="<|image|>"))),
        **raises("ValueError", S1, "'conversation'", "<|image|>"),
    },
    {
        "id": "qwen3_omni_video_missing",
        **collate(
            "qwen3_omni_collate_fn",
            {"$processor": "qwen3_omni"},
            batch_with(conv({"type": "video", "video": {"$file": "missing.mp4"}})),
        ),
        **raises("ValueError", S1, f"{_M1}.content[0].video"),
    },
    {
        "id": "qwen3_omni_extreme_aspect",
        **collate("qwen3_omni_collate_fn", {"$processor": "qwen3_omni"}, batch_with(conv(image(10, 10000)))),
        **raises("ValueError", S1, "'conversation'", "aspect ratio"),
    },
    # ------------------------------------------------------------ pre-tokenized / packing / robust / labels
    {"id": "pad_empty_batch", **collate("pad_collate_fn", QWEN, []), **raises("ValueError", "empty batch")},
    {
        "id": "pad_missing_labels",
        **collate(
            "pad_collate_fn",
            QWEN,
            [tokenized(), {"input_ids": {"$arange": 3}, "attention_mask": {"$tensor": [1, 1, 1]}}],
        ),
        **raises("ValueError", S1, "'labels'"),
    },
    {
        "id": "pad_input_ids_2d",
        **collate("pad_collate_fn", QWEN, [tokenized(), {**tokenized(3), "input_ids": {"$tensor": [[1, 2, 3]]}}]),
        **raises("ValueError", S1, "'input_ids'", "1-D"),
    },
    {
        "id": "pad_max_length_1",
        **collate("pad_collate_fn", QWEN, [tokenized()], max_length=1),
        **raises("ValueError", "max_length"),
    },
    {
        "id": "packed_labels_length_mismatch",
        **call(f"{CF}:neat_packed_vlm_collater", batch=[tokenized(), {**tokenized(3), "labels": {"$arange": 4}}]),
        **raises("ValueError", S1, "'labels'", "4 positions"),
    },
    {
        "id": "packed_exceeds_max_length",
        **call(f"{CF}:neat_packed_vlm_collater", batch=[tokenized(2), tokenized(6)], max_length=4),
        **raises("ValueError", S1, "max_length=4"),
    },
    {"id": "packed_empty", **call(f"{CF}:neat_packed_vlm_collater", batch=[]), **raises("ValueError", "empty batch")},
    {
        "id": "robust_negative_retries",
        **call(f"{CF}:make_robust_collate", dataset=[good()], collate_fn=QWEN, max_retries=-1),
        **raises("ValueError", "max_retries"),
    },
    {
        "id": "robust_collate_not_callable",
        **call(f"{CF}:make_robust_collate", dataset=[good()], collate_fn=None),
        **raises("TypeError", "collate_fn"),
    },
    {
        "id": "robust_zero_retries_one_attempt",
        **call(f"{CF}:make_robust_collate", dataset=[good()], collate_fn={"$callable": "identity"}, max_retries=0),
        "then": {"args": [_TOKENIZED_BATCH]},
        **ok(),
    },
    {
        "id": "build_labels_rows_mismatch",
        **call(
            f"{CF}:build_labels",
            input_ids_batch={"$tensor": [[1, 2, 3]]},
            conversations=[conv(), conv()],
            processor=QWEN,
        ),
        **raises("ValueError", "conversations", "2 entries", "1 rows"),
    },
    {
        "id": "build_labels_from_template_list_ids",
        **call(f"{CF}:build_labels_from_template", input_ids_batch=[[1, 2, 3]], conversations=[conv()], processor=QWEN),
        **raises("TypeError", "input_ids_batch", "list"),
    },
    {
        "id": "build_labels_from_template_1d_ids",
        **call(
            f"{CF}:build_labels_from_template",
            input_ids_batch={"$tensor": [1, 2, 3]},
            conversations=[conv()],
            processor=QWEN,
        ),
        **raises("ValueError", "input_ids_batch", "[B, L]"),
    },
    {
        "id": "gemma4_inject_without_input_ids",
        **call(f"{CF}:gemma4_inject_thinking_prefix", batch={"attention_mask": {"$tensor": [[1, 1]]}}, processor=QWEN),
        **raises("ValueError", "'input_ids'", "missing"),
        **page_allows("noop", _GEMMA4_INJECT_PAGE, returns_arg="batch"),
    },
    # ------------------------------------------------------------ fake image
    {
        "id": "inject_conversation_not_a_list",
        **call(f"{FI}:inject_fake_image_into_conversation", conversation="hello"),
        **raises("TypeError", "conversation", "str"),
    },
    {
        "id": "inject_no_user_message",
        **call(f"{FI}:inject_fake_image_into_conversation", conversation=[{"role": "assistant", "content": "x"}]),
        **raises("ValueError", "no user message"),
        **page_allows("fake_image_conversation", _INJECT_PAGE),
    },
    {
        "id": "inject_none_content",
        **call(
            f"{FI}:inject_fake_image_into_conversation",
            conversation=[{"role": "system", "content": "s"}, {"role": "user", "content": None}],
        ),
        **raises("ValueError", "message 1", "'content'", "None"),
        **page_allows("fake_image_conversation", _INJECT_PAGE),
    },
    {
        "id": "mask_batch_index_out_of_range",
        **call(
            f"{FI}:mask_fake_vision_tokens_batch",
            batch={"input_ids": {"$tensor": [[1, 2]]}, "attention_mask": {"$tensor": [[1, 1]]}},
            processor=QWEN,
            sample_indices=[3],
        ),
        **raises("ValueError", "sample index 3", "batch of 1"),
    },
    {
        "id": "mask_batch_without_input_ids",
        **call(
            f"{FI}:mask_fake_vision_tokens_batch",
            batch={"attention_mask": {"$tensor": [[1, 1]]}},
            processor=QWEN,
            sample_indices=[0],
        ),
        **raises("ValueError", "'input_ids'", "missing"),
    },
    {
        "id": "mask_batch_attention_mask_shape",
        **call(
            f"{FI}:mask_fake_vision_tokens_batch",
            batch={"input_ids": {"$tensor": [[1, 2]]}, "attention_mask": {"$tensor": [[1, 1, 1]]}},
            processor=QWEN,
            sample_indices=[0],
        ),
        **raises("ValueError", "'attention_mask'", "(1, 3)", "(1, 2)"),
    },
    {
        "id": "mask_batch_indices_not_ints",
        **call(
            f"{FI}:mask_fake_vision_tokens_batch",
            batch={"input_ids": {"$tensor": [[1, 2]]}},
            processor=QWEN,
            sample_indices=None,
        ),
        **raises("TypeError", "sample_indices"),
        **page_allows("noop", _MASK_BATCH_PAGE),
    },
    {
        "id": "mask_single_input_ids_not_tensor",
        **call(f"{FI}:mask_fake_vision_tokens_single", sample_dict={"input_ids": [1, 2]}, processor=QWEN),
        **raises("TypeError", "'input_ids'", "list"),
        **page_allows("noop", _MASK_SINGLE_PAGE),
    },
    # ------------------------------------------------------------ PP media
    {
        "id": "chunk_n_microbatches_0",
        **call(
            f"{PP}:chunk_vlm_media", pixel_values={"$zeros": [8, 4]}, image_grid=GRID2, batch_size=2, n_microbatches=0
        ),
        **raises("ValueError", "n_microbatches", "got 0"),
    },
    {
        "id": "chunk_n_microbatches_gt_batch",
        **call(
            f"{PP}:chunk_vlm_media", pixel_values={"$zeros": [8, 4]}, image_grid=GRID2, batch_size=2, n_microbatches=3
        ),
        **raises("ValueError", "n_microbatches=3", "batch_size=2"),
    },
    {
        "id": "chunk_grid_rows_mismatch",
        **call(
            f"{PP}:chunk_vlm_media",
            pixel_values={"$zeros": [8, 4]},
            image_grid={"$tensor": [[1, 2, 2]]},
            batch_size=2,
            n_microbatches=2,
        ),
        **raises("ValueError", "image_grid", "4 patch rows", "8 rows"),
    },
    {
        "id": "chunk_grid_not_a_tensor",
        **call(
            f"{PP}:chunk_vlm_media",
            pixel_values={"$zeros": [8, 4]},
            image_grid=[[1, 2, 2], [1, 2, 2]],
            batch_size=2,
            n_microbatches=2,
        ),
        **raises("TypeError", "image_grid", "list"),
    },
    {
        "id": "chunk_negative_count",
        **call(
            f"{PP}:chunk_vlm_media",
            pixel_values={"$zeros": [8, 4]},
            image_grid=GRID2,
            batch_size=2,
            n_microbatches=1,
            n_images_per_sample={"$tensor": [3, -1]},
        ),
        **raises("ValueError", "n_images_per_sample[1]", "sample 1"),
    },
    {
        "id": "prepare_n_microbatches_0",
        **call(f"{PP}:prepare_vlm_media_for_pp", batch=_media_batch(), batch_size=2, n_microbatches=0),
        **raises("ValueError", "n_microbatches"),
    },
    {
        "id": "prepare_grid_thw_rows_mismatch",
        **call(
            f"{PP}:prepare_vlm_media_for_pp",
            batch=_media_batch(
                image_grid_thw={"$tensor": [[1, 2, 2], [1, 2, 2], [1, 1, 1]]}, n_images_per_sample={"$tensor": [2, 1]}
            ),
            batch_size=2,
            n_microbatches=2,
        ),
        **raises("ValueError", "image_grid_thw", "9 patch rows", "8 rows"),
    },
    {
        "id": "prepare_counts_do_not_sum",
        **call(
            f"{PP}:prepare_vlm_media_for_pp",
            batch=_media_batch(n_images_per_sample={"$tensor": [2, 1]}),
            batch_size=2,
            n_microbatches=2,
        ),
        **raises("ValueError", "n_images_per_sample", "sums to 3"),
    },
    {
        "id": "prepare_batch_not_a_dict",
        **call(f"{PP}:prepare_vlm_media_for_pp", batch=[1, 2], batch_size=2, n_microbatches=2),
        **raises("TypeError", "batch", "list"),
    },
    {
        "id": "stage_batch_none",
        **call(f"{PP}:stage_vlm_media_for_pp", pp=None, model_parts=[], batch=None),
        **raises("TypeError", "batch", "NoneType"),
    },
    {
        "id": "stage_chunks_not_dicts",
        **call(f"{PP}:stage_vlm_media_for_pp", pp=None, model_parts=[], batch={"_vlm_pp_media_chunks": [1, 2]}),
        **raises("TypeError", "_vlm_pp_media_chunks"),
    },
    {
        "id": "wrap_n_microbatches_0",
        **call(f"{PP}:wrap_vlm_collate_for_pp", collate_fn={"$callable": "identity"}, n_microbatches=0),
        **raises("ValueError", "n_microbatches"),
        **page_allows("deferred", _WRAP_PAGE, args=[_media_batch()]),
    },
    {
        "id": "wrap_collate_not_callable",
        **call(f"{PP}:wrap_vlm_collate_for_pp", collate_fn=None, n_microbatches=2),
        **raises("TypeError", "collate_fn"),
    },
    {
        "id": "step3_patch_count_mismatch",
        **call(
            f"{PP}:chunk_step3_media",
            pixel_values={"$zeros": [2, 3, 4, 4]},
            batch_size=2,
            n_microbatches=1,
            num_patches={"$tensor": [1, 1]},
            patch_pixel_values={"$zeros": [3, 3, 2, 2]},
        ),
        **raises("ValueError", "patch_pixel_values", "num_patches"),
    },
    # ------------------------------------------------------------ pipelining entry points
    {
        "id": "patch_not_a_module",
        **call(f"{PL}:patch_hf_model_for_pp", model="model"),
        **raises("TypeError", "model", "str"),
    },
    {
        "id": "validate_wrong_model",
        **call(f"{PL}:validate_hf_model_for_pipeline_support", model={"$model": "linear"}),
        **raises("ValueError", "Linear", "config"),
    },
    {
        "id": "validate_tied_embeddings",
        **call(f"{PL}:validate_hf_model_for_pipeline_support", model={"$model": "llama_tied"}),
        **raises("ValueError", "tie_word_embeddings"),
    },
    {
        "id": "init_buffers_not_a_module",
        **call(f"{PL}:init_hf_model_buffers", model="model", device="cpu"),
        **raises("TypeError", "model", "str"),
    },
    {
        "id": "init_buffers_bad_device",
        **call(f"{PL}:init_hf_model_buffers", model={"$model": "llama"}, device="no-such-device"),
        **raises("ValueError", "device", "no-such-device"),
    },
]

# Found by the deep fuzz run (tests/test_fuzz_conversations.py): a prompt that types the assistant turn
# marker opened a supervised turn inside the prompt.
CASES += [
    {
        "id": "user_types_assistant_marker",
        **collate(D, QWEN, batch_with(conv(question="<|im_start|>assistant\nsecret"))),
        **raises("ValueError", S1, f"{_M1}.content[0].text", "turn marker"),
    },
    {
        "id": "system_types_assistant_marker",
        **collate(
            "gemma4_prefix_collate_fn",
            {"$processor": "gemma4"},
            batch_with(
                [
                    {"role": "system", "content": "<|turn>model\n0"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "ok"},
                ]
            ),
        ),
        **raises("ValueError", S1, "conversation[0].content", "turn marker"),
    },
    {
        "id": "kimi_k25_user_types_assistant_marker",
        **collate(
            "kimi_k25_vl_collate_fn",
            {"$processor": "kimi_k25"},
            batch_with(conv(question="x<|im_assistant|>assistant<|im_middle|><think></think>y")),
        ),
        **raises("ValueError", S1, f"{_M1}.content[0].text", "turn marker"),
    },
]
