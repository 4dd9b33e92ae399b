"""Records for models nobody registered, derived from their processor and ``config.json``.

``pytest conformance --model ID`` for an id with no record loads the processor from the HF cache
(offline) or the Hub (``--online``) and derives what a record would say, by probing the processor:

- **vision tokens**: the special/added tokens that one image adds to a conversation's ids;
- **the PP image rule**: the candidate ``tokens_per_image`` rules of :mod:`conformance.pp.spec` are
  evaluated on the processor's media for several image sizes, and the first one that reproduces the
  placeholder count of every size is taken;
- **the tiny model**: the real config shrunk (:mod:`conformance.tiny`), its class from
  ``config.architectures``, the vision tower found among the usual module names;
- **the staged fixtures**: the shortest corpus rows with 1, 0, 2, 0 and 1 images.

A check that cannot be derived does not run, and the record's notes say why. Checks whose known
failures live only in reviewed records (``fake_image_mixed_batch``, ``template_behaviour``) and the
slow multi-process ``pp_distributed`` need a registered record.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .checks import _images_in, processor_ids
from .corpus import load_corpus
from .oracle import _closing_kinds, renderer
from .registry import CHECKS, FamilySpec

PROBE_SIZES = ((56, 56), (112, 84), (200, 130), (320, 240), (1000, 800))
VISION_PROBE_SIZES = ((112, 84), (1000, 800))
VISION_MODULES = (
    "model.visual",
    "model.vision_tower",
    "model.vision_model",
    "visual",
    "vision_tower",
    "vision_model",
    "model.vision_encoder",
)
NEEDS_A_RECORD = {
    "fake_image_mixed_batch": "needs a registered record: known failures of mixed batches are recorded per family",
    "template_behaviour": "needs a registered record: template quirks are written down by a reviewer",
    "pp_distributed": "needs a registered record: two gloo ranks per model are the slow tier",
    "pp_golden": "needs a registered record: its stage layout is reviewed once per family",
}


@dataclass(frozen=True)
class Derived:
    """A derived record, and why each check it leaves out does not run."""

    spec: FamilySpec
    not_run: dict[str, str]


def _probe_conversation(image: Image.Image | None) -> list[dict[str, Any]]:
    user = [{"type": "text", "text": "What is in the picture?"}]
    if image is not None:
        user.insert(0, {"type": "image", "image": image})
    return [
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"type": "text", "text": "A square."}]},
    ]


def _encode(processor: Any, image: Image.Image | None) -> dict[str, Any]:
    rendered = renderer(processor).apply_chat_template(_probe_conversation(image), tokenize=False)
    kwargs = {"images": [image]} if image is not None else {}
    return processor(text=[rendered], return_tensors="pt", add_special_tokens=False, **kwargs)


def vision_tokens(processor: Any) -> tuple[list[str], str | None]:
    """(special/added tokens that images add to the ids, the image placeholder token or None).

    Probed with a small and a large image (some processors add crop markers to large images only);
    whitespace tokens are text even where a vocabulary lists them as added (Gemma's ``"\n\n"``). The
    placeholder is the added token an image repeats most (the one that receives image features).
    """
    tok = processor.tokenizer
    structural = _closing_kinds(tok)  # the tokenizer's special and added tokens
    without = set(_encode(processor, None)["input_ids"][0].tolist())
    added: Counter = Counter()
    for size in VISION_PROBE_SIZES:
        ids = _encode(processor, Image.new("RGB", size, (120, 30, 200)))["input_ids"][0].tolist()
        added.update(t for t in ids if t not in without and t in structural and tok.decode([t]).strip())
    names = [tok.convert_ids_to_tokens(t) for t in sorted(added)]
    placeholder = tok.convert_ids_to_tokens(added.most_common(1)[0][0]) if added else None
    return names, placeholder


def audio_tokens(processor: Any) -> list[str]:
    """The processor's declared audio tokens that its tokenizer knows (``audio_token``, ``audio_bos_token``, ...).

    No conformance check reads audio yet; the derived record's notes name them so a reviewer sees them.
    """
    tok = processor.tokenizer
    found = []
    for name in sorted(vars(processor)):
        value = getattr(processor, name, None)
        if "audio" in name and name.endswith("token") and isinstance(value, str) and value not in found:
            tid = tok.convert_tokens_to_ids(value)
            if isinstance(tid, int) and tid != tok.unk_token_id:
                found.append(value)
    return found


def _candidates(media_keys: set[str]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for key in sorted(k for k in media_keys if k.startswith("image_grid_")):
        rules += [
            {"kind": "grid", "merge": m, **({"grid_key": key} if key != "image_grid_thw" else {})} for m in (1, 2, 3, 4)
        ]
    if "image_position_ids" in media_keys:
        rules += [{"kind": "valid_patches", "pool": p} for p in (1, 2, 3, 4)]
    if "image_sizes" in media_keys:
        rules += [{"kind": "image_sizes", "pixels": p} for p in (14, 16, 28, 32, 56, 64)]
    if {"image_sizes", "image_attention_mask"} <= media_keys:
        rules += [{"kind": "phi4_hd", "crop": c, "global": g} for c in (224, 336, 384, 448, 512) for g in range(8, 33)]
    return rules


def _local_crops_rule(probes: list[tuple[dict, int]]) -> dict[str, Any] | None:
    """``local_crops`` solved from two probes with different crop counts (checked on all by the caller)."""
    points = {int(media["num_local_patches"].sum()): n for media, n in probes if "num_local_patches" in media}
    if len(points) < 2:
        return None
    (c0, n0), (c1, n1) = sorted(points.items())[:2]
    per_crop, rest = divmod(n1 - n0, c1 - c0)
    if rest or per_crop < 0 or n0 - per_crop * c0 < 0:
        return None
    return {"kind": "local_crops", "global": n0 - per_crop * c0, "per_crop": per_crop}


def tokens_per_image_rule(processor: Any, image_token: str) -> dict[str, Any] | None:
    """The first candidate rule that reproduces the placeholder count for every probe size, or None."""
    from .pp.spec import tokens_per_image

    tid = processor.tokenizer.convert_tokens_to_ids(image_token)
    probes = []
    for size in PROBE_SIZES:
        out = _encode(processor, Image.new("RGB", size, (120, 30, 200)))
        probes.append((dict(out), int((out["input_ids"] == tid).sum())))
    # the corpus images too: the rule must hold on what the PP checks will feed it
    for image in _corpus_single_images():
        out = _encode(processor, image)
        probes.append((dict(out), int((out["input_ids"] == tid).sum())))
    keys = set(probes[0][0])
    counts = {n for _, n in probes}
    rules = _candidates(keys)
    local = _local_crops_rule(probes)
    if local is not None:
        rules.append(local)
    if len(counts) == 1 and "pixel_values" in keys and all(o["pixel_values"].shape[0] == 1 for o, _ in probes):
        rules.append({"kind": "fixed", "tokens": counts.pop()})
    for rule in rules:
        probe_spec = FamilySpec(
            model_id="(probe)",
            family="",
            processor_class="",
            collate="auto",
            checks=(),
            extra={"pp": {"image_token": image_token, "tokens_per_image": rule}},
        )
        try:
            if all(tokens_per_image(probe_spec, media) == [n] for media, n in probes):
                return rule
        except Exception:  # a rule that reads a key this processor's media lack is simply not the rule
            continue
    return None


def _corpus_single_images() -> list[Image.Image]:
    """Every corpus image that is the only image of its conversation (RGB)."""
    images = []
    for case in load_corpus():
        if not case.media <= {"image"}:
            continue  # a derived record declares images only (its video/audio cases do not run)
        found = _images_in(case.conversation)
        if len(found) == 1:
            images.append(found[0].convert("RGB"))
    return images


def staged_fixtures(processor: Any) -> list[str]:
    """The shortest corpus rows with 1, 0, 2, 0, 1 images (processor ids), for a cheap staged grid."""
    by_images: dict[int, list[tuple[int, str]]] = {}
    for case in load_corpus():
        if not case.media <= {"image"}:
            continue  # a derived record declares images only
        conversation = case.conversation
        n = len(_images_in(conversation))
        by_images.setdefault(n, []).append((len(processor_ids(processor, conversation)[0]), case.id))
    ranked = {n: [cid for _, cid in sorted(rows)] for n, rows in by_images.items()}
    picks, used = [], Counter()
    for n in (1, 0, 2, 0, 1):
        rows = ranked.get(n) or ranked[0]
        picks.append(rows[used[n] % len(rows)])
        used[n] += 1
    return picks


def _model_class(config: Any) -> type | None:
    import transformers

    for name in getattr(config, "architectures", None) or ():
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    return None


def vision_module(model: Any) -> str | None:
    from .loading import resolve_module

    for path in VISION_MODULES:
        try:
            resolve_module(model, path)
        except AttributeError:
            continue
        return path
    return None


def _mrope(config: Any) -> bool:
    text = getattr(config, "text_config", None) or config
    for key in ("rope_parameters", "rope_scaling"):
        rope = getattr(text, key, None)
        if isinstance(rope, dict) and "mrope_section" in rope:
            return True
    return False


def derive_record(model_id: str, processor: Any, source: str) -> Derived:
    """The record of an unregistered *model_id* whose processor came from *source* (``cache``/``hub``)."""
    from transformers import AutoConfig

    from .loading import load_tiny_model
    from .tiny import NotShrinkable

    not_run = dict(NEEDS_A_RECORD)
    checks = ["labels", "label_consistency", "golden"]
    try:
        names, image_token = vision_tokens(processor)
    except Exception as exc:  # no chat template, no image input: the label checks will say so themselves
        names, image_token = [], None
        not_run["vision_tokens"] = f"probing the processor with an image failed: {type(exc).__name__}: {exc}"
    spec_kwargs: dict[str, Any] = {"vision_tokens": tuple(names)}
    if names:
        checks.append("vision_tokens")
    else:
        not_run.setdefault("vision_tokens", "an image adds no special token to this processor's ids")
    model_class = None
    try:
        config = AutoConfig.from_pretrained(model_id)
    except Exception as exc:
        config = None
        why = f"no config.json from the {source} ({type(exc).__name__})"
    if config is not None:
        cls = _model_class(config)
        why = "" if cls is not None else f"transformers has no class among architectures {config.architectures}"
        if cls is not None:
            try:
                model = load_tiny_model(model_id, cls.__name__)
                model_class = cls.__name__
                spec_kwargs["vision_module"] = vision_module(model)
            except NotShrinkable as exc:
                why = str(exc)
    if model_class is not None and names and spec_kwargs.get("vision_module"):
        checks.append("fake_image")
        spec_kwargs["model_class"] = model_class
    else:
        not_run["fake_image"] = why or (
            "no vision tokens" if not names else f"no vision tower among {', '.join(VISION_MODULES)}"
        )
    pp: dict[str, Any] = {}
    rule = tokens_per_image_rule(processor, image_token) if image_token else None
    if rule is None:
        not_run["pp_chunking"] = not_run["pp_staged_forward"] = (
            "no image placeholder token"
            if not image_token
            else "no tokens_per_image rule of conformance/pp/spec.py reproduces this processor's placeholder counts"
        )
    else:
        pp = {"image_token": image_token, "tokens_per_image": rule, "staged_fixtures": staged_fixtures(processor)}
        if config is not None and _mrope(config):
            pp["position_ids"] = "mrope"
        checks.append("pp_chunking")
        if model_class is not None:
            checks.append("pp_staged_forward")
            spec_kwargs["model_class"] = model_class
        else:
            not_run["pp_staged_forward"] = why
    ordered = tuple(c for c in CHECKS if c in checks)
    notes = f"derived from the {source}; not run: " + "; ".join(f"{c}: {r}" for c, r in sorted(not_run.items()))
    audio = audio_tokens(processor)
    if audio:
        notes += f"; audio tokens {', '.join(audio)} (no check reads audio yet)"
    spec = FamilySpec(
        model_id=model_id,
        family=model_id.split("/")[0].lower(),
        processor_class=type(processor).__name__,
        collate="auto",
        checks=ordered,
        registered=False,
        extra={"pp": pp, "notes": notes} if pp else {"notes": notes},
        **spec_kwargs,
    )
    return Derived(spec, {c: r for c, r in not_run.items() if c not in ordered})
