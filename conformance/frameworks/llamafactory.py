"""LLaMA-Factory 0.9.5 as an ``--impl`` target: its SFT data path, judged by the suite's oracle.

The path is the one ``llamafactory-cli train`` with ``stage: sft`` runs (``llamafactory/train/sft/workflow.py``):

1. ``llamafactory.model.patcher.patch_tokenizer`` / ``patch_processor`` with ``ModelArguments`` defaults
   (``load_tokenizer`` in ``llamafactory/model/loader.py`` loads the tokenizer with ``padding_side="right"``);
2. ``get_template_and_fix_tokenizer`` with the family's template name (``DataArguments(template=...)``);
3. the ``sharegpt`` dataset converter (``llamafactory/data/converter.py``), configured like the shipped
   multimodal demo dataset (``data/dataset_info.json`` ``mllm_demo``: ``messages``/``images`` columns,
   ``role``/``content`` tags, ``<image>`` placeholders in the text);
4. ``SupervisedDatasetProcessor.preprocess_dataset`` (``llamafactory/data/processor/supervised.py``), which runs
   the template's multimodal plugin (``template.mm_plugin.process_messages`` / ``process_token_ids``) and
   ``template.encode_multiturn`` and builds the labels;
5. ``SFTDataCollatorWith4DAttentionMask`` (the SFT workflow's collator, a ``MultiModalDataCollatorForSeq2Seq``),
   which calls ``template.mm_plugin.get_mm_inputs`` and pads.

The tokenizer and processor handed in by the harness are deep-copied once per processor: LLaMA-Factory
mutates both (eos/pad/stop-word special tokens, padding side, ``image_max_pixels`` ...), and the harness's
own reference ids must come from the untouched processor.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from llamafactory.data import SFTDataCollatorWith4DAttentionMask, get_template_and_fix_tokenizer
from llamafactory.data.converter import get_dataset_converter
from llamafactory.data.parser import DatasetAttr
from llamafactory.data.processor import SupervisedDatasetProcessor
from llamafactory.extras.constants import (
    AUDIO_PLACEHOLDER,
    IGNORE_INDEX,
    IMAGE_PLACEHOLDER,
    VIDEO_PLACEHOLDER,
)
from llamafactory.hparams import DataArguments, ModelArguments
from llamafactory.model.patcher import patch_processor, patch_tokenizer

from . import Framework, tagged_messages, to_contract

# processor class -> LLaMA-Factory template; the template per checkpoint is the one LLaMA-Factory registers for it
# in ``llamafactory/extras/constants.py`` (``register_model_group(..., template=..., multimodal=True)``).
FAMILIES = {
    "Qwen2VLProcessor": "qwen2_vl",  # Qwen2-VL-2B-Instruct -> template="qwen2_vl"
    "Qwen2_5_VLProcessor": "qwen2_vl",  # Qwen2.5-VL-3B-Instruct -> template="qwen2_vl"
    "Qwen3VLProcessor": "qwen3_vl_nothink",  # Qwen3-VL-{2B,30B-A3B}-Instruct -> template="qwen3_vl_nothink"
    "Qwen3OmniMoeProcessor": "qwen3_omni_nothink",  # Qwen3-Omni-30B-A3B-Instruct -> template="qwen3_omni_nothink"
    "Gemma3Processor": "gemma3",  # gemma-3-4b-it -> template="gemma3"
    "Gemma4Processor": "gemma4n",  # gemma-4-E2B-it -> template="gemma4n"
    "PixtralProcessor": "mistral_small",  # Mistral-Small-3.1-24B-Instruct -> template="mistral_small"
    "KimiVLProcessor": "kimi_vl",  # Kimi-VL-A3B-Instruct -> template="kimi_vl"
}

_NO_TEMPLATE = (
    "no template or multimodal plugin for it in llamafactory 0.9.5 (checked llamafactory/data/template.py "
    "register_template names, llamafactory/data/mm_plugin.py PLUGINS and the model registry "
    "llamafactory/extras/constants.py)"
)

FRAMEWORK = Framework(
    name="llamafactory",
    package="llamafactory==0.9.5",
    transformers="5.6.0",
    families=FAMILIES,
    # fake_image judges LLaMA-Factory's own dummy image (dummy_image_batch), not the suite's injected one
    checks=("labels", "fake_image"),
    unsupported={
        "LlavaOnevision1_5Processor": _NO_TEMPLATE
        + "; its llava_next/llava plugins target LLaVA-NeXT / LLaVA-OneVision (v1), not LLaVA-OneVision-1.5",
        "Phi4MultimodalProcessor": _NO_TEMPLATE
        + "; the phi4 / phi4_mini templates are text-only (no mm_plugin) and Phi-4-multimodal is not registered",
        "Kimi_K25Processor": _NO_TEMPLATE + "; only kimi_vl (Kimi-VL-A3B) is registered, Kimi-K2.5 is not",
        "NemotronH_Omni_Reasoning_V3Processor": _NO_TEMPLATE + "; no Nemotron omni/VL template is registered",
        "Step3p7Processor": _NO_TEMPLATE + "; no Step-3 template is registered",
    },
    not_expressible={
        "fake_image_mixed_batch": (
            "the collator adds its dummy image only to batches without any image or video "
            "(llamafactory/data/collator.py MultiModalDataCollatorForSeq2Seq); fake_image judges that dummy image"
        ),
    },
    settings={
        "stage=sft / SFTDataCollatorWith4DAttentionMask": (
            "the collator llamafactory/train/sft/workflow.py builds for SFT; block_diag_attn and neat_packing left "
            "at their defaults (False), model=None (no mrope position_ids: they do not touch labels)"
        ),
        "train_on_prompt=False": (
            "DataArguments default (llamafactory/hparams/data_args.py: 'Whether or not to disable the mask on the "
            "prompt.'): prompts are masked, every response is supervised"
        ),
        "mask_history=False": (
            "DataArguments default ('Whether or not to mask the history and train on the last turn only.'): every "
            "assistant turn is supervised, which is what the suite's data contract asks"
        ),
        "cutoff_len=2048": "DataArguments default; the corpus's longest fixture is far below it, so nothing is cut",
        "packing=None, neat_packing=False": "DataArguments defaults: stage sft does not pack unless asked",
        "enable_thinking=True, preserve_thinking=False": (
            "DataArguments defaults; the registered Instruct templates (*_nothink) are not reasoning templates"
        ),
        "formatting=sharegpt (messages/images columns, role/content tags, system tag 'system')": (
            "the multimodal format of data/README.md and the mllm_demo entry of data/dataset_info.json; the 'openai' "
            "converter is not used because it rewrites the system prompt (appends 'detailed thinking off')"
        ),
        "<image> placeholder per image item (PIL image in the images column)": (
            "IMAGE_PLACEHOLDER (llamafactory/extras/constants.py), which the multimodal plugin expands; data/README.md "
            "asks for one placeholder per image, in place"
        ),
        "padding_side=right": "load_tokenizer (llamafactory/model/loader.py) loads every tokenizer with it",
        "ModelArguments defaults (image_max_pixels=768*768, image_min_pixels=32*32, video_max_pixels=256*256, "
        "video_min_pixels=16*16, video_fps=2.0, video_maxlen=128, audio_sampling_rate=16000, use_audio_in_video=False)": (
            "patch_processor copies them onto the processor; the plugin resizes images and samples/resizes video "
            "frames with them before the processor (llamafactory/hparams/model_args.py defaults)"
        ),
        "<video> / <audio> placeholders with videos / audios columns (file paths)": (
            "VIDEO_PLACEHOLDER / AUDIO_PLACEHOLDER and the sharegpt videos/audios columns of data/README.md; the plugin "
            "decodes the files itself (PyAV for video, torchaudio for audio)"
        ),
        "pad_to_multiple_of=8": "workflow.py: 'pad_to_multiple_of=8 if training_args.do_train else None'",
        "label_pad_token_id=-100": "workflow.py: IGNORE_INDEX when ignore_pad_token_for_loss (default True)",
        "compute_dtype=bfloat16": (
            "the collator casts float tensors to model_args.compute_dtype; LLaMA-Factory's example SFT configs "
            "(examples/train_lora/*.yaml) train with bf16: true"
        ),
    },
)

# how a sample's messages reach the converter: the column and tag names of data/dataset_info.json's mllm_demo
_DATASET_ATTR = {
    "load_from": "file",
    "dataset_name": "vlmspec",
    "formatting": "sharegpt",
    "messages": "messages",
    "images": "images",
    "videos": "videos",
    "audios": "audios",
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "system_tag": "system",
}

# id(processor) -> (processor, its patched copy, template, data_args): fixing the tokenizer once per processor
# (the harness caches processors, so this is one deep copy per family)
_STATE: dict[int, tuple[Any, Any, Any, DataArguments]] = {}


def _llamafactory_state(processor: Any) -> tuple[Any, Any, DataArguments]:
    """(patched processor copy, template, data_args) for ``processor``, built the way LLaMA-Factory's loader does."""
    key = id(processor)
    if key not in _STATE:
        name = FAMILIES[type(processor).__name__]
        patched = copy.deepcopy(processor)  # LLaMA-Factory mutates tokenizer and processor; keep the harness's intact
        tokenizer = patched.tokenizer
        tokenizer.padding_side = "right"  # load_tokenizer: AutoTokenizer.from_pretrained(..., padding_side="right")
        # the model id only names the checkpoint: nothing is loaded from it
        model_args = ModelArguments(model_name_or_path=tokenizer.name_or_path or name)
        patch_tokenizer(tokenizer, model_args)
        patch_processor(patched, tokenizer, model_args)
        data_args = DataArguments(template=name)
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        _STATE[key] = (processor, patched, template, data_args)
    _, patched, template, data_args = _STATE[key]
    return patched, template, data_args


# suite item type -> (LLaMA-Factory placeholder, sharegpt column); the plugin expands each placeholder in place
_MEDIA = {
    "image": (IMAGE_PLACEHOLDER, "images"),
    "video": (VIDEO_PLACEHOLDER, "videos"),
    "audio": (AUDIO_PLACEHOLDER, "audios"),
}


def _sharegpt_row(conversation: list[dict[str, Any]]) -> dict[str, Any]:
    """One suite conversation as a row of a sharegpt dataset: string contents with ``<image>`` / ``<video>`` /
    ``<audio>`` in place, the media (PIL images, video and audio file paths) in their columns, in order."""
    messages, media = tagged_messages(conversation, {kind: tag for kind, (tag, _) in _MEDIA.items()})
    return {"messages": messages, **{column: media[kind] for kind, (_, column) in _MEDIA.items()}}


def framework_collate_fn(examples: list[dict[str, Any]], processor: Any) -> dict[str, torch.Tensor]:
    """Run ``examples`` through LLaMA-Factory's SFT data path and return the documented contract.

    Returns ``input_ids``, ``attention_mask``, ``labels``: ``[B, L-1]`` (labels shifted, -100 = ignore), ``L`` the
    longest sample's length (the collator's trailing padding and dummy-image ids dropped, see
    :func:`_drop_trailing_unattended`), plus the plugin's media tensors as it made them (for Qwen
    ``pixel_values [N_patches, D]``, ``image_grid_thw [N_images, 3]``, ``pixel_values_videos``, ``video_grid_thw``).
    In a batch without image or video those are the dummy image's.
    """
    return to_contract(_drop_trailing_unattended(dummy_image_batch(examples, processor)))


def dummy_image_batch(examples: list[dict[str, Any]], processor: Any, model: Any = None) -> dict[str, Any]:
    """The SFT collator's batch as it reaches the model: ``[B, L]`` tensors, labels unshifted (-100 = ignore),
    nothing dropped. In a batch without image or video, sample 0 ends with LLaMA-Factory's dummy image
    (a 64x64 white image's tokens, attention_mask 0) and the media tensors are that image's: the
    ``fake_image`` check judges it (``FRAMEWORK.checks``). ``model``: handed to the collator as training
    does, so that it adds what it computes from the model (M-RoPE ``position_ids`` / ``rope_deltas``)."""
    patched, template, data_args = _llamafactory_state(processor)
    tokenizer = patched.tokenizer
    converter = get_dataset_converter("sharegpt", DatasetAttr(**_DATASET_ATTR), data_args)
    aligned = [converter(_sharegpt_row(example["conversation"])) for example in examples]
    columns = {key: [row[key] for row in aligned] for key in aligned[0]}
    encoder = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=patched, data_args=data_args)
    encoded = encoder.preprocess_dataset(columns)
    if len(encoded["input_ids"]) != len(examples):
        # preprocess_dataset drops a malformed sample with a warning; the suite must see that, not a shorter batch
        raise ValueError(f"llamafactory dropped {len(examples) - len(encoded['input_ids'])} sample(s) as invalid")
    features = [{key: encoded[key][i] for key in encoded} for i in range(len(examples))]
    collator = SFTDataCollatorWith4DAttentionMask(
        template=template,
        model=model,
        tokenizer=tokenizer,
        processor=patched,
        pad_to_multiple_of=8,
        label_pad_token_id=IGNORE_INDEX,
        block_diag_attn=False,
        neat_packing=False,
        compute_dtype=torch.bfloat16,
    )
    return dict(collator(features))


def _drop_trailing_unattended(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` without the columns after every row's last attended token (``[B, L]`` -> ``[B, L']``).

    Those columns are the collator's right padding (``pad_to_multiple_of=8``) and, in a batch without media,
    LLaMA-Factory's dummy image tokens, which it appends after sample 0 with attention_mask 0 and labels -100.
    The contract's row is the sample's own tokens, so they go; they are checked to be unsupervised first (a
    supervised one would be a framework defect, reported rather than dropped). Media tensors are untouched: a
    text-only batch keeps the dummy image's ``pixel_values``.
    """
    mask = torch.as_tensor(batch["attention_mask"])
    attended = mask.ne(0).any(dim=0).nonzero().flatten()
    keep = int(attended.max()) + 1 if attended.numel() else 0
    seq_len = mask.shape[1]
    if keep == seq_len:
        return batch
    if torch.as_tensor(batch["labels"])[:, keep:].ne(IGNORE_INDEX).any():
        raise ValueError("llamafactory supervises a padding/dummy-image position (attention_mask 0)")
    out = dict(batch)
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == mask.shape:
            out[key] = value[:, :keep]
    return out
