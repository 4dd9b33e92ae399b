"""Family records and implementation findings load strictly (conformance/registry.py).

Every committed file must load; a typo (an unknown key, check, rule kind, fixture, implementation) or
a findings entry without its evidence link is a ValueError naming the file, the key path and the
closest valid name. ``expected_failure_for`` picks the entry of one case: impl files first (active
implementation, then its base), then the family record.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from conformance import registry
from conformance.registry import IMPL_ROW, FamilySpec, expected_failure_for

QWEN = "Qwen/Qwen2.5-VL-3B-Instruct"
QWEN3_OMNI = "Qwen/Qwen3-Omni-30B-A3B-Instruct"
GEMMA4 = "google/gemma-4-E2B-it"


def _record(model_id: str = GEMMA4) -> dict:
    return json.loads((registry.FAMILIES_DIR / f"{model_id.replace('/', '--')}.json").read_text(encoding="utf-8"))


def _load_error(data: dict) -> str:
    with pytest.raises(ValueError) as info:
        FamilySpec.from_json(data, "probe.json")
    return str(info.value)


@pytest.fixture
def impls_dir(tmp_path, monkeypatch):
    """An empty findings folder in place of fixtures/impls/ (caches cleared before and after)."""
    monkeypatch.setattr(registry, "IMPLS_DIR", tmp_path)
    registry.load_impl_findings.cache_clear()
    yield tmp_path
    registry.load_impl_findings.cache_clear()


def _write_impl(folder: Path, name: str, entries: list[dict], **top) -> None:
    data = {"impl": name, "package": f"{name}==1.0", "expected_failures": entries, **top}
    (folder / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")


def _entry(**kw) -> dict:
    return {"check": "labels", "reason": "probe deviation", "link": "docs/findings.md#probe", **kw}


# --------------------------------------------------------------------------------------------------
# every committed file
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(registry.FAMILIES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_every_family_record_loads_strictly(path):
    spec = FamilySpec.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
    assert spec.folder == path.stem  # one record per model id, named after it
    assert set(spec.extra) <= {"pp", "text_injection", "processor_factory", "notes"}


def test_every_impl_findings_file_loads_strictly():
    registry.load_impl_findings.cache_clear()
    files = sorted(registry.IMPLS_DIR.glob("*.json"))
    assert {p.stem for p in files} >= {"nemo_automodel"}
    loaded = registry.load_impl_findings()
    assert sorted(loaded) == [p.stem for p in files]
    for name, found in loaded.items():
        assert found.impl == name and found.package
        assert all(x.reason and x.link for x in found.expected_failures)


# --------------------------------------------------------------------------------------------------
# typos are load errors
# --------------------------------------------------------------------------------------------------
def test_misspelled_record_key_names_the_closest_key():
    data = _record()
    data["template_behavior"] = data.pop("template_behaviour", [])
    message = _load_error(data)
    assert "probe.json" in message and "'template_behavior'" in message and "'template_behaviour'" in message


def test_unknown_check_in_expected_failures():
    data = _record()
    data["expected_failures"].append({"check": "fake_imag", "reason": "x"})
    message = _load_error(data)
    assert f"expected_failures[{len(data['expected_failures']) - 1}].check" in message
    assert "'fake_imag'" in message and "did you mean 'fake_image'" in message


def test_expected_failure_for_a_check_the_record_does_not_run():
    data = _record()
    data["expected_failures"].append({"check": "template_behaviour", "reason": "x"})
    assert "not one of this record's checks" in _load_error(data)


def test_unknown_tokens_per_image_kind():
    data = _record()
    data["pp"]["tokens_per_image"]["kind"] = "valid_patch"
    message = _load_error(data)
    assert "pp.tokens_per_image.kind" in message and "'valid_patches'" in message


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d["pp"]["tokens_per_image"].update(pool2=3), "'pp.tokens_per_image.pool2'"),
        (lambda d: d["pp"]["tokens_per_image"].pop("pool"), "missing required key(s) ['pool']"),
        (lambda d: d["pp"].update(stagedfixtures=[]), "did you mean 'staged_fixtures'"),
        (lambda d: d["pp"]["staged_fixtures"].update({"2": ["single_turn_image"]}), "pp.staged_fixtures.2: 1 entries"),
        (lambda d: d["pp"]["distributed_fixtures"].append("single_turn_imag"), "did you mean 'single_turn_image'"),
        (lambda d: d["pp"]["layers_per_stage"].update({"3": [1, True, 1]}), "expected int, got bool"),
        (lambda d: d["text_injection"]["gemma4_prefix_collate_fn"].update(before="x"), "valid: after, insert"),
        (lambda d: d["text_injection"].update(gemma4_prefix={"after": "a", "insert": "b"}), "collate of this record"),
        (lambda d: d["expected_failures"][0].update(impl="nemo_automodl"), "did you mean 'nemo_automodel'"),
        (lambda d: d.update(also_collate_checks=["label"]), "did you mean 'labels'"),
        (lambda d: d["checks"].append("pp_gold"), "did you mean 'pp_golden'"),
        (
            lambda d: d.update(template_behaviour=[{"fixture": "single_turn_text", "descripton": "x"}]),
            "did you mean 'description'",
        ),
        (lambda d: d.pop("collate"), "missing required key(s) ['collate']"),
    ],
)
def test_every_level_is_strict(mutate, needle):
    data = copy.deepcopy(_record())
    mutate(data)
    assert needle in _load_error(data)


def test_impl_entry_without_link_is_a_load_error(impls_dir):
    entry = _entry()
    del entry["link"]
    _write_impl(impls_dir, "probe", [entry])
    with pytest.raises(ValueError, match=r"probe\.json: expected_failures\[0\]: missing required key\(s\) \['link'\]"):
        registry.load_impl_findings()


@pytest.mark.parametrize(
    "entry, needle",
    [
        (_entry(check="robustnes"), "did you mean 'robustness'"),
        (_entry(models=["Qwen/Qwen2.5-VL-3B"]), "unknown model"),
        (_entry(fixtures=["leading_whitespace"]), "did you mean 'leading_whitespace_answer'"),
        (_entry(check="api", models=[QWEN]), "implementation-level"),
        (_entry(models=[IMPL_ROW]), "has no per-family check"),
        (_entry(reasons="x"), "unknown key 'expected_failures[0].reasons'"),
    ],
)
def test_impl_entries_are_strict(impls_dir, entry, needle):
    _write_impl(impls_dir, "probe", [entry])
    with pytest.raises(ValueError) as info:
        registry.load_impl_findings()
    assert "probe.json" in str(info.value) and needle in str(info.value)


def test_impl_file_must_be_named_after_its_impl(impls_dir):
    _write_impl(impls_dir, "probe", [], impl="prob")
    with pytest.raises(ValueError, match="probe.json: impl: unknown implementation"):
        registry.load_impl_findings()


# --------------------------------------------------------------------------------------------------
# which entry applies
# --------------------------------------------------------------------------------------------------
def test_impl_entry_matches_model_id_label_and_fixture(impls_dir):
    _write_impl(impls_dir, "probe", [_entry(models=[QWEN], fixtures=["leading_whitespace_answer"])])
    hit = expected_failure_for(QWEN, QWEN, "labels", "leading_whitespace_answer", ["probe"])
    assert hit is not None and hit.link == "docs/findings.md#probe"
    variant = f"{QWEN}@default_collate_fn"
    assert expected_failure_for(variant, QWEN, "labels", "leading_whitespace_answer", ["probe"]) == hit
    assert expected_failure_for(QWEN, QWEN, "labels", "single_turn_text", ["probe"]) is None
    assert expected_failure_for(QWEN, QWEN, "golden", "leading_whitespace_answer", ["probe"]) is None
    assert expected_failure_for(GEMMA4, GEMMA4, "labels", "leading_whitespace_answer", ["probe"]) is None
    assert expected_failure_for(QWEN, QWEN, "labels", "leading_whitespace_answer", ["vlmspec"]) is None


def test_variant_label_entry_does_not_cover_the_base_model(impls_dir):
    variant = f"{QWEN}@default_collate_fn"
    _write_impl(impls_dir, "probe", [_entry(models=[variant])])
    assert expected_failure_for(variant, QWEN, "labels", "cjk_text", ["probe"]) is not None
    assert expected_failure_for(QWEN, QWEN, "labels", "cjk_text", ["probe"]) is None


def test_empty_models_and_fixtures_cover_everything_and_the_impl_row(impls_dir):
    _write_impl(impls_dir, "probe", [_entry(), _entry(check="api", reason="api deviation")])
    assert expected_failure_for(GEMMA4, GEMMA4, "labels", "cjk_text", ["probe"]).reason == "probe deviation"
    assert expected_failure_for(IMPL_ROW, IMPL_ROW, "api", "pp_media", ["probe"]).reason == "api deviation"
    assert expected_failure_for(IMPL_ROW, IMPL_ROW, "robustness", "x", ["probe"]) is None


def test_base_implementation_findings_apply_to_derived_ones(impls_dir):
    _write_impl(impls_dir, "vlmspec", [_entry(check="api", fixtures=["pp_media"])])
    assert expected_failure_for(IMPL_ROW, IMPL_ROW, "api", "pp_media", ["tests.mutants.x", "vlmspec"]) is not None
    assert expected_failure_for(IMPL_ROW, IMPL_ROW, "api", "pp_media", ["tests.mutants.x"]) is None


def test_record_entries_apply_to_every_impl_unless_scoped(impls_dir):
    qwen_xfail = _record(QWEN)["expected_failures"][0]
    assert "impl" not in qwen_xfail
    for names in (["vlmspec"], ["nemo_automodel"]):
        hit = expected_failure_for(QWEN, QWEN, qwen_xfail["check"], None, names)
        assert hit is not None and hit.reason == qwen_xfail["reason"]
    scoped = FamilySpec.from_json({**_record(QWEN), "expected_failures": [{**qwen_xfail, "impl": "nemo_automodel"}]})
    assert scoped.expected_failure(qwen_xfail["check"], None, ["nemo_automodel"]) is not None
    assert scoped.expected_failure(qwen_xfail["check"], None, ["vlmspec"]) is None


def test_impl_file_entry_wins_over_the_record(impls_dir):
    check = _record(QWEN)["expected_failures"][0]["check"]
    _write_impl(impls_dir, "probe", [_entry(check=check, reason="impl-specific", models=[QWEN])])
    assert expected_failure_for(QWEN, QWEN, check, None, ["probe"]).reason == "impl-specific"


def test_family_entries_can_be_left_out():
    """A framework's fake_image judges its own dummy image: the family's fake-image entries (about the
    injected image before the real tokens) are not applied to it, an implementation's own entries still are."""
    gemma3 = "google/gemma-3-4b-it"
    found = expected_failure_for(gemma3, gemma3, "fake_image", "single_turn_text", ["vlmspec"])
    assert found is not None  # the family records that Gemma 3 sees the injected fake image
    assert (
        expected_failure_for(gemma3, gemma3, "fake_image", "single_turn_text", ["vlmspec"], family_entries=False)
        is None
    )
    lf = expected_failure_for(
        QWEN3_OMNI, QWEN3_OMNI, "fake_image", "long_answer", ["llamafactory"], family_entries=False
    )
    assert lf is not None and "bfloat16" in lf.reason


# --------------------------------------------------------------------------------------------------
# collate options: a documented collate parameter as its own row
# --------------------------------------------------------------------------------------------------
def test_collate_option_is_a_row_with_its_kwargs_and_cases():
    spec = FamilySpec.from_json(_record(QWEN3_OMNI), "probe.json")
    base, option = spec.variants()
    assert option.label == f"{QWEN3_OMNI}@qwen3_omni_collate_fn(use_audio_in_video=True)"
    assert dict(option.collate_kwargs) == {"use_audio_in_video": True}
    assert dict(option.processor_kwargs) == {"load_audio_from_video": True}
    assert set(option.checks) < set(base.checks) and not option.collate_options
    assert option.runs_case("video_with_sound") and not option.runs_case("video_short_clip")
    assert base.runs_case("video_short_clip") and not base.collate_kwargs
    assert option.label in registry.model_labels()


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda o: o["checks"].append("pp_layouts"), "unknown check 'pp_layouts'"),
        (lambda o: o.update(kwargs={"use_audio_in_video": [True]}), "collate_options[0].kwargs.use_audio_in_video"),
        (lambda o: o["fixtures"].append("video_with_sond"), "did you mean 'video_with_sound'"),
        (lambda o: o.pop("notes"), "missing required key(s) ['notes']"),
        (lambda o: o.update(kwarg={}), "did you mean 'kwargs'"),
    ],
)
def test_collate_option_is_strict(mutate, needle):
    data = copy.deepcopy(_record(QWEN3_OMNI))
    mutate(data["collate_options"][0])
    assert needle in _load_error(data)


def test_collate_option_checks_must_be_the_records():
    data = copy.deepcopy(_record(QWEN3_OMNI))
    data["checks"].remove("golden")
    assert "collate_options[0].checks: ['golden'] are not this record's checks" in _load_error(data)
