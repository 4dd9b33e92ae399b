"""Runs vlmspec's bad-input table (tests/bad_inputs.py: the conformance table plus vlmspec-only cases)
through the conformance runner (conformance/robustness.py): a clear ValueError/TypeError naming the
sample and field, or the documented handling — and the caller's inputs unchanged, compared deeply.

On top of the conformance rules, vlmspec's own conventions for a returned batch: it carries
``n_images_per_sample`` and its pixels are bfloat16. And vlmspec raises the error in every ``raises``
case: the outcomes a page also permits (``page_allows``, accepted by the conformance check for any
implementation) do not count here.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from conformance import impl, robustness
from conformance.bad_inputs import PAGE_OUTCOMES
from tests.bad_inputs import CASES


def _vlmspec_batch_rules(want_images: list[int] | None):
    def check(batch) -> list[str]:
        problems = []
        if want_images is not None and "n_images_per_sample" not in batch:
            problems.append("returned no n_images_per_sample")
        for key in ("pixel_values", "pixel_values_videos"):
            if key in batch and batch[key].dtype != torch.bfloat16:
                problems.append(f"returned {key} as {batch[key].dtype}, not bfloat16")
        return problems

    return check


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input(case, tmp_path):
    rules = _vlmspec_batch_rules(case["ok"]["n_images_per_sample"]) if "ok" in case else None
    problems = robustness.run(case, tmp_path, check_batch=rules, page_allowances=False)
    assert not problems, "\n".join(problems)


def test_table_is_large_and_ids_unique():
    ids = [c["id"] for c in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    for c in CASES:
        assert ("raises" in c) != ("ok" in c), c["id"]
        assert c.get("raises") in (None, "ValueError", "TypeError"), c["id"]
        assert set(c) <= {"id", "entry", "kwargs", "raises", "match", "ok", "page_allows", "then"}, c["id"]
        if "then" in c:
            assert set(c["then"]) == {"args"} and isinstance(c["then"]["args"], list), c["id"]
        if "page_allows" in c:
            allowed = c["page_allows"]
            assert "raises" in c, f"{c['id']}: page_allows is an alternative to an error"
            assert allowed["outcome"] in PAGE_OUTCOMES and len(allowed["page"]) > 40, c["id"]
            extra = {"noop": {"returns_arg"}, "batch": {"n_images_per_sample"}, "deferred": {"args"}}.get(
                allowed["outcome"], set()
            )
            assert set(allowed) - {"outcome", "page"} <= extra, c["id"]
            assert allowed["outcome"] != "deferred" or isinstance(allowed.get("args"), list), c["id"]
            assert allowed.get("returns_arg") in (None, *c["kwargs"]), c["id"]


def test_cases_call_documented_parameters_by_keyword():
    """Every kwarg is a parameter of the entry point: the table never relies on a positional order."""
    for c in CASES:
        params = inspect.signature(robustness.entry(c)).parameters
        assert set(c["kwargs"]) <= set(params), (c["id"], sorted(set(c["kwargs"]) - set(params)))


def test_table_covers_every_public_entry_point():
    cf, fi, pp = (impl.module(m) for m in ("collate_fns", "fake_image", "pp_media"))

    entries = {c["entry"] for c in CASES}
    collates = [n for n in dir(cf) if not n.startswith("_") and inspect.isfunction(getattr(cf, n))]
    wanted = [f"collate_fns:{n}" for n in collates]
    # "__mutmut_": the copies of each function that mutmut's instrumentation adds (./dev mutate), not API
    wanted += [
        f"fake_image:{n}"
        for n in dir(fi)
        if not n.startswith("_")
        and "__mutmut_" not in n
        and inspect.isfunction(getattr(fi, n))
        and getattr(fi, n).__module__ == fi.__name__
    ]
    wanted += [f"pp_media:{n}" for n in pp.__all__ if inspect.isfunction(getattr(pp, n))] + [
        "pp_media:chunk_step3_media"
    ]
    wanted += [
        f"pipelining:{n}"
        for n in (
            "split_hf_model_into_stages",
            "patch_hf_model_for_pp",
            "validate_hf_model_for_pipeline_support",
            "init_hf_model_buffers",
        )
    ]
    assert len(collates) >= 15
    assert sorted(set(wanted) - entries) == []


# ---------------------------------------------------------------- the runner's verdicts, on synthetic functions


def _verdict(monkeypatch, tmp_path, fn, expect: dict, entry: str = "collate_fns:synthetic", **kwargs) -> list[str]:
    monkeypatch.setattr(robustness, "entry", lambda case: fn)
    return robustness.run({"id": "synthetic", "entry": entry, "kwargs": kwargs, **expect}, tmp_path)


BAD = {"raises": "ValueError", "match": ["sample 1", "'conversation'"]}


def test_runner_passes_the_expected_error(monkeypatch, tmp_path):
    def fn(examples):
        raise ValueError("sample 1: 'conversation' is missing")

    assert _verdict(monkeypatch, tmp_path, fn, BAD, examples=[]) == []


def test_runner_reports_a_silent_pass(monkeypatch, tmp_path):
    assert _verdict(monkeypatch, tmp_path, lambda examples: {}, BAD, examples=[]) == [
        "returned normally (silent pass); expected ValueError naming 'sample 1', \"'conversation'\""
    ]


def test_runner_reports_the_wrong_exception_type(monkeypatch, tmp_path):
    def fn(examples):
        raise KeyError("audio")

    assert _verdict(monkeypatch, tmp_path, fn, BAD, examples=[]) == [
        "raised KeyError: 'audio' (not ValueError/TypeError)"
    ]


def test_runner_reports_a_subclass_as_the_wrong_type(monkeypatch, tmp_path):
    def fn(examples):
        raise UnicodeEncodeError("utf-8", "x", 0, 1, "sample 1 'conversation'")

    assert _verdict(monkeypatch, tmp_path, fn, BAD, examples=[])[0].startswith("raised UnicodeEncodeError")


def test_runner_reports_what_the_message_lacks(monkeypatch, tmp_path):
    def fn(examples):
        raise ValueError("bad sample")

    assert _verdict(monkeypatch, tmp_path, fn, BAD, examples=[]) == [
        "raised ValueError but the message lacks 'sample 1', \"'conversation'\": 'bad sample'"
    ]


def test_runner_reports_the_path_of_a_mutation(monkeypatch, tmp_path):
    def fn(examples):
        examples[1]["conversation"][0]["role"] = "user"
        raise ValueError("sample 1: 'conversation' has an unknown role")

    examples = [{"conversation": []}, {"conversation": [{"role": "narrator"}]}]
    assert _verdict(monkeypatch, tmp_path, fn, BAD, examples=examples) == [
        "mutated the input: ['examples'][1]['conversation'][0]['role']: 'narrator' became 'user'"
    ]


def test_runner_compares_images_by_pixels(monkeypatch, tmp_path):
    def fn(examples):
        item = examples[0]
        item["image"] = item["image"].convert("RGB")
        return {}

    got = _verdict(monkeypatch, tmp_path, fn, BAD, examples=[{"image": {"$image": [8, 8, "RGBA"]}}])
    assert got[-1] == "mutated the input: ['examples'][0]['image']: image mode 'RGBA' became 'RGB'"


def test_runner_enters_a_returned_context_manager(monkeypatch, tmp_path):
    import contextlib

    @contextlib.contextmanager
    def fn(batch):
        batch.pop("x")
        yield

    got = _verdict(monkeypatch, tmp_path, fn, {"raises": "TypeError", "match": ["batch"]}, batch=None)
    assert got == [
        "raised on entering the returned context manager AttributeError: 'NoneType' object has no "
        "attribute 'pop' (not ValueError/TypeError)"
    ]


def test_documented_in_place_change_is_allowed_only_after_success(monkeypatch, tmp_path):
    def moves(batch, batch_size, n_microbatches):
        batch.pop("pixel_values")
        return batch

    def moves_then_fails(batch, batch_size, n_microbatches):
        batch.pop("pixel_values")
        raise ValueError("n_microbatches must be >= 1")

    expect = {"raises": "ValueError", "match": ["n_microbatches"]}
    kwargs = {"batch": {"pixel_values": {"$zeros": [2, 2]}}, "batch_size": 2, "n_microbatches": 0}
    entry = "pp_media:prepare_vlm_media_for_pp"
    assert _verdict(monkeypatch, tmp_path, moves, expect, entry, **kwargs) == [
        "returned normally (silent pass); expected ValueError naming 'n_microbatches'"
    ]
    assert _verdict(monkeypatch, tmp_path, moves_then_fails, expect, entry, **kwargs) == [
        "mutated the input: ['batch']: keys removed ['pixel_values']"
    ]


def test_runner_reports_an_ok_case_that_raises_or_breaks_the_labels(monkeypatch, tmp_path):
    def raises(examples):
        raise OSError("cannot convert")

    def unsupervised(examples):
        ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "labels": torch.tensor([[2, 3, -100], [-100] * 3]),
        }

    expect = {"ok": {"n_images_per_sample": None}}
    assert _verdict(monkeypatch, tmp_path, raises, expect, examples=[]) == [
        "raised OSError: cannot convert; the documented handling returns a batch"
    ]
    assert _verdict(monkeypatch, tmp_path, unsupervised, expect, examples=[]) == [
        "returned no supervised token for sample(s) [1], whose answers are not empty"
    ]


# ---------------------------------------------------------------- outcomes a page allows (page_allows), and "then"


def _allowing(outcome: str, **details) -> dict:
    return {
        "raises": "ValueError",
        "match": ["n_microbatches"],
        "page_allows": {"outcome": outcome, "page": "the page's words", **details},
    }


def test_page_allowance_counts_only_when_asked(monkeypatch, tmp_path):
    def noop(batch):
        return None

    expect = _allowing("noop")
    kwargs = {"batch": {"x": {"$tensor": [1]}}}
    assert _verdict(monkeypatch, tmp_path, noop, expect, **kwargs) == []
    monkeypatch.setattr(robustness, "entry", lambda case: noop)
    strict = robustness.run(
        {"id": "s", "entry": "collate_fns:synthetic", "kwargs": kwargs, **expect}, tmp_path, page_allowances=False
    )
    assert strict == ["returned normally (silent pass); expected ValueError naming 'n_microbatches'"]


def test_noop_allowance_forbids_even_a_documented_in_place_change(monkeypatch, tmp_path):
    def masks(batch, processor, sample_indices):
        batch["attention_mask"][0] = 0

    got = _verdict(
        monkeypatch,
        tmp_path,
        masks,
        _allowing("noop"),
        "fake_image:mask_fake_vision_tokens_batch",
        batch={"attention_mask": {"$tensor": [1, 1]}},
        processor=None,
        sample_indices=None,
    )
    assert got == ["mutated the input: ['batch']['attention_mask']: tensor values changed"]


def test_noop_allowance_checks_the_returned_argument(monkeypatch, tmp_path):
    expect = _allowing("noop", returns_arg="batch")
    kwargs = {"batch": {"x": {"$tensor": [1]}}, "processor": None}
    assert _verdict(monkeypatch, tmp_path, lambda batch, processor: batch, expect, **kwargs) == []
    got = _verdict(monkeypatch, tmp_path, lambda batch, processor: {}, expect, **kwargs)
    assert len(got) == 1 and "what the page allows (noop), which does not hold" in got[0]
    assert "the return value is not the unchanged 'batch'" in got[0]


def test_batch_allowance_applies_the_label_contract(monkeypatch, tmp_path):
    def good(examples):
        ids = torch.tensor([[1, 2, 3]])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([[2, 3, -100]])}

    def unsupervised(examples):
        return {**good(examples), "labels": torch.full((1, 3), -100)}

    expect = _allowing("batch", n_images_per_sample=None)
    assert _verdict(monkeypatch, tmp_path, good, expect, examples=[]) == []
    got = _verdict(monkeypatch, tmp_path, unsupervised, expect, examples=[])
    assert len(got) == 1 and got[0].endswith(
        "returned no supervised token for sample(s) [0], whose answers are not empty"
    )


def test_deferred_allowance_requires_the_error_on_first_use(monkeypatch, tmp_path):
    def lazy(collate_fn, n_microbatches):
        def wrapper(examples):
            if n_microbatches < 1:
                raise ValueError(f"n_microbatches must be >= 1, got {n_microbatches}")
            return collate_fn(examples)

        return wrapper

    def lazy_and_silent(collate_fn, n_microbatches):
        return collate_fn

    def lazy_and_mutating(collate_fn, n_microbatches):
        def wrapper(examples):
            examples.pop("x")
            raise ValueError("n_microbatches must be >= 1")

        return wrapper

    expect = _allowing("deferred", args=[{"x": {"$tensor": [1]}}])
    kwargs = {"collate_fn": {"$callable": "identity"}, "n_microbatches": 0}
    assert _verdict(monkeypatch, tmp_path, lazy, expect, **kwargs) == []
    silent = _verdict(monkeypatch, tmp_path, lazy_and_silent, expect, **kwargs)
    assert len(silent) == 1 and silent[0].endswith("the returned callable's first call returned normally too")
    mutating = _verdict(monkeypatch, tmp_path, lazy_and_mutating, expect, **kwargs)
    assert len(mutating) == 1 and mutating[0].endswith(
        "its first call mutated its argument: ['args'][0]: keys removed ['x']"
    )
    vague = _allowing("deferred", args=[{"x": 1}])
    got = _verdict(monkeypatch, tmp_path, lambda collate_fn, n_microbatches: lambda ex: 1 / 0, vague, **kwargs)
    assert "raised by the returned callable on its first call ZeroDivisionError" in got[0]


def test_fake_image_conversation_allowance(monkeypatch, tmp_path):
    import copy as copy_mod

    from PIL import Image

    fake = {"type": "image", "image": Image.new("RGB", (56, 56), (255, 255, 255))}

    def prepends(conversation):
        return [{"role": "user", "content": [fake]}] + copy_mod.deepcopy(conversation)

    def fills(conversation):
        out = copy_mod.deepcopy(conversation)
        out[1]["content"] = [fake]
        return out

    def into_assistant(conversation):
        out = copy_mod.deepcopy(conversation)
        out[0]["content"] = [fake, {"type": "text", "text": "x"}]
        return out

    def grey(conversation):
        return [
            {"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (56, 56), 128)}]}
        ] + conversation

    expect = _allowing("fake_image_conversation")
    no_user = {"conversation": [{"role": "assistant", "content": "x"}]}
    none_content = {"conversation": [{"role": "system", "content": "s"}, {"role": "user", "content": None}]}
    assert _verdict(monkeypatch, tmp_path, prepends, expect, **no_user) == []
    assert _verdict(monkeypatch, tmp_path, fills, expect, **none_content) == []
    assert "holds 0 fake image item(s)" in _verdict(monkeypatch, tmp_path, grey, expect, **no_user)[0]
    assert (
        "the fake image went to message 0, not to the first user message 1"
        in _verdict(
            monkeypatch,
            tmp_path,
            lambda conversation: [{"role": "user", "content": [fake]}, *conversation],
            expect,
            **none_content,
        )[0]
    )
    got = _verdict(monkeypatch, tmp_path, into_assistant, expect, **no_user)
    assert got and "returned a conversation without a user message" in got[0]
    assert "not a deep copy" in _verdict(monkeypatch, tmp_path, lambda conversation: conversation, expect, **no_user)[0]


def test_then_calls_the_returned_callable(monkeypatch, tmp_path):
    def wraps(collate_fn, max_retries):
        return lambda examples: collate_fn(examples)

    def never_calls(collate_fn, max_retries):
        def wrapper(examples):
            raise RuntimeError(f"Collate failed after {max_retries} retries. Last error: None")

        return wrapper

    batch = {
        "input_ids": {"$tensor": [[1, 2, 3]]},
        "attention_mask": {"$tensor": [[1, 1, 1]]},
        "labels": {"$tensor": [[2, 3, -100]]},
    }
    expect = {"ok": {"n_images_per_sample": None}, "then": {"args": [batch]}}
    kwargs = {"collate_fn": {"$callable": "identity"}, "max_retries": 0}
    assert _verdict(monkeypatch, tmp_path, wraps, expect, **kwargs) == []
    assert _verdict(monkeypatch, tmp_path, never_calls, expect, **kwargs) == [
        "raised when the returned callable was called RuntimeError: Collate failed after 0 retries. Last error: None; "
        "the documented handling returns a batch"
    ]
    assert _verdict(monkeypatch, tmp_path, lambda collate_fn, max_retries: None, expect, **kwargs) == [
        "returned NoneType, not a callable (the page's return type)"
    ]
