"""The staged causal-LM forward skips Phi-4-multimodal's image embedding on stage 0 (nemo-automodel 0.7.0).

Bug: stage 0 embeds the token ids but never runs ``embed_tokens_extend`` (Phi-4's feature embedding,
which writes the image features into the ``<|image|>`` rows), so the image placeholders are embedded
as text: the logits differ from the unsplit model on a one-image sample, silently. (nemo reaches it
through its validator accepting ``Phi4MultimodalForCausalLM`` and the generic causal-LM forward.)
Found in nemo-automodel 0.7.0 (docs/findings.md#nemo_automodel-070-pp-forwards). Runner: conformance
(microsoft/Phi-4-multimodal-instruct). Killed by: pp_staged_forward.
"""

from tests.mutants import VLMSPEC_TABLE, replace

VLMSPEC_IMPL = VLMSPEC_TABLE
MODEL = "microsoft/Phi-4-multimodal-instruct"
EXPECT = {"pp_staged_forward"}


def _embed_without_extend(model, text, input_ids, media, image_features_fn):
    media = {k: v for k, v in media.items() if k != "image_pixel_values"}  # the bug: embed_tokens_extend not run
    return _original(model, text, input_ids, media, image_features_fn)


_original = replace("vlmspec.pipelining.forwards:_embed_and_merge", _embed_without_extend)
