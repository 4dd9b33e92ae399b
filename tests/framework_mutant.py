"""A mutated framework adapter: the framework's own batch with the whole conversation supervised.

The bug users of every framework report ("the multimodal template silently trained on the whole
conversation"): every attended token is a target, prompts and template markers included. ``./dev
frameworks`` runs the ``labels`` check against this module for each framework, with
``VLMSPEC_MUTATED_FRAMEWORK=<fw>``; the mutant must fail on every family the framework supports.

It is an ``--impl`` module path (``--impl tests.framework_mutant``), so it inherits none of the
framework's recorded expected failures: only the mutation decides what fails.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from conformance.frameworks import ADAPTERS, IGNORE

_NAME = os.environ.get("VLMSPEC_MUTATED_FRAMEWORK", "")
if _NAME not in ADAPTERS:
    raise ImportError(f"VLMSPEC_MUTATED_FRAMEWORK={_NAME!r}: set it to one of {sorted(ADAPTERS)}")
_REAL = importlib.import_module(ADAPTERS[_NAME])

VLMSPEC_IMPL = {"collate_fns": __name__}
FRAMEWORK = _REAL.FRAMEWORK


def framework_collate_fn(examples: list[dict[str, Any]], processor: Any) -> dict[str, torch.Tensor]:
    """The real adapter's batch, then ``labels[t] = input_ids[t+1]`` wherever ``t+1`` is attended
    (``[B, L-1]``, shifted; the last label keeps the framework's value: its next token is not in the batch)."""
    batch = _REAL.framework_collate_fn(examples, processor)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"].clone()
    whole = torch.where(mask[:, 1:].bool(), ids[:, 1:], torch.full_like(ids[:, 1:], IGNORE))
    labels[:, :-1] = whole
    return dict(batch, labels=labels)
