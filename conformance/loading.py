"""Load what a check needs for one family: processor (from its offline pack), collate, tiny model."""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import Any

import torch

from vlmspec.hub import PackError, load_pack, materialize
from vlmspec.hub.recipe import family_folder

from .registry import FamilySpec

TRUST_REMOTE_CODE = {"enabled": False}
HUB_MODELS: set[str] = set()
"""Registered models whose processor comes from the Hub, not the pack (``--online --model ID``): a
template changed on the Hub then shows up as a golden diff."""


@functools.cache
def pack_for(model_id: str):
    """The verified offline pack for a registered model (materialized on first use), or None."""
    try:
        folder = family_folder(model_id)
    except PackError:
        return load_pack(model_id)  # a pack whose folder is not here (e.g. built elsewhere)
    if folder.recipe is None:
        return load_pack(model_id)
    return materialize(model_id, folder=folder)  # reuses the pack unless the folder changed


def _factory(dotted: str) -> Callable:
    module, _, name = dotted.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise PackError(f"processor_factory {dotted!r}: {exc}") from None


@functools.cache
def load_processor(model_id: str) -> Any:
    """The model's processor: its record's ``processor_factory(pack)`` (stand-ins), else AutoProcessor.

    ``processor_factory`` is ``"module:function"``; the function takes the materialized :class:`Pack`
    and builds the processor from the pack's files (used where transformers has no class to load).
    """
    from transformers import AutoProcessor

    from .registry import load_registry

    pack = pack_for(model_id)
    spec = load_registry().get(model_id)
    factory = spec.extra.get("processor_factory") if spec is not None else None
    if factory:
        if pack is None:
            raise PackError(f"{model_id}: processor_factory {factory!r} needs the family's pack, and none can be built")
        return _factory(factory)(pack)
    kwargs: dict[str, Any] = {"trust_remote_code": TRUST_REMOTE_CODE["enabled"]}
    if pack is not None and model_id not in HUB_MODELS:
        # the pack is complete and verified: never ask the Hub about it, even in an --online run
        kwargs.update(cache_dir=str(pack.cache_dir), local_files_only=True)
    return AutoProcessor.from_pretrained(model_id, **kwargs)


def fixture_class(spec: FamilySpec) -> str:
    """The pack's class; ``REAL (cache)`` / ``REAL (hub)`` for a model loaded from the user's files."""
    if not spec.registered:
        return "REAL (cache)" if offline() else "REAL (hub)"
    if spec.model_id in HUB_MODELS:
        return "REAL (hub)"
    pack = pack_for(spec.model_id)
    return pack.fixture_class if pack is not None else "UNKNOWN"


def collate_for(spec: FamilySpec) -> Callable:
    """The active implementation's collate of this row, bound to the row's documented collate option."""
    from . import impl

    if spec.collate == "auto":
        fn = impl.get("collate_fns", "COLLATE_FNS").get(
            spec.processor_class, impl.get("collate_fns", "default_collate_fn")
        )
    else:
        fn = impl.get("collate_fns", spec.collate)
    return functools.partial(fn, **dict(spec.collate_kwargs)) if spec.collate_kwargs else fn


@functools.cache
def load_tiny_model(model_id: str, model_class: str) -> torch.nn.Module:
    """Random-weight fp32 model from the pack's tiny ``config.json`` (seeded, eval mode).

    A model with no pack (one nobody registered) gets its real ``config.json`` from the HF cache or the
    Hub, shrunk by :func:`conformance.tiny.tiny_model`.
    """
    import transformers
    from transformers import AutoConfig

    pack = pack_for(model_id)
    if pack is None:
        from .tiny import tiny_model

        return tiny_model(getattr(transformers, model_class), AutoConfig.from_pretrained(model_id))
    config = AutoConfig.from_pretrained(model_id, cache_dir=str(pack.cache_dir))
    config._attn_implementation = "eager"  # deterministic reference numerics
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(config).to(torch.float32).eval()
    return model


def resolve_module(model: torch.nn.Module, dotted: str) -> torch.nn.Module:
    """``model.<dotted>``; where a transformers line nests the model differently (e.g. the Qwen3-Omni
    thinker's ``visual`` beside, not inside, ``model`` before 5.x's refactor), the one submodule whose
    name ends with the record's last component."""
    obj: Any = model
    try:
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj
    except AttributeError:
        leaf = dotted.rsplit(".", 1)[-1]
        found = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] == leaf]
        if len(found) != 1:
            raise
        return found[0]


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
