"""Training frameworks as ``--impl`` targets: one adapter module per framework (``--impl trl``).

An adapter maps the suite's examples to the framework's own data path (its template, multimodal
plugin and collator, through the framework's public API) and hands back the documented batch
contract, so the same checks and the same oracle judge every framework:

- ``examples``: ``[{"conversation": [...]}]``, messages ``{"role", "content"}``; content is a string or a
  list of ``{"type": "text", "text"}`` / ``{"type": "image", "image": PIL.Image}`` items.
- the batch: ``input_ids [B, L-1]``, ``attention_mask [B, L-1]``, ``labels [B, L-1]`` (-100 = ignore,
  shifted: ``labels[t]`` is the target of position ``t``, i.e. the token at ``t+1``), plus the
  framework's media tensors (``pixel_values``, ``image_grid_thw``, ...) as it made them.

Frameworks follow the Hugging Face convention (labels as long as ``input_ids``, shifted inside the
model); :func:`to_contract` does the documented shift, and nothing else.

An adapter module defines:

- ``FRAMEWORK``: a :class:`Framework` (what it is, which families and checks it can express, and why
  each setting was chosen);
- ``framework_collate_fn(examples, processor) -> dict[str, torch.Tensor]``.

The harness (``conformance/plugin.py``) runs every family through ``framework_collate_fn``; a family the
framework has no template for, and a check it cannot express (no fake image, no pipeline parallelism),
is a ``—`` cell with the reason, never a FAIL.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import torch

IGNORE = -100

# --impl name -> adapter module
ADAPTERS = {
    "trl": "conformance.frameworks.trl",
    "llamafactory": "conformance.frameworks.llamafactory",
    "ms_swift": "conformance.frameworks.ms_swift",
    "axolotl": "conformance.frameworks.axolotl",
}

# --impl name -> the framework's distribution on PyPI
DISTRIBUTIONS = {"trl": "trl", "llamafactory": "llamafactory", "ms_swift": "ms-swift", "axolotl": "axolotl"}
# --impl name -> the framework's top-level import package (what its missing dependencies are raised in)
ADAPTER_ROOTS = {"trl": "trl", "llamafactory": "llamafactory", "ms_swift": "swift", "axolotl": "axolotl"}

COLLATE_NAME = "framework_collate_fn"
DASH = "—"  # the prefix of a skip reason that means "the framework cannot express this", not "no verdict"


@dataclass(frozen=True)
class Framework:
    """What an adapter judges, and what it cannot.

    ``families``: processor class -> the framework's own name for its template/plugin (what the adapter
    selects). ``unsupported``: processor class -> why the framework cannot run it (checked by hand,
    with the framework file or page that shows it); a class in neither map is unsupported with a
    generic reason. ``checks``: the suite checks the adapter can express; every other check is ``—``
    with ``not_expressible[check]`` (or a generic reason). ``settings``: each framework setting the
    adapter chose -> why (the framework's documented recommendation for assistant-only training).
    """

    name: str
    package: str  # distribution==version the adapter was written against
    transformers: str  # the transformers line it runs under (the newest the framework accepts)
    families: dict[str, str]
    checks: tuple[str, ...] = ("labels",)
    unsupported: dict[str, str] = field(default_factory=dict)
    not_expressible: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    # processor class -> the media the framework's path for it carries (absent: every medium the record
    # declares), and why the others cannot be expressed
    media: dict[str, tuple[str, ...]] = field(default_factory=dict)
    media_notes: dict[str, str] = field(default_factory=dict)

    def media_reason(self, processor_class: str, media: frozenset[str] | set[str]) -> str | None:
        """None when the framework's path for ``processor_class`` carries every medium of a case; else the
        ``—`` reason (a case with audio on a path that passes only images says nothing about its labels)."""
        carried = self.media.get(processor_class)
        extra = sorted(set(media) - set(carried)) if carried is not None else []
        if not extra:
            return None
        why = self.media_notes.get(processor_class, f"its data path for this family carries {', '.join(carried)} only")
        return f"{DASH} {self.name} cannot express {'/'.join(extra)} for {processor_class}: {why}"

    def family_reason(self, processor_class: str) -> str | None:
        """None when the framework runs ``processor_class``; else why it cannot (a ``—`` reason)."""
        if processor_class in self.families:
            return None
        why = self.unsupported.get(processor_class, f"no template or multimodal plugin for {processor_class}")
        return f"{DASH} {self.name} {self.package.split('==')[-1]} does not support this family: {why}"

    def check_reason(self, check: str) -> str | None:
        """None when the adapter expresses ``check``; else why not (a ``—`` reason)."""
        if check in self.checks:
            return None
        why = self.not_expressible.get(check, _GENERIC.get(check, "not expressible through this framework's API"))
        return f"{DASH} {self.name} cannot express {check}: {why}"


_GENERIC = {
    "vision_tokens": "it exposes no vision-token table or fake-image masking function (fake_image page)",
    "label_consistency": "it has no separate legacy/template label builders to compare (collate page)",
    "fake_image": "it has no fake image for text-only samples",
    "fake_image_mixed_batch": "it has no fake image for text-only samples",
    "golden": "goldens are the documented collate's snapshots; a framework's batches are judged by the oracle",
    "template_behaviour": "template behaviour entries describe the documented collate",
    "pp_chunking": "it has no pipeline-parallel media chunking (pp_media page)",
    "pp_staged_forward": "it has no pipeline-parallel forward patches (pipelining page)",
    "pp_distributed": "it has no pipeline-parallel forward patches (pipelining page)",
    "pp_golden": "it has no pipeline-parallel media chunking (pp_media page)",
    "api": "an adapter provides the documented collate contract, not the five documented modules' names",
    "robustness": "the bad-input table calls the documented modules' functions, which a framework does not have",
    "pp_layouts": "it has no pipeline-parallel media chunking (pp_media page)",
}


def framework(impl_name: str) -> Framework | None:
    """The :class:`Framework` of an adapter ``--impl`` name, or of an ``--impl`` module path that defines
    ``FRAMEWORK`` (a test's mutated adapter), else None."""
    module = importlib.import_module(ADAPTERS.get(impl_name, impl_name))
    found = getattr(module, "FRAMEWORK", None)
    return found if isinstance(found, Framework) else None


def to_contract(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A Hugging Face style batch (``input_ids``, ``attention_mask``, ``labels``: ``[B, L]``, labels
    unshifted) as the documented contract: ``[B, L-1]`` each, ``labels`` shifted left by one
    (``labels[t] = batch["labels"][t+1]``). Every other tensor is passed through unchanged."""
    for key in ("input_ids", "labels"):
        if key not in batch:
            raise KeyError(f"the framework's batch has no {key!r} (keys: {sorted(batch)})")
    out = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    ids, labels = torch.as_tensor(batch["input_ids"]), torch.as_tensor(batch["labels"])
    if ids.shape != labels.shape:
        raise ValueError(f"input_ids {tuple(ids.shape)} and labels {tuple(labels.shape)} differ in shape")
    mask = torch.as_tensor(batch.get("attention_mask", torch.ones_like(ids)))
    out.update(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], labels=labels[:, 1:])
    return out


def messages_and_images(conversation: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """The conversation as ``(messages with string-or-list content, images in order of appearance)``.

    Content lists are kept (``{"type": "image"}`` items lose their PIL object, which goes to ``images``);
    adapters that need placeholder strings use :func:`tagged_messages`.
    """
    messages, images = [], []
    for message in conversation:
        content = message["content"]
        if isinstance(content, list):
            items = []
            for item in content:
                if item.get("type") == "image":
                    images.append(item["image"])
                    items.append({"type": "image"})
                else:
                    items.append(dict(item))
            content = items
        messages.append({"role": message["role"], "content": content})
    return messages, images


def tagged_messages(
    conversation: list[dict[str, Any]], tags: dict[str, str]
) -> tuple[list[dict[str, str]], dict[str, list[Any]]]:
    """The conversation in the placeholder-string format frameworks' dataset rows use.

    ``tags`` maps a medium (``"image"``, ``"video"``, ``"audio"``) to its placeholder (``"<image>"``). Returns
    the messages with string content (each media item replaced by its placeholder, in place) and, per medium
    of ``tags``, its items' values in order of appearance (PIL images, file paths).
    """
    media: dict[str, list[Any]] = {kind: [] for kind in tags}
    messages = []
    for message in conversation:
        content = message["content"]
        if isinstance(content, list):
            pieces = []
            for item in content:
                kind = item.get("type")
                if kind in tags:
                    media[kind].append(item[kind])
                    pieces.append(tags[kind])
                else:
                    pieces.append(item.get("text", ""))
            content = "".join(pieces)
        messages.append({"role": message["role"], "content": content})
    return messages, media
