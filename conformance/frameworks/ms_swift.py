"""ms-swift 4.6.0 as an ``--impl``: its template's train-mode ``encode`` and its ``data_collator``.

The path is the one ``swift sft`` runs (``swift/pipelines/train/sft.py`` ``_prepare_template``):
``get_template(processor, ...)`` then ``template.set_mode('train')``, ``template.encode(row)`` per sample
(``LazyLLMDataset`` / ``EncodePreprocessor``), and ``template.data_collator(rows)`` as the trainer's
collator. Masking is ms-swift's ``loss_scale`` (``swift/loss_scale/base.py``), left at its SFT default.

``get_template`` reads ``processor.model_info`` / ``processor.model_meta``, which only ms-swift's own loader
attaches, and that loader adapts the processor per family; so the template gets ms-swift's processor, loaded
with its public ``swift.model.get_processor`` from the model's offline pack folder (the files the harness's
processor comes from; config and processor files only, no weights). The harness's processor picks the family.

Run with ``PYTHONPATH=.venv-fw/ms_swift`` (``conformance/frameworks/ms_swift.pins``): ms-swift 4.6.0
requires ``transformers<5.20``, so the target folder carries transformers 5.19.0, which shadows the
project's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from functools import cache
from typing import Any

import torch

from . import Framework, tagged_messages, to_contract

# ms-swift's dataset format marks each medium's place in a message's text with a tag and lists the media
# in order under ``images``/``videos``/``audios`` (docs: Customization/Custom-dataset.md, "Multimodal")
MEDIA_TAGS = {"image": "<image>", "video": "<video>", "audio": "<audio>"}

FRAMEWORK = Framework(
    name="ms_swift",
    package="ms-swift==4.6.0",
    transformers="5.19.0",
    # processor class -> the template ms-swift selects for the model (its ModelMeta.template, found by
    # model id in swift/model/models/*.py; the adapter checks the selection matches)
    families={
        "Qwen2VLProcessor": "qwen2_vl",
        "Qwen2_5_VLProcessor": "qwen2_5_vl",
        "Qwen3VLProcessor": "qwen3_vl",
        "Qwen3OmniMoeProcessor": "qwen3_omni",  # its loader reads the Hub layout (see _hub_layout)
        "Gemma3Processor": "gemma3_vision",
        "Gemma4Processor": "gemma4_nothinking",
        "LlavaOnevision1_5Processor": "llava_onevision1_5",
        "PixtralProcessor": "mistral_2503",
        "Kimi_K25Processor": "kimi_k25",
        "KimiVLProcessor": "kimi_vl",
    },
    unsupported={
        "Phi4MultimodalProcessor": (
            "ms-swift's phi4_multimodal loader and template target the Hub repo's remote-code processor, not "
            "transformers' Phi4MultimodalProcessor: swift/model/models/microsoft.py Phi4MultimodalLoader.get_processor "
            "reads audio_processor.compression_rate (AttributeError on Phi4MultimodalFeatureExtractor), and "
            "swift/template/templates/microsoft.py Phi4MMTemplate passes '<|image_1|>' placeholders the native "
            "processor does not count"
        ),
        "NemotronH_Omni_Reasoning_V3Processor": (
            "no model registration for Nemotron-3-Nano-Omni (swift/model/models/nvidia.py registers only the "
            "text-only Nemotron-3.5-Lightning with template nemotron_h; get_model_info_meta raises 'no suitable "
            "model_type was found')"
        ),
        "Step3p7Processor": (
            "no model registration for Step-3.7 (swift/model/models/stepfun.py registers Step3-VL-10B with "
            "template step3_vl, a different model and processor; get_model_info_meta raises 'no suitable "
            "model_type was found')"
        ),
        "NemotronParseProcessor": "no model registration or template for Nemotron-Parse in swift/model/models",
        "LlamaNemotronVLProcessor": "no model registration or template for llama-nemotron-embed-vl in swift/model",
    },
    checks=("labels",),
    not_expressible={
        "vision_tokens": "ms-swift has no vision-token table or fake-image masking function to query",
    },
    settings={
        "loss_scale='default'": (
            "the SFT default (swift/arguments/base_args/template_args.py: \"'default': All responses (including "
            "history) are calculated with weight 1 for cross-entropy loss (system/user/multimodal tokens ... are "
            'not included) (Default value for SFT)"): every assistant turn is supervised, not only the last'
        ),
        "loss_scale+='+ignore_empty_think' for hybrid-thinking templates": (
            "what TemplateArguments._set_loss_scale does by default (disable_ignore_empty_think=False) when the "
            "template is_thinking and has a non_thinking_prefix (template_args.py)"
        ),
        "template_type=None (auto)": (
            "swift sft selects the template from the model's ModelMeta unless --template is given "
            "(swift/template/register.py get_template_meta: explicit > args.json > model_meta.template)"
        ),
        "set_mode('train')": "what swift sft does before encoding (swift/pipelines/train/sft.py _prepare_template)",
        "use_chat_template=True, default_system=None": (
            "the TemplateArguments defaults: the model's chat format, and the template's default system prompt "
            "when a sample has none"
        ),
        "max_length=None, truncation_strategy='raise'": (
            "TemplateArguments defaults (max_length falls back to the model's max_model_len; "
            "truncation_strategy 'delete' maps to 'raise' in get_template_kwargs); corpus samples are short"
        ),
        "padding_side='right', padding_free=False": "TemplateArguments defaults for training",
        "media as '<image>'/'<video>'/'<audio>' tags + 'images'/'videos'/'audios' lists": (
            "ms-swift's documented multimodal dataset format (docs Customization/Custom-dataset.md)"
        ),
        "processor from swift.model.get_processor(<pack folder>)": (
            "ms-swift's loader adapts the processor per family (swift/model/models/*.py get_processor, "
            "ModelLoader._postprocess_processor); loaded from the harness's pack files, no weights"
        ),
    },
)


def _model_dir(model_id: str) -> str:
    """The local folder holding the model's config/tokenizer files (the harness's offline pack)."""
    if os.path.isdir(model_id):
        return model_id
    from ..loading import pack_for

    pack = pack_for(model_id)
    if pack is None:
        raise RuntimeError(f"ms_swift adapter: no offline pack for {model_id!r}, and it is not a local folder")
    return _hub_layout(str(pack.snapshot))


@cache
def _hub_layout(folder: str) -> str:
    """``folder``, or a copy laid out like the Hub repo where the pack's config.json is not.

    Qwen3-Omni's pack keeps the thinker's config only (the suite's tiny model is the thinker), while the
    repo's config.json is a ``qwen3_omni_moe`` config with the thinker under ``thinker_config``, which
    ms-swift's loader and template read. The copy wraps the pack's config that way; every other file is
    the pack's own.
    """
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    if config.get("model_type") != "qwen3_omni_moe_thinker":
        return folder
    out = tempfile.mkdtemp(prefix="vlmspec-swift-")
    for name in os.listdir(folder):
        if name != "config.json" and os.path.isfile(os.path.join(folder, name)):
            shutil.copy2(os.path.join(folder, name), out)
    wrapped = {
        "model_type": "qwen3_omni_moe",
        "architectures": ["Qwen3OmniMoeForConditionalGeneration"],
        "enable_audio_output": False,
        "thinker_config": config,
    }
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(wrapped, f)
    return out


@cache
def _swift_processor(model_dir: str) -> Any:
    """ms-swift's own processor for ``model_dir`` (``swift.model.get_processor``: config + processor files, no
    weights), carrying the ``model_info``/``model_meta`` that ``get_template`` reads.

    Why not the harness's processor object: ms-swift's loader adapts the processor it loads per family
    (``swift/model/models/*.py``: ``patch_getattr`` so ``processor.encode`` reaches the tokenizer, Qwen's
    ``patch_qwen_vl_utils`` resize settings, Phi-4's audio_processor attributes and ``del
    processor.__class__.chat_template``, Qwen3-Omni's audio_token_id); running those on the harness's shared
    processor would change the oracle's reference. It is loaded from the same pack files.
    """
    from swift.model import get_processor

    return get_processor(model_dir, download_model=False)


def _with_swift_meta(processor: Any, model_dir: str) -> Any:
    """The harness's processor with ms-swift's ``model_info``/``model_meta`` attached (``model_info.config`` None).

    Used only when ms-swift's loader cannot read the pack's config.json (a synthetic pack without the repo's
    remote-code config: Kimi-VL, LLaVA-OneVision-1.5): ``swift.model.get_model_info_meta`` still finds the model by its id, and
    ``get_template`` needs nothing else. Only these two attributes are added to the shared processor.
    """
    from swift.model import get_model_info_meta

    model_info, model_meta = get_model_info_meta(model_dir, download_model=False)
    tokenizer = getattr(processor, "tokenizer", processor)
    for obj in (processor, tokenizer):
        obj.model_info, obj.model_meta = model_info, model_meta
    _fall_back_to_tokenizer(type(processor))
    return processor


def _fall_back_to_tokenizer(cls: type) -> None:
    """Give ``cls`` the attribute fallback ms-swift's loader patches onto every processor class it loads.

    ms-swift's ``patch_getattr`` (``swift/utils/utils.py``) makes a processor hand unknown attributes to its
    tokenizer, via ``super(self.__class__, self).__getattr__``. On a subclass of a class it already patched
    that call finds the patched method again and recurses forever: the LLaVA-OneVision-1.5 stand-in
    subclasses ``Qwen2_5_VLProcessor``, which ms-swift patches when a Qwen2.5-VL model is loaded earlier in the
    same process (``RecursionError`` on every later LLaVA-OneVision-1.5 sample: a harness artefact, since
    the real remote class is its own). The stand-in gets the same fallback as its own method, so the
    inherited patch is never reached.
    """
    if "__getattr__" in vars(cls):
        return

    def __getattr__(self: Any, key: str) -> Any:
        tokenizer = self.__dict__.get("tokenizer")
        if tokenizer is None or key.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")
        return getattr(tokenizer, key)

    cls.__getattr__ = __getattr__


# id(processor) -> (processor, template): swift sft builds one template per run; building it per batch
# would also rebuild its dummy model (Template._get_model) every call
_TEMPLATES: dict[int, tuple[Any, Any]] = {}


def _template(processor: Any) -> Any:
    """ms-swift's train-mode template for ``processor``, with the ``swift sft`` defaults (built once)."""
    cached = _TEMPLATES.get(id(processor))
    if cached is not None and cached[0] is processor:
        return cached[1]
    from swift.template import get_template, get_template_meta

    name = type(processor).__name__
    if name not in FRAMEWORK.families:
        raise NotImplementedError(FRAMEWORK.family_reason(name))
    model_id = getattr(processor, "tokenizer", processor).name_or_path
    model_dir = _model_dir(model_id)
    try:
        swift_processor = _swift_processor(model_dir)
    except ValueError as exc:
        if "Unrecognized model" not in str(exc):
            raise
        swift_processor = _with_swift_meta(processor, model_dir)
    if type(swift_processor).__name__ != name:
        raise RuntimeError(f"ms-swift loads a {type(swift_processor).__name__} for {model_id}, the harness a {name}")
    meta = get_template_meta(swift_processor.model_info, swift_processor.model_meta)
    if meta.template_type != FRAMEWORK.families[name]:
        raise RuntimeError(
            f"ms-swift selects template {meta.template_type!r} for {model_id}, "
            f"the adapter expects {FRAMEWORK.families[name]!r}"
        )
    loss_scale = "default"
    if meta.is_thinking and meta.non_thinking_prefix:
        loss_scale += "+ignore_empty_think"
    template = get_template(swift_processor, loss_scale=loss_scale)
    template.set_mode("train")
    _TEMPLATES[id(processor)] = (processor, template)
    return template


def _row(example: dict[str, Any]) -> dict[str, Any]:
    """One suite example as an ms-swift dataset row: string contents with ``<image>``/``<video>``/``<audio>``
    tags in place, and the media in order under ``images``/``videos``/``audios`` (PIL images, file paths)."""
    messages, media = tagged_messages(example["conversation"], MEDIA_TAGS)
    row: dict[str, Any] = {"messages": messages}
    row.update({f"{kind}s": items for kind, items in media.items() if items})
    return row


def framework_collate_fn(examples: list[dict[str, Any]], processor: Any) -> dict[str, torch.Tensor]:
    """ms-swift's batch for ``examples``, as the documented contract.

    ``template.encode`` per example then ``template.data_collator``: ``input_ids``/``labels``/
    ``attention_mask`` ``[B, L]`` (right-padded, labels unshifted, -100 outside the loss) plus the template's
    media tensors (e.g. ``pixel_values [N_patches, D]``, ``image_grid_thw [N_images, 3]``, ``position_ids``);
    :func:`to_contract` returns ``[B, L-1]`` with ``labels`` shifted by one.
    """
    template = _template(processor)
    rows = [template.encode(_row(example)) for example in examples]
    return to_contract(template.data_collator(rows))
