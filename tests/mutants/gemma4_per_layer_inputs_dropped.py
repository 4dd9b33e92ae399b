"""The Gemma 4 PP text forward feeds no per-layer inputs to the decoder layers (nemo-automodel 0.7.0).

Bug: ``create_pipeline_forward_gemma4_text`` never hands Gemma 4's Per-Layer Embeddings
(``hidden_size_per_layer_input``) to the layers, so every decoder layer gets ``per_layer_input=None``:
``TypeError: unsupported operand type(s) for *: 'Tensor' and 'NoneType'`` (modeling_gemma4.py) on the
first microbatch of every (B, n, K), stage 0 included. Found in nemo-automodel 0.7.0
(docs/findings.md#nemo_automodel-070-pp-forwards). Runner: conformance (google/gemma-4-E2B-it).
Killed by: pp_staged_forward.
"""

import sys

import torch

from tests.mutants import VLMSPEC_TABLE, MutantDoesNotApply, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "google/gemma-4-E2B-it"
EXPECT = {"pp_staged_forward"}


def _create_without_ple():
    """vlmspec's forward with one change: layer ``idx`` gets ``None`` instead of ``ple[:, :, idx, :]``."""
    import vlmspec.pipelining.gemma4 as g4

    def pipeline_forward_gemma4_text(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        per_layer_inputs=None,
        use_cache=None,
        cache_position=None,
        **kwargs,
    ):
        config = self.config
        if inputs_embeds is None and g4._is_hidden_states(input_ids):
            hidden, ple = g4._unpack_hidden(config, input_ids)
        else:
            if inputs_embeds is None:
                if getattr(self, "embed_tokens", None) is None:
                    raise ValueError("this Gemma4 stage has no embed_tokens but received integer input_ids")
                inputs_embeds = self.embed_tokens(input_ids)
                if g4._ple_size(config) and per_layer_inputs is None:
                    per_layer_inputs = self.get_per_layer_inputs(input_ids, inputs_embeds)
            hidden, ple = inputs_embeds, None
            if g4._ple_size(config):
                ple = self.project_per_layer_inputs(inputs_embeds, per_layer_inputs)

        if position_ids is None:
            position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        if isinstance(attention_mask, dict):
            mask_mapping = attention_mask
        else:
            mask_mapping = g4._build_or_reuse_pp_causal_mask(self, hidden, attention_mask, cache_position, position_ids)
        position_embeddings = g4._rotary_embeddings(self, hidden, position_ids, g4._present_layer_types(self))

        shared_kv_states = g4.KVSharingDict()
        layer_kwargs = g4._layer_kwargs(kwargs)
        for idx, layer in g4._iter_layers(getattr(self, "layers", None)):
            layer_type = config.layer_types[idx]
            if getattr(layer.self_attn, "is_kv_shared_layer", False) and layer_type not in shared_kv_states:
                raise ValueError(
                    f"Gemma4 layer {idx} reuses the k/v of an earlier '{layer_type}' layer that is not in this "
                    "pipeline stage; split so KV-shared layers sit in the stage of their producer layer"
                )
            hidden = layer(
                hidden,
                None,  # the bug: ple[:, :, idx, :] is never passed
                shared_kv_states=shared_kv_states,
                position_embeddings=position_embeddings[layer_type],
                attention_mask=mask_mapping[layer_type],
                position_ids=position_ids,
                past_key_values=None,
                **layer_kwargs,
            )
        if getattr(self, "norm", None) is not None:
            return self.norm(hidden)
        if ple is not None:
            return torch.cat([hidden, ple.flatten(2).to(hidden.dtype)], dim=-1)
        return hidden

    return pipeline_forward_gemma4_text


replace("vlmspec.pipelining.gemma4:create_pipeline_forward_gemma4_text", _create_without_ple)
_HELPERS = (
    "_is_hidden_states",
    "_unpack_hidden",
    "_ple_size",
    "_build_or_reuse_pp_causal_mask",
    "_rotary_embeddings",
    "_present_layer_types",
    "KVSharingDict",
    "_layer_kwargs",
    "_iter_layers",
)
_missing = [h for h in _HELPERS if not hasattr(sys.modules["vlmspec.pipelining.gemma4"], h)]
if _missing:
    raise MutantDoesNotApply(f"vlmspec.pipelining.gemma4 has no {_missing}: update this mutant (it copies the forward)")
