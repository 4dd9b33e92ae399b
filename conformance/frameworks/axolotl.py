"""axolotl 0.19.0 as an ``--impl`` target: its multimodal SFT data path, judged by the suite's oracle.

The path is the one ``axolotl train`` builds for a config with ``processor_type: AutoProcessor`` and
``chat_template: <name>`` (``HFCausalTrainerBuilder.build_collator`` in ``axolotl/core/builders/causal.py``):

1. ``axolotl.utils.chat_templates.get_chat_template(<name>)``: the jinja template axolotl ships for the
   name (``axolotl/utils/chat_templates/templates/<name>.jinja``), which the builder hands to the strategy
   as ``training_args.chat_template`` (``get_chat_template_from_config``);
2. ``axolotl.processing_strategies.get_processing_strategy(processor, chat_template, <name>, ...)``: the
   family's ``ProcessingStrategy`` (message normalisation, role boundaries, media-token masking);
3. ``axolotl.utils.collators.mm_chat.MultiModalChatDataCollator``: runs the strategy, renders and
   tokenizes the batch with ``processor.apply_chat_template(..., chat_template=<the strategy's>)`` and
   builds ``labels = strategy.process_labels(input_ids)`` (role scan, then pad/media ids to -100).

The processor handed in by the harness is used as is: axolotl's strategy and collator only read it (the
template goes to ``apply_chat_template`` as an argument, never onto the tokenizer), so the harness's
reference ids still come from the model's own template.

axolotl 0.19.0 pins ``torch<=2.13.0``; the data path runs on the project's torch 2.14.1 (it uses no
torch API beyond tensor ops). It pins ``transformers==5.16.1``, which the target folder provides.
"""

from __future__ import annotations

from typing import Any

import torch
from axolotl.processing_strategies import get_processing_strategy
from axolotl.utils.chat_templates import get_chat_template
from axolotl.utils.collators.mm_chat import MultiModalChatDataCollator

from . import Framework, to_contract

# processor class -> axolotl ``chat_template`` name, as docs/multimodal.qmd (0.19.0) configures each model:
# "Qwen2-VL ... chat_template: qwen2_vl", "Qwen2.5-VL ... chat_template: qwen2_vl  # same as qwen2-vl",
# "Qwen3-VL ... chat_template: qwen2_vl  # same as qwen2-vl", "Gemma-3 ... chat_template: gemma3",
# "Gemma-4 ... chat_template: gemma4". The name also selects the strategy class in get_processing_strategy.
FAMILIES = {
    "Qwen2VLProcessor": "qwen2_vl",
    "Qwen2_5_VLProcessor": "qwen2_vl",
    "Qwen3VLProcessor": "qwen2_vl",
    "Gemma3Processor": "gemma3",
    "Gemma4Processor": "gemma4",
    # the registered PixtralProcessor is Mistral-Small-3.1's: see settings["chat_template (PixtralProcessor)"]
    "PixtralProcessor": "mistral_v7_tekken",
    # not among docs/multimodal.qmd's models: the model's own template, and the base ProcessingStrategy a user
    # gets with it (see settings["chat_template (tokenizer_default)"])
    "Qwen3OmniMoeProcessor": "tokenizer_default",
    "Phi4MultimodalProcessor": "tokenizer_default",
    "Kimi_K25Processor": "tokenizer_default",
    "KimiVLProcessor": "tokenizer_default",
    "Step3p7Processor": "tokenizer_default",
}

_NOT_LISTED = (
    "not among the models axolotl supports for multimodal training (docs/multimodal.qmd 'Supported Models'); "
    "axolotl/processing_strategies.py get_processing_strategy has no strategy for it and the model_support "
    "registry (axolotl/model_support/registry.py: bailing_hybrid, cohere_compass, kimi_linear, muse_glimmer, "
    "paddleocr_vl, qwen4_exp) has no descriptor"
)

FRAMEWORK = Framework(
    name="axolotl",
    package="axolotl==0.19.0",
    transformers="5.16.1",
    families=dict(FAMILIES),
    checks=("labels",),
    unsupported={
        "LlavaOnevision1_5Processor": _NOT_LISTED
        + " (docs list Llava-1.5 with chat_template: llava only). With chat_template: tokenizer_default axolotl "
        "stops before training: get_chat_template (axolotl/utils/chat_templates/base.py, called by load_tokenizer "
        "and the trainer builder) raises ValueError(\"chat_template choice is tokenizer_default but tokenizer's "
        "chat_template is null\"): the pack's template is the processor's chat_template.json, which the "
        "tokenizer does not read, and its tokenizer_config.json has none (the real one was not available "
        "offline, pack PROVENANCE.md)",
        "NemotronH_Omni_Reasoning_V3Processor": _NOT_LISTED
        + "; and transformers 5.16.1, which axolotl 0.19.0 pins (transformers==5.16.1), has no nemotron_h_omni "
        "model: AutoProcessor returns the bare tokenizer (TokenizersBackend), and axolotl's strategy and "
        "collator read processor.tokenizer (AttributeError)",
    },
    not_expressible={},
    settings={
        "chat_template": (
            "the name docs/multimodal.qmd gives per model (qwen2_vl for Qwen2-VL, Qwen2.5-VL and Qwen3-VL, "
            "gemma3, gemma4; same in examples/qwen2-vl/lora-7b.yaml, examples/gemma3/gemma-3-4b-vision-qlora.yml, "
            "examples/gemma4/e2b-vision-lora.yaml); get_processing_strategy dispatches on it "
            "(qwen2_vl -> Qwen2VLProcessingStrategy, gemma3 -> Gemma3ProcessingStrategy, gemma4 -> "
            "Gemma4ProcessingStrategy, mistral_v7_tekken -> MistralV7TekkenProcessingStrategy) and the builder "
            "passes the named jinja (get_chat_template_from_config) as the strategy's chat_template"
        ),
        "chat_template (tokenizer_default)": (
            "Qwen3-Omni, Phi-4-multimodal, Kimi-K2.5, Kimi-VL and Step-3.7 are not among docs/multimodal.qmd's "
            "'Supported Models' and axolotl ships no template or strategy for them (_NOT_LISTED). A user trains "
            "them with the model's own template, chat_template: tokenizer_default (the default: "
            "extract_chat_template_args 'cfg.get(\"chat_template\") or _DEFAULT_TEMPLATE_CHOICE'), which "
            "get_chat_template resolves to 'tokenizer.chat_template'. get_processing_strategy then finds no "
            "model_support descriptor and no chat_template_type branch and returns the base ProcessingStrategy "
            "('Unregistered templates (llava, lfm2vl, mistral_v3_tekken, ...) use the base strategy; it warns "
            "once when train_on_inputs=False'), whose _build_role_boundaries is '[]' ('[] opts out of role "
            "masking'): its warning says 'only pad and media tokens are masked, every other token (system, "
            "user, assistant) contributes to loss' unless cfg.role_boundaries declares markers. The adapter "
            "keeps that documented fallback (no role_boundaries override), so the suite judges what such a "
            "user trains on"
        ),
        "chat_template (PixtralProcessor)": (
            "mistral_v7_tekken: the registered PixtralProcessor is Mistral-Small-3.1's. docs/multimodal.qmd "
            "configures Mistral-Small-3.1 with no chat_template and examples/mistral-small/"
            "mistral-small-3.1-24B-lora.yml with tokenizer_use_mistral_common: true (axolotl's Mistral3Processor "
            "over mistral-common's tekken.json, which the pack does not have; its README also says PIL images are "
            "not supported there). With the Hugging Face processor the template axolotl ships for this model is "
            "mistral_v7_tekken (its jinja's default system prompt is 'You are Mistral Small 3 ...', the same "
            "template as the checkpoint's); the pixtral name is for Pixtral-12B's [INST]-only template"
        ),
        "train_on_inputs": (
            "False: the default (ProcessingStrategy.__init__ 'train_on_inputs: bool = False'), and the value "
            "docs/multimodal_assistant_mask.md puts at the top level for assistant-only loss"
        ),
        "roles_to_train": (
            "['assistant']: docs/multimodal_assistant_mask.md's per-dataset setting; also the strategy's default "
            "('only None falls back to the default of assistant-only', processing_strategies.py)"
        ),
        "train_on_eos": (
            "'turn': docs/multimodal_assistant_mask.md's per-dataset setting and the strategy's default "
            "('turn = trainable turn ends only', processing_strategies.py _VALID_TRAIN_ON_EOS)"
        ),
        "role_boundaries": (
            "unset: the strategy's built-in markers (docs/multimodal_assistant_mask.md: an override is only for "
            "'unverified' strategies or custom templates)"
        ),
        "model_type": (
            "None: it only selects a model_support descriptor before the chat_template dispatch, and the registry "
            "has none for these families (axolotl/model_support/registry.py _BUILTIN_MODULES)"
        ),
        "image_size": (
            "None: it only resizes images of a separate 'images'/'image' column (ProcessingStrategy.__call__); the "
            "suite's images are inline content items ({'type': 'image', 'image': PIL.Image}, a documented key of "
            "docs/multimodal.qmd 'Dataset Format'), which the processor sizes itself"
        ),
        "dataset format": (
            "each example as {'messages': conversation}: docs/multimodal.qmd 'Dataset Format' (OpenAI-style "
            "role/content lists, the recommended 'messages' column; string content is converted to a text item)"
        ),
        "padding": (
            "MultiModalChatDataCollator defaults (padding=True, packing=False); docs/multimodal.qmd requires "
            "sample_packing: false"
        ),
    },
)


def framework_collate_fn(examples: list[dict[str, Any]], processor: Any) -> dict[str, torch.Tensor]:
    """The batch axolotl's multimodal collator makes of ``examples``, in the suite's contract.

    Returns ``input_ids``, ``attention_mask``, ``labels`` ``[B, L-1]`` (labels shifted by
    :func:`~conformance.frameworks.to_contract`) and the processor's media tensors as axolotl made them
    (e.g. ``pixel_values [N_patches, C*P*P]`` and ``image_grid_thw [N_images, 3]`` for Qwen,
    ``pixel_values [N_images, 3, H, W]`` for Gemma 3).
    """
    name = type(processor).__name__
    template = FAMILIES.get(name)
    if template is None:
        raise ValueError(f"axolotl 0.19.0 has no multimodal chat_template for {name}")
    strategy = get_processing_strategy(
        processor,
        get_chat_template(template, tokenizer=processor.tokenizer),  # tokenizer_default reads the tokenizer's
        template,
        image_size=None,
        train_on_inputs=False,
        roles_to_train=["assistant"],
        train_on_eos="turn",
        model_type=None,
    )
    collator = MultiModalChatDataCollator(tokenizer=processor.tokenizer, processing_strategy=strategy)
    # the strategy deep-copies each example before it normalises the messages, so the caller's stay intact
    batch = collator([{"messages": example["conversation"]} for example in examples])
    return to_contract(dict(batch))
