"""Runs one case of the bad-input table (``conformance/bad_inputs.py``) against the active implementation.

The rules: a case that expects an error passes when the documented function raises exactly that type
(``ValueError`` or ``TypeError``, not a subclass such as ``UnicodeEncodeError`` or a library's own error)
with a message containing every ``match`` substring (the sample index and the field, or the argument);
an ``ok`` case passes when the call returns a batch that satisfies the label contract (labels shifted by
one, padding ignored, every sample supervised) and carries the expected images. A case whose page
permits another outcome for that input (``page_allows``: a no-op, a batch, the fake-image conversation,
or the error deferred to the returned callable's first call) also passes with that outcome, judged as
strictly as the error. In every case the inputs must be unchanged afterwards, compared deeply (PIL
images by pixels, tensors by value, modules by state and attributes) — except, after a successful call,
the arguments the function's page says it modifies in place (``DOCUMENTED_IN_PLACE``; not for a
``noop`` outcome, whose documented effect on the input is empty).

:func:`run` returns the problems as readable lines (empty when the case passes): exactly what
happened — returned normally, raised the wrong type, raised with a message lacking the sample or
field, broke the batch contract, or mutated an input (with the path of the first difference).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import impl

IGNORE = -100
_MESSAGE_LIMIT = 300


# ---------------------------------------------------------------- building the inputs


def _processor(name: str) -> Any:
    from .bad_inputs import PROCESSORS
    from .loading import load_processor

    return load_processor(PROCESSORS[name])


def _image(w: int, h: int, mode: str) -> Image.Image:
    """Deterministic pixels of size ``w`` x ``h`` in ``mode`` (constant pixels above a megapixel)."""
    if w * h > 1_000_000:  # huge images: constant pixels (random bytes would dominate the run time)
        return Image.new(mode, (w, h), 128 if mode in ("L", "P", "I;16") else None)
    rng = np.random.default_rng(w * 10_007 + h)
    rgb = Image.fromarray(rng.integers(0, 256, (max(h, 1), max(w, 1), 3), dtype=np.uint8), "RGB")
    if w == 0 or h == 0:
        return Image.new(mode, (w, h))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    return rgb.convert(mode)


def _file(name: str, tmp_path: Path) -> str:
    path = Path(tmp_path) / name
    if name == "truncated.png":
        _image(64, 64, "RGB").save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif name == "garbage.jpg":
        path.write_bytes(random.Random(7).randbytes(2048))
    elif not name.startswith("missing"):
        raise KeyError(f"$file {name!r}: not one of missing.*, truncated.png, garbage.jpg")
    return str(path)


def _model(kind: str) -> torch.nn.Module:
    if kind == "linear":
        return torch.nn.Linear(2, 2)
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=kind == "llama_tied",
    )
    return LlamaForCausalLM(config)


def build(value: Any, tmp_path: Path) -> Any:
    """Replace the table's ``$``-placeholders by real objects (see ``conformance/bad_inputs.py``)."""
    if isinstance(value, list):
        return [build(v, tmp_path) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)).startswith("$"):
        ((key, arg),) = value.items()
        builders: dict[str, Callable[[], Any]] = {
            "$processor": lambda: _processor(arg),
            "$image": lambda: _image(*arg),
            "$file": lambda: _file(arg, tmp_path),
            "$repeat": lambda: arg[0] * arg[1],
            "$tensor": lambda: torch.tensor(arg),
            "$zeros": lambda: torch.zeros(arg),
            "$arange": lambda: torch.arange(arg),
            "$model": lambda: _model(arg),
            "$callable": lambda: lambda batch: batch,
        }
        if key not in builders:
            raise KeyError(f"unknown placeholder {key}")
        return builders[key]()
    return {k: build(v, tmp_path) for k, v in value.items()}


# ---------------------------------------------------------------- deep comparison


def difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where ``a`` and ``b`` first differ, as ``path: what`` (``None`` if deeply equal).

    PIL images compare by mode, size, info and bytes; tensors/arrays by dtype, shape and value; modules
    by attributes, state dict and submodules; callables by identity.
    """
    if a is b:
        return None
    where = path or "<input>"
    if type(a) is not type(b):
        return f"{where}: type {type(b).__name__} became {type(a).__name__}"
    if isinstance(a, Image.Image):
        for what, x, y in (("mode", a.mode, b.mode), ("size", a.size, b.size), ("info", a.info, b.info)):
            if x != y:
                return f"{where}: image {what} {y!r} became {x!r}"
        return None if a.tobytes() == b.tobytes() else f"{where}: image pixels changed"
    if isinstance(a, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{where}: tensor {b.dtype} {tuple(b.shape)} became {a.dtype} {tuple(a.shape)}"
        return None if bool(torch.equal(a, b)) else f"{where}: tensor values changed"
    if isinstance(a, np.ndarray):
        return None if a.dtype == b.dtype and np.array_equal(a, b) else f"{where}: array changed"
    if isinstance(a, torch.nn.Module):
        return _module_difference(a, b, where)
    if isinstance(a, dict):
        if a.keys() != b.keys():
            added, removed = sorted(a.keys() - b.keys(), key=repr), sorted(b.keys() - a.keys(), key=repr)
            return f"{where}: keys " + ", ".join(
                filter(None, [f"added {added}" if added else "", f"removed {removed}" if removed else ""])
            )
        return next((d for k in a if (d := difference(a[k], b[k], f"{path}[{k!r}]")) is not None), None)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: length {len(b)} became {len(a)}"
        return next(
            (d for i, (x, y) in enumerate(zip(a, b)) if (d := difference(x, y, f"{path}[{i}]")) is not None), None
        )
    if callable(a):
        return f"{where}: {b!r} replaced by {a!r}"
    return None if a == b else f"{where}: {_short(repr(b))} became {_short(repr(a))}"


def _module_difference(a: torch.nn.Module, b: torch.nn.Module, where: str) -> str | None:
    if sorted(vars(a)) != sorted(vars(b)):
        added, removed = sorted(set(vars(a)) - set(vars(b))), sorted(set(vars(b)) - set(vars(a)))
        return f"{where}: module attributes added {added} removed {removed}"
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return f"{where}: state dict keys changed"
    changed = next((k for k in sa if not torch.equal(sa[k], sb[k])), None)
    if changed is not None:
        return f"{where}: parameter/buffer {changed!r} changed"
    for (name, x), (_, y) in zip(a.named_modules(), b.named_modules()):
        if x is not a and sorted(vars(x)) != sorted(vars(y)):
            return f"{where}.{name}: module attributes changed"
    return None


def snapshot(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Deep copies of the inputs; processors and callables are shared, not copied (tools, not data)."""
    memo = {id(v): v for v in kwargs.values() if callable(v) and not isinstance(v, torch.nn.Module)}
    return copy.deepcopy(kwargs, memo)


# ---------------------------------------------------------------- running a case


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."


def _raised(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_short(str(exc))}"


def batch_problems(batch: Any, n_images: list[int] | None) -> list[str]:
    """How a returned batch breaks the label contract or the expected images per sample."""
    if not isinstance(batch, dict) and not hasattr(batch, "keys"):
        return [f"returned {type(batch).__name__}, not a batch"]
    missing = [k for k in ("input_ids", "labels", "attention_mask") if k not in batch]
    if missing:
        return [f"returned a batch without {missing}"]
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    if ids.dim() != 2 or labels.shape != ids.shape or mask.shape != ids.shape:
        return [
            f"returned input_ids {tuple(ids.shape)}, labels {tuple(labels.shape)}, attention_mask "
            f"{tuple(mask.shape)}: expected equal [B, L] shapes"
        ]
    problems = []
    sup = labels[:, :-1] != IGNORE
    if not torch.equal(labels[:, :-1][sup], ids[:, 1:][sup]):
        problems.append("returned labels that are not input_ids shifted by one")
    if not bool((labels[mask == 0] == IGNORE).all()):
        problems.append("returned supervised padding (attention_mask 0, label != -100)")
    unsupervised = [i for i, row in enumerate((labels != IGNORE).any(dim=1).tolist()) if not row]
    if unsupervised:
        problems.append(f"returned no supervised token for sample(s) {unsupervised}, whose answers are not empty")
    if n_images is not None:
        if "n_images_per_sample" in batch:
            got = batch["n_images_per_sample"].tolist()
            if got != n_images:
                problems.append(f"returned n_images_per_sample {got}, expected {n_images}")
        elif "image_grid_thw" in batch and batch["image_grid_thw"].shape[0] != sum(n_images):
            problems.append(
                f"returned {batch['image_grid_thw'].shape[0]} image_grid_thw rows for {sum(n_images)} image(s)"
            )
        elif sum(n_images) and "pixel_values" not in batch:
            problems.append(f"returned no pixel_values for {sum(n_images)} image(s)")
    return problems


def entry(case: dict) -> Callable:
    """The case's documented function from the active implementation (``documented_module:name``)."""
    documented, name = case["entry"].split(":")
    return impl.get(documented, name)


def run(
    case: dict, tmp_path: Path, check_batch: Callable[[Any], list[str]] | None = None, page_allowances: bool = True
) -> list[str]:
    """Call the case's function by keyword and return its problems (empty: the case passes).

    Where a case expects an error and the call returns a context manager (a return form the pages
    allow for staging), the context manager is entered and exited: an implementation may validate
    there. A case with ``then`` calls the returned callable with ``then["args"]`` and judges that call.
    ``check_batch`` adds an implementation's own rules for returned batches (returns problem lines).
    ``page_allowances=False`` ignores the cases' ``page_allows`` (the error is then the only pass: how
    vlmspec's own unit test holds vlmspec to its stricter behaviour).
    A missing optional dependency of the implementation is raised as ``impl.MissingDependency``.
    """
    from .bad_inputs import DOCUMENTED_IN_PLACE

    fn = entry(case)
    kwargs = build(case["kwargs"], tmp_path)
    before = snapshot(kwargs)
    allowed = case.get("page_allows") if page_allowances else None
    problems: list[str] = []
    exempt: tuple[str, ...] = ()
    stage = ""
    then_inputs: dict[str, Any] = {}
    try:
        result = fn(**kwargs)
        if "then" in case:
            stage = " when the returned callable was called"
            then_inputs = {"<returned callable>(args)": build(case["then"]["args"], tmp_path)}
            then_before = snapshot(then_inputs)
            if not callable(result):
                raise _NotCallable(result)
            result = result(*then_inputs["<returned callable>(args)"])
        if "raises" in case and _is_context_manager(result):
            stage = " on entering the returned context manager"
            with result:
                pass
    except _NotCallable as exc:
        problems.append(f"returned {type(exc.value).__name__}, not a callable (the page's return type)")
    except Exception as exc:  # noqa: BLE001 - judging the exception is the point
        _raise_if_missing_dependency(exc)
        problems += _judge_raised(case, exc, stage)
    else:
        if "raises" in case and allowed is not None:
            outcome_problems, exempt = _judge_allowed(case, allowed, result, kwargs, before, tmp_path, check_batch)
            if outcome_problems:
                how = " (the returned context manager entered and exited cleanly)" if stage else ""
                problems.append(
                    f"returned normally{how}; expected {case['raises']} naming "
                    f"{', '.join(map(repr, case['match']))}, or what the page allows "
                    f"({allowed['outcome']}), which does not hold: " + "; ".join(outcome_problems)
                )
        else:
            if "raises" in case:
                how = " (the returned context manager entered and exited cleanly)" if stage else ""
                problems.append(
                    f"returned normally (silent pass){how}; expected {case['raises']} naming "
                    f"{', '.join(map(repr, case['match']))}"
                )
            else:
                problems += batch_problems(result, case["ok"]["n_images_per_sample"])
                problems += check_batch(result) if check_batch is not None else []
            exempt = DOCUMENTED_IN_PLACE.get(case["entry"], ())  # a successful call may do what its page says
    changed = difference(
        {k: v for k, v in kwargs.items() if k not in exempt}, {k: v for k, v in before.items() if k not in exempt}
    )
    if changed is None and then_inputs:
        changed = difference(then_inputs, then_before)
    if changed is not None:
        problems.append(f"mutated the input: {changed}")
    return problems


class _NotCallable(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__(type(value).__name__)
        self.value = value


def _raise_if_missing_dependency(exc: BaseException) -> None:
    dependency = impl.missing_dependency(exc)
    if dependency is not None:
        raise impl.MissingDependency(dependency, _raised(exc)) from exc


# ---------------------------------------------------------------- outcomes the pages allow (page_allows)


def _judge_allowed(
    case: dict,
    allowed: dict,
    result: Any,
    kwargs: dict[str, Any],
    before: dict[str, Any],
    tmp_path: Path,
    check_batch: Callable[[Any], list[str]] | None,
) -> tuple[list[str], tuple[str, ...]]:
    """How ``result`` misses the page's permitted outcome (empty: it holds), and the in-place exemption."""
    from .bad_inputs import DOCUMENTED_IN_PLACE

    outcome = allowed["outcome"]
    if outcome == "noop":  # the documented effect on this input is empty: nothing may change, no exemption
        name = allowed.get("returns_arg")
        if name is not None and (diff := difference(result, before[name], f"<returned {name}>")) is not None:
            return [f"the return value is not the unchanged {name!r}: {diff}"], ()
        return [], ()
    if outcome == "batch":
        found = batch_problems(result, allowed.get("n_images_per_sample"))
        found += check_batch(result) if check_batch is not None and not found else []
        return found, DOCUMENTED_IN_PLACE.get(case["entry"], ())
    if outcome == "fake_image_conversation":
        (original,) = before.values()
        return fake_image_conversation_problems(result, original, next(iter(kwargs.values()))), ()
    if outcome == "deferred":
        return _deferred_problems(case, allowed, result, tmp_path), ()
    raise KeyError(f"case {case['id']}: unknown page_allows outcome {outcome!r}")


def _deferred_problems(case: dict, allowed: dict, result: Any, tmp_path: Path) -> list[str]:
    """The returned callable, called with ``allowed["args"]``, must raise the case's error; args unchanged."""
    if not callable(result):
        return [f"returned {type(result).__name__}, not a callable that could raise later"]
    args = build(allowed["args"], tmp_path)
    args_before = snapshot({"args": args})
    try:
        result(*args)
    except Exception as exc:  # noqa: BLE001
        _raise_if_missing_dependency(exc)
        found = _judge_raised(case, exc, " by the returned callable on its first call")
    else:
        found = ["the returned callable's first call returned normally too"]
    if (diff := difference({"args": args}, args_before)) is not None:
        found.append(f"its first call mutated its argument: {diff}")
    return found


def fake_image_conversation_problems(result: Any, original: Any, passed: Any = None) -> list[str]:
    """How ``result`` misses the fake-image conversation of ``original`` (see ``conformance/bad_inputs.py``).

    The first user message holds exactly one fake image (a 56x56 white PIL image item) plus its own
    content (``None`` → nothing, a string → one text item); every other message and key is unchanged;
    without a user message, one user message holding only the fake image is added. ``passed`` is the
    caller's object: the result must be a new one (a deep copy).
    """
    if not isinstance(result, list):
        return [f"returned {type(result).__name__}, not a conversation (a list of messages)"]
    if passed is not None and result is passed:
        return ["returned the caller's conversation object, not a deep copy"]
    users = [i for i, m in enumerate(result) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return ["returned a conversation without a user message"]
    first, message = users[0], result[users[0]]
    content = message.get("content")
    fakes = [j for j, item in enumerate(content) if _is_fake_image_item(item)] if isinstance(content, list) else []
    if len(fakes) != 1:
        return [
            f"the first user message (message {first}) holds {len(fakes)} fake image item(s) "
            f"(a 56x56 white image), expected 1: content {_short(repr(content))}"
        ]
    own = [item for j, item in enumerate(content) if j != fakes[0]]
    was = [i for i, m in enumerate(original) if isinstance(m, dict) and m.get("role") == "user"]
    if was:
        if first != was[0]:
            return [f"the fake image went to message {first}, not to the first user message {was[0]}"]
        want_own, want_others = _as_items(original[was[0]].get("content")), original[: was[0]] + original[was[0] + 1 :]
        want_keys = {k: v for k, v in original[was[0]].items() if k != "content"}
    else:
        want_own, want_others, want_keys = [], list(original), {"role": "user"}
    found = []
    if (diff := difference(result[:first] + result[first + 1 :], want_others, "<other messages>")) is not None:
        found.append(f"changed the other messages: {diff}")
    if (diff := difference(own, want_own, f"[{first}]['content']")) is not None:
        found.append(f"changed the user message's own content: {diff}")
    if (diff := difference({k: v for k, v in message.items() if k != "content"}, want_keys, f"[{first}]")) is not None:
        found.append(f"changed the user message: {diff}")
    return found


def _is_fake_image_item(item: Any) -> bool:
    if not (isinstance(item, dict) and item.get("type") == "image" and isinstance(item.get("image"), Image.Image)):
        return False
    img = item["image"]
    return img.size == (56, 56) and img.convert("RGB").getextrema() == ((255, 255),) * 3


def _as_items(content: Any) -> list:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else [content]


def _is_context_manager(value: Any) -> bool:
    return hasattr(value, "__enter__") and hasattr(value, "__exit__") and not isinstance(value, torch.nn.Module)


def _judge_raised(case: dict, exc: Exception, stage: str = "") -> list[str]:
    """The problem with ``exc`` for ``case`` (``stage``: where it was raised, when not by the call)."""
    raised = f"raised{stage}"
    if "ok" in case:
        return [f"{raised} {_raised(exc)}; the documented handling returns a batch"]
    name = type(exc).__name__
    if name != case["raises"]:
        if name in ("ValueError", "TypeError"):
            return [f"{raised} {_raised(exc)} (expected {case['raises']})"]
        return [f"{raised} {_raised(exc)} (not ValueError/TypeError)"]
    message = str(exc)
    missing = [m for m in case["match"] if m not in message]
    if missing:
        return [f"{raised} {name} but the message lacks {', '.join(map(repr, missing))}: {_short(message)!r}"]
    return []
