"""Pipeline split off by one at a stage boundary: the first layer of stage s+1 also runs in stage s.

Bug: the stage's layer range is taken as ``start <= i <= end`` instead of ``start <= i < end``, so
each boundary layer is applied twice. Runner: tests/test_pipelining.py (10 s; the conformance
check pp_staged_forward kills it too, verified, but costs ~40 s per run). Killed by:
test_staged_logits_match_unsplit.
"""

import copy

from torch import nn

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
RUNNER = "tests/test_pipelining.py"
EXPECT = {"test_staged_logits_match_unsplit"}
SELECT = "test_staged_logits_match_unsplit and (llama or qwen2)"


def _split(model, n_stages, layers_per_stage=None, patch=True):
    import vlmspec.pipelining.split as sp

    path = sp._text_path(model)
    text = sp._resolve(model, path)
    layers = [layer for _, layer in sp._iter_layers(text.layers)]
    sizes = sp._stage_sizes(len(layers), n_stages, layers_per_stage)
    holders = [model] + ([model.model] if isinstance(getattr(model, "model", None), nn.Module) else [])
    stages, start = [], 0
    for s, size in enumerate(sizes):
        end = start + size
        dropped = [layer for i, layer in enumerate(layers) if not start <= i <= end]  # the bug: <= end
        if s > 0:
            dropped += [getattr(text, a, None) for a in sp._FIRST_STAGE_TEXT_ATTRS]
            dropped += [getattr(h, a, None) for h in holders for a in sp.MULTIMODAL_SUFFIXES]
        if s < n_stages - 1:
            dropped += [getattr(text, "norm", None), getattr(model, "lm_head", None)]
        memo = {id(m): None for m in dropped if isinstance(m, nn.Module)}
        stage = copy.deepcopy(model, memo)
        stage_text = sp._resolve(stage, path)
        stage_text.layers = nn.ModuleDict({k: m for k, m in stage_text.layers._modules.items() if m is not None})
        stage._pp_stage_index, stage._pp_num_stages = s, n_stages
        if patch and not sp.model_keeps_self_forward(model):
            sp.patch_hf_model_for_pp(stage)
        stages.append(stage)
        start = end
    return stages


replace("vlmspec.pipelining.split:split_hf_model_into_stages", _split)
