"""Check ``pp_staged_forward``: the family's tiny model split by the harness into K in {2, 3} stages,
patched by the implementation, run stage after stage on every ``torch.tensor_split`` microbatch with its
media staged to stage 0, gives the unsplit HF model's logits and loss within fp32 round-off.

Only documented names of the implementation are used: ``model_keeps_self_forward`` /
``patch_hf_model_for_pp`` (in the harness split), ``prepare_vlm_media_for_pp``, ``stage_vlm_media_for_pp``
and ``validate_hf_model_for_pipeline_support``. A model the implementation's own validator refuses and
whose staged run then fails is reported as *declared unsupported* (a skip naming both), not as a deviation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from ..checks import IGNORE, header
from ..fake_checks import model_inputs
from ..loading import load_tiny_model
from ..registry import FamilySpec
from .batches import (
    PipelineHandle,
    PipelineInfo,
    collated,
    describe_error,
    fallback_note,
    microbatches,
    prepare,
    stage_inputs,
    staged_media,
    supervised_loss,
)
from .spec import ATOL, GRID, STAGE_COUNTS, fixture_ids, layers_per_stage, pp_api, raise_all, uses_mrope, where
from .split import split_stages, untied

_STAGES: dict[tuple[str, int], list[nn.Module]] = {}


_UNTIED: dict[str, nn.Module] = {}


def tiny_model(spec: FamilySpec) -> nn.Module:
    """The family's tiny model as pipelined: input and output embeddings untied (equal values, two tensors).

    A pipeline keeps ``embed_tokens`` on the first stage and ``lm_head`` on the last, so they are two
    parameters whatever the config says (the documented ``validate_hf_model_for_pipeline_support`` refuses a
    model whose two share one tensor). Untying here gives the unsplit reference the same parameters as
    the stages, with logits unchanged, and lets an implementation's validator judge the model itself.
    """
    if spec.model_id not in _UNTIED:
        _UNTIED[spec.model_id] = untied(load_tiny_model(spec.model_id, spec.model_class))
    return _UNTIED[spec.model_id]


def stages_for(spec: FamilySpec, n_stages: int) -> list[nn.Module]:
    """One harness split of the family's tiny model per stage count, reused across the B x n grid."""
    key = (spec.model_id, n_stages)
    if key not in _STAGES:
        _STAGES[key] = split_stages(tiny_model(spec), n_stages, layers_per_stage(spec, n_stages))
    return _STAGES[key]


def declared_unsupported(model: nn.Module) -> str | None:
    """The implementation's ``validate_hf_model_for_pipeline_support`` refusal of ``model``, if any."""
    try:
        pp_api("validate_hf_model_for_pipeline_support")(model=model)
    except (ValueError, TypeError, NotImplementedError) as exc:
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return None


_REFUSALS: dict[str, str | None] = {}


def refusal_of(spec: FamilySpec) -> str | None:
    """``declared_unsupported`` of the family's pipelined tiny model, asked once per process."""
    if spec.model_id not in _REFUSALS:
        _REFUSALS[spec.model_id] = declared_unsupported(tiny_model(spec))
    return _REFUSALS[spec.model_id]


def skip_if_declared_unsupported(spec: FamilySpec, check: str, problems: list[str]) -> None:
    """A failing PP check on a model the implementation itself refuses is a documented limitation: skip
    with the refusal and the first problem, so the verdict stays visible without counting as a deviation."""
    if not problems:
        return
    refusal = refusal_of(spec)
    if refusal is not None:
        pytest.skip(
            f"declared unsupported: validate_hf_model_for_pipeline_support refuses "
            f"{type(tiny_model(spec)).__name__} ({refusal[:300]}); the {check} run confirms it: "
            f"{problems[0][:300]}"
        )


def reference_logits(spec: FamilySpec, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The unsplit, unpatched HF model on the whole batch (HF derives its own positions): ``[B, L, V]``."""
    with torch.no_grad():
        return tiny_model(spec)(**model_inputs(batch)).logits


class _RotarySpy:
    """Records the position ids each stage's text rotary embedding receives (M-RoPE families)."""

    def __init__(self, stages: list[nn.Module]):
        self.seen: list[torch.Tensor | None] = [None] * len(stages)
        self.handles = []
        for s, stage in enumerate(stages):
            for name, module in stage.named_modules():
                if name.endswith("language_model.rotary_emb"):
                    self.handles.append(module.register_forward_pre_hook(self._hook(s)))

    def _hook(self, s: int):
        def record(module, args):
            self.seen[s] = args[1]

        return record

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def staged_problems(
    spec: FamilySpec, batch_size: int, n: int, n_stages: int, ref: torch.Tensor, ids: tuple[str, ...] | None = None
) -> list[str]:
    """Run the split model stage after stage per microbatch; compare logits and loss with ``ref``, the
    unsplit model's logits on the same batch (``ids``: its fixtures, default the record's staged ones)."""
    ids = ids or fixture_ids(spec, batch_size, "staged_fixtures")
    batch = collated(spec, ids)
    stages = stages_for(spec, n_stages)
    at = lambda k=None: where(spec, "pp_staged_forward", ids, batch_size, n, k, n_stages)  # noqa: E731
    try:
        prepared = prepare(stage_inputs(spec, batch, tiny_model(spec)), batch_size, n)
    except Exception as exc:  # CheckFailure or a crash inside the implementation: this cell's evidence
        return [
            f"{at()} prepare_vlm_media_for_pp: {exc}"
            if isinstance(exc, AssertionError)
            else f"{at()} prepare_vlm_media_for_pp raised {describe_error(exc)}"
        ]
    pp = PipelineHandle(PipelineInfo(has_first_stage=True, has_last_stage=True, stages=list(stages)))
    labels = batch["labels"]
    n_targets = max(int((labels != IGNORE).sum()), 1)
    rows = torch.tensor_split(torch.arange(batch_size), n)
    problems, loss = [], torch.zeros(())
    spy = _RotarySpy(stages) if uses_mrope(spec) else None
    try:
        with torch.no_grad(), staged_media(pp, stages[:1], prepared) as pp_batch:
            for k, ((x, kwargs), want, lab) in enumerate(
                zip(microbatches(pp_batch, n), torch.tensor_split(ref, n), torch.tensor_split(labels, n))
            ):
                try:
                    for stage in stages:
                        x = stage(x, **kwargs)
                except Exception as exc:  # an error inside the implementation fails the check, with context
                    problems.append(f"{at(k)} {describe_error(exc)}")
                    continue
                if spy is not None:
                    problems += _mrope_problems(at(k), spy.seen, kwargs["mrope_position_ids"])
                if not isinstance(x, torch.Tensor) or x.shape != want.shape:
                    got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                    problems.append(f"{at(k)} staged logits {got} vs unsplit {tuple(want.shape)}")
                    continue
                loss = loss + supervised_loss(x, lab, n_targets)
                worst = x.sub_(want).abs_().amax(-1)  # in place: [b, L, V] logits are large
                if worst.numel() and not float(worst.max()) <= ATOL:
                    problems.append(
                        f"{at(k)} max |Δlogit| = {float(worst.max()):.3e} > {ATOL:g} at "
                        f"{int((worst > ATOL).sum())} of {worst.numel()} positions (samples {rows[k].tolist()})"
                    )
    finally:
        if spy is not None:
            spy.close()
    if not problems:
        ref_loss = supervised_loss(ref, labels, n_targets)
        if not abs(float(loss - ref_loss)) <= ATOL:
            problems.append(
                f"{at()} loss {float(loss):.8f} vs unsplit {float(ref_loss):.8f} "
                f"(|Δ| = {abs(float(loss - ref_loss)):.3e} > {ATOL:g})"
            )
    return problems


def _mrope_problems(at: str, seen: list[torch.Tensor | None], expected_batch_first: torch.Tensor) -> list[str]:
    """Every stage's rotary embedding got this microbatch's 3-D positions ``[3, b, L]`` (no 1-D fallback)."""
    expected = expected_batch_first.transpose(0, 1)
    out = []
    for s, positions in enumerate(seen):
        if positions is None or positions.shape != expected.shape or not torch.equal(positions, expected):
            if positions is None:
                got = "no positions"
            else:
                flat = positions.ndim == 3 and all(torch.equal(positions[0], row) for row in positions[1:])
                got = f"positions {tuple(positions.shape)}" + (
                    " whose t/h/w rows are identical (1-D fallback)" if flat else ""
                )
            out.append(
                f"{at} stage {s} rotary embedding got {got}, not this microbatch's 3-D M-RoPE ids "
                f"{tuple(expected.shape)}"
            )
    return out


def fair_threads() -> int:
    """Torch threads for this process: its share of the cores when pytest-xdist runs several workers.

    Two workers with torch's default thread count each on two cores oversubscribe the CPU; the
    lm_head matmuls of the staged grid then take several times longer.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers <= 1:
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) // workers)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


PROBE = (3, 2, 2)
"""(B, n, K) run first on a model the implementation's validator refuses: it confirms the refusal cheaply."""


def check_staged_forward(spec: FamilySpec) -> None:
    """The whole B x n x K grid (one reference forward per B); one failure lists every mismatch.

    On a model the implementation declares unsupported, one probe cell runs first; if it fails, the
    check is a skip quoting the refusal and the probe's failure (the full grid would only repeat it).
    """
    # torch's threads are this worker's share of the cores already (the plugin sets them per xdist worker)
    if refusal_of(spec) is not None:
        batch_size, n, n_stages = PROBE
        ref = reference_logits(spec, collated(spec, fixture_ids(spec, batch_size, "staged_fixtures")))
        skip_if_declared_unsupported(spec, "pp_staged_forward", staged_problems(spec, batch_size, n, n_stages, ref))
    problems = _staged_grid(spec)
    skip_if_declared_unsupported(spec, "pp_staged_forward", problems)
    raise_all(fallback_note(spec) + problems if problems else [], "staged-forward mismatch(es)")


def _staged_grid(spec: FamilySpec) -> list[str]:
    problems = []
    for batch_size in sorted({b for b, _ in GRID}):
        batch = collated(spec, fixture_ids(spec, batch_size, "staged_fixtures"))
        ref = reference_logits(spec, batch)
        for n_stages in STAGE_COUNTS:
            problems += [p for b, n in GRID if b == batch_size for p in staged_problems(spec, b, n, n_stages, ref)]
        if batch_size == max(b for b, _ in GRID) and uses_mrope(spec):
            problems += mrope_exercised(spec, batch, ref)
        del ref
    ids = media_fixtures(spec)
    if ids:
        ref = reference_logits(spec, collated(spec, ids))
        for n_stages in STAGE_COUNTS:
            for n in range(2, min(len(ids), 3) + 1):
                problems += staged_problems(spec, len(ids), n, n_stages, ref, ids)
    return problems


VIDEO_BATCH = ("video_and_image_one_turn", "text_only_string_content", "video_short_clip")
"""The staged grid's media batch for families whose record declares video: a video next to an image, a
text-only sample, a video alone; every n in {2, 3} puts the videos in different microbatches."""


def media_fixtures(spec: FamilySpec) -> tuple[str, ...]:
    """The media batch of the staged (and distributed) run: the record's ``pp.media_staged_fixtures``,
    else ``VIDEO_BATCH`` for families with video (and a video chunking batch), else none."""
    pp = spec.extra.get("pp") or {}
    if "media_staged_fixtures" in pp:
        return tuple(pp["media_staged_fixtures"])
    if "video" in spec.media and pp.get("video_fixtures") != []:
        return VIDEO_BATCH
    return ()


def mrope_exercised(spec: FamilySpec, batch: dict[str, torch.Tensor], ref: torch.Tensor) -> list[str]:
    """Guard against a vacuous pass: on this batch, 1-D positions would change the logits."""
    positions = stage_inputs(spec, batch, tiny_model(spec))["mrope_position_ids"]
    one_d = torch.arange(positions.shape[-1]).view(1, 1, -1).expand(3, positions.shape[0], -1)
    with torch.no_grad():
        logits = tiny_model(spec)(**model_inputs(batch), position_ids=one_d).logits
    if float(logits.sub_(ref).abs_().max()) <= ATOL:
        return [
            f"{header(spec, 'B=5', 'pp_staged_forward')} 1-D positions give the 3-D logits; this batch "
            "cannot tell M-RoPE from a 1-D fallback"
        ]
    return []
