"""TRL 1.16.0 as an ``--impl``: the batches ``SFTTrainer`` trains a vision-language model on.

For a dataset with an ``images`` column, ``SFTTrainer`` skips dataset preparation and hands the raw rows to
``trl.trainer.sft_trainer.DataCollatorForVisionLanguageModeling``, which renders, tokenizes and processes the
images on the fly (``sft_trainer.py``: ``_skip_prepare_dataset = ... or self._is_vision_dataset``). This adapter
builds that collator as ``SFTTrainer.__init__`` does for the family's ``SFTConfig`` and calls it on the suite's
conversation as one TRL dataset row; the masking is TRL's own.

Two settings, one per family (``MODES``), both TRL's documented "train on the answer only":
``assistant_only_loss=True`` on a conversational row where TRL ships a training template for the family's chat
template, else a conversational prompt-completion row (``completion_only_loss``, the default there).

Docs cited in ``SETTINGS``: ``docs/source/*.md`` of huggingface/trl (the 1.16.0 wheel and sdist ship no docs;
read in the repository) and what the 1.16.0 wheel ships: docstrings and ``trl/chat_templates/README.md``.

Run it with TRL on the path, after the project's env (pins in ``conformance/frameworks/trl.pins``):
``PYTHONPATH=.venv-fw/trl .venv/bin/python -m pytest conformance --impl trl ...``.
"""

from __future__ import annotations

from typing import Any

import torch

from conformance.frameworks import Framework, messages_and_images, to_contract

# Two SFTConfig settings, one per family, both SFTTrainer's documented paths to "train on the answer only":
ASSISTANT_ONLY = "assistant_only_loss"  # conversational language modeling, every assistant turn
COMPLETION_ONLY = "completion_only_loss"  # conversational prompt-completion, the last assistant turn

# assistant_only_loss where TRL can run it: trl/chat_template_utils.py get_training_chat_template() swaps a
# known model template (exact string identity with trl/chat_templates/<name>.jinja) for <name>_training.jinja,
# which carries the {% generation %} markers the assistant mask needs. Checked by loading each pack's
# processor and calling get_training_chat_template on it.
_ASSISTANT_ONLY_TEMPLATES: dict[str, str] = {
    # the processor's template is byte-identical to trl/chat_templates/qwen2_5_vl.jinja (README: "also used
    # for Qwen2-VL, which ships a byte-identical template")
    "Qwen2VLProcessor": "qwen2_5_vl_training.jinja",
    "Qwen2_5_VLProcessor": "qwen2_5_vl_training.jinja",
    "Qwen3VLProcessor": "qwen3_vl_training.jinja",
    "Gemma3Processor": "gemma3_training.jinja",
    # the pack's template is byte-identical to qwen2_5_vl.jinja, so TRL treats it as Qwen2.5-VL's
    "LlavaOnevision1_5Processor": "qwen2_5_vl_training.jinja",
}

# completion_only_loss for families whose template TRL cannot patch: SFTTrainer(assistant_only_loss=True)
# raises "The chat template is not training-compatible (missing prefix-preservation or {% generation %}
# markers) and patching is not supported for this template" (get_training_chat_template), and no template in
# trl/chat_templates/README.md "Training templates" is theirs (Gemma 4: gemma4*.jinja are identity-only, for
# response parsing; Nemotron: nemotron_3_* are the text Nemotron-3 templates). The prompt-completion path
# renders the processor's own template and needs no markers.
_COMPLETION_ONLY_FAMILIES = (
    "Qwen3OmniMoeProcessor",
    "Gemma4Processor",
    "PixtralProcessor",
    "Kimi_K25Processor",
    "KimiVLProcessor",
    "NemotronH_Omni_Reasoning_V3Processor",
    "Step3p7Processor",
)

MODES: dict[str, str] = {
    **{name: ASSISTANT_ONLY for name in _ASSISTANT_ONLY_TEMPLATES},
    **{name: COMPLETION_ONLY for name in _COMPLETION_ONLY_FAMILIES},
}

FAMILIES: dict[str, str] = {
    **{name: f"{template} (assistant_only_loss=True)" for name, template in _ASSISTANT_ONLY_TEMPLATES.items()},
    **{
        name: "the processor's own chat template (prompt-completion, completion_only_loss)"
        for name in _COMPLETION_ONLY_FAMILIES
    },
}

# The media each mode can carry. TRL 1.16 documents images only (an "images"/"image" column; no "video" or
# "audio" in sft_trainer.py or data_utils.py). A conversational row still reaches the processor whole:
# the collator passes the messages to processor.apply_chat_template, which loads video items itself, so
# assistant_only_loss runs them. The prompt-completion collator calls
# processor(images=..., text=...) and passes no video or audio, so such a row cannot be expressed.
# Audio under assistant_only_loss is left out: no family of that mode declares audio, so it is unverified.
MEDIA: dict[str, tuple[str, ...]] = {ASSISTANT_ONLY: ("image", "video"), COMPLETION_ONLY: ("image",)}


def media_reason(processor_class: str, media: frozenset[str] | set[str]) -> str | None:
    """None when TRL's path for ``processor_class`` carries every medium in ``media``; else why not
    (for a harness that shows such a case as a '—' cell rather than a verdict)."""
    mode = MODES.get(processor_class)
    if mode is None:
        return None  # the family itself is unsupported; Framework.family_reason says why
    extra = sorted(set(media) - set(MEDIA[mode]))
    if not extra:
        return None
    if mode == COMPLETION_ONLY:
        return (
            "TRL's prompt-completion VLM collator (_collate_prompt_completion) passes only images to the processor, "
            f"no {'/'.join(extra)}; TRL 1.16 documents image datasets only"
        )
    return f"{'/'.join(extra)} under assistant_only_loss is not verified for TRL 1.16 (it documents images only)"


UNSUPPORTED: dict[str, str] = {
    "Phi4MultimodalProcessor": (
        "the processor has no chat_template (only its tokenizer has one); both of SFTTrainer's paths render through "
        "processor.apply_chat_template, which raises 'Cannot use apply_chat_template because this processor does "
        "not have a chat template' (prompt-completion: trl/data_utils.py apply_chat_template), and "
        "assistant_only_loss reads processing_class.chat_template (has_generation_markers(None) raises TypeError in "
        "trl/chat_template_utils.py)"
    ),
}

SETTINGS: dict[str, str] = {
    "assistant_only_loss=True (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Gemma 3, LLaVA-OneVision-1.5)": (
        "TRL's documented way to train on assistant turns only: docs/source/sft_trainer.md 'Train on assistant "
        "messages only' ('use a conversational dataset and set assistant_only_loss=True ... loss is computed only "
        "on the assistant responses'; 'For known model families ... TRL automatically patches the template'). The "
        "VLM collator supports it: the DataCollatorForVisionLanguageModeling docstring (trl/trainer/sft_trainer.py) "
        "says it 'requires a conversational language modeling dataset, transformers>=5.18.0, and a chat template "
        "with {% generation %} markers' (the project runs 5.23.0). Preferred because it supervises every "
        "assistant turn, as the contract does."
    ),
    "multi-turn under assistant_only_loss": (
        "the whole conversation is one 'messages' row, every assistant turn in place: assistant_only_loss masks "
        "each {% generation %} span of the rendered conversation (return_assistant_tokens_mask), so nothing is "
        "split or dropped."
    ),
    "chat_template=get_training_chat_template(processor)": (
        "what SFTTrainer.__init__ does when assistant_only_loss=True and the processor's template has no "
        "generation markers (sft_trainer.py: 'swap in a training chat template with {% generation %} markers'); "
        "passed on as DataCollatorForVisionLanguageModeling(chat_template=...). The training templates are "
        "listed in trl/chat_templates/README.md 'Training templates'."
    ),
    "prompt-completion, completion_only_loss=None -> True (Qwen3-Omni, Gemma 4, Mistral 3.1, Kimi-K2.5, Kimi-VL, "
    "Nemotron Omni, Step 3.7)": (
        "SFTTrainer refuses assistant_only_loss for these templates (get_training_chat_template raises 'patching "
        "is not supported for this template'; the docs' remedy is a hand-edited template, which would judge our "
        "template, not TRL). TRL's other documented answer-only path is docs/source/sft_trainer.md 'Train on "
        "completion only': 'use a prompt-completion dataset. By default, the trainer computes the loss on the "
        "completion tokens only' (SFTConfig.completion_only_loss=None resolves to True when the row has 'prompt' "
        "and 'completion', sft_trainer.py). It renders the processor's own template and needs no markers."
    ),
    "multi-turn under prompt-completion": (
        "prompt = every message before the last assistant message (system, user turns, earlier assistant turns, "
        "their images), completion = [the last assistant message]: docs/source/dataset_formats.md "
        "'Prompt-completion' (conversational format: 'prompt' = the messages, 'completion' = [the assistant "
        "reply]). A row has one completion, so earlier assistant turns are context, not targets. The collator "
        "renders with trl.data_utils.apply_chat_template (prompt with add_generation_prompt=True, completion = "
        "the rest of the full render) and tokenizes prompt and completion separately."
    ),
    "rows {'messages' | 'prompt'+'completion', 'images': [PIL, ...]}": (
        "docs/source/dataset_formats.md 'Vision datasets': 'The dataset must contain the key images ... (as lists "
        "of PIL images)' and content items {'type': 'image'}; image items stay in place as placeholders that "
        "trl.data_utils.prepare_multimodal_messages fills in order. A text-only fixture keeps 'images': [] (the "
        "column exists in a vision dataset), so SFTTrainer still routes it to this collator."
    ),
    "video and audio items": (
        "TRL 1.16 documents image datasets only. Under assistant_only_loss the collator hands the messages, "
        "video items included (paths, as the suite gives them), to processor.apply_chat_template, which loads "
        "them: that is what SFTTrainer does with such a row, so those cases run (audio: no such family). The "
        "prompt-completion collator passes only images to the processor: video/audio cases cannot be expressed "
        "there (media_reason; the adapter raises)."
    ),
    "max_length=None": (
        "docs/source/sft_trainer.md 'Training Vision Language Models': 'For VLMs, truncating may remove image "
        "tokens ... set max_length=None'; nothing is truncated"
    ),
    "pad_token = tokenizer.pad_token or tokenizer.eos_token": (
        "SFTTrainer.__init__ (SFTConfig.pad_token=None default) sets the tokenizer's pad token this way before "
        "building the collator; padding sides are fixed inside the collator"
    ),
}

FRAMEWORK = Framework(
    name="trl",
    package="trl==1.16.0",
    transformers="5.23.0",
    families=FAMILIES,
    unsupported=UNSUPPORTED,
    settings=SETTINGS,
    checks=("labels",),
    not_expressible={},
    media={name: MEDIA[mode] for name, mode in MODES.items()},
    media_notes={
        name: (
            "TRL's prompt-completion VLM collator (_collate_prompt_completion) passes only images to the processor; "
            "TRL 1.16 documents image datasets only"
            if mode == COMPLETION_ONLY
            else "audio under assistant_only_loss is unverified for TRL 1.16 (it documents images only)"
        )
        for name, mode in MODES.items()
    },
)


def _row(conversation: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """One TRL vision dataset row for ``mode``: ``{"messages", "images"}`` or ``{"prompt", "completion", "images"}``
    (images are PIL objects in order of appearance; image items stay in place as placeholders)."""
    messages, images = messages_and_images(conversation)
    if mode == ASSISTANT_ONLY:
        return {"messages": messages, "images": images}
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise ValueError("a prompt-completion row needs an assistant message for its completion")
    return {"prompt": messages[:last], "completion": messages[last:], "images": images}


def _collator(processor: Any, mode: str) -> Any:
    """``DataCollatorForVisionLanguageModeling`` as ``SFTTrainer.__init__`` builds it for a vision dataset with
    ``SFTConfig(max_length=None)`` plus ``assistant_only_loss=True`` (``mode`` ASSISTANT_ONLY), or the default
    ``completion_only_loss`` for a prompt-completion dataset (COMPLETION_ONLY)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    tokenizer = processor.tokenizer
    # SFTTrainer: pad_token = args.pad_token or tokenizer.pad_token or tokenizer.eos_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    assistant_only = mode == ASSISTANT_ONLY
    chat_template = None
    if assistant_only and not has_generation_markers(processor.chat_template):
        chat_template = get_training_chat_template(processor)
    return DataCollatorForVisionLanguageModeling(
        processor=processor,
        max_length=None,
        completion_only_loss=not assistant_only,  # SFTTrainer: True iff the row has "prompt" and "completion"
        pad_to_multiple_of=None,
        dataset_text_field="text",
        assistant_only_loss=assistant_only,
        chat_template=chat_template,
    )


def framework_collate_fn(examples: list[dict[str, Any]], processor: Any) -> dict[str, torch.Tensor]:
    """TRL's VLM batch for ``examples`` (``[{"conversation": [...]}]``), in the suite's contract.

    Returns ``input_ids``, ``attention_mask``, ``labels``: ``[B, L-1]`` (labels shifted, -100 ignored), plus
    the processor's media tensors as TRL made them (e.g. ``pixel_values [N_patches, D]``,
    ``image_grid_thw [N_images, 3]`` for Qwen).
    """
    name = type(processor).__name__
    if name not in MODES:
        raise ValueError(f"trl adapter: no TRL path for {name}: {UNSUPPORTED.get(name, 'not a registered family')}")
    mode = MODES[name]
    media = {
        item["type"]
        for ex in examples
        for m in ex["conversation"]
        if isinstance(m["content"], list)
        for item in m["content"]
    } & {"image", "video", "audio"}
    why = media_reason(name, media)
    if why is not None:
        # the processor would fail on the unmatched placeholders; say what TRL cannot carry instead
        raise ValueError(f"trl adapter: {why}")
    batch = _collator(processor, mode)([_row(example["conversation"], mode) for example in examples])
    return to_contract(dict(batch))
