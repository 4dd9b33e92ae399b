"""nemo-automodel 0.7.0 nemotron_omni_collate_fn drops a conversation's audio item.

Run from the repository root after `./dev impl-nemo` installed nemo:
    PYTHONPATH=.venv-impl/nemo_automodel HF_HUB_OFFLINE=1 .venv/bin/python docs/repro/nemo_automodel/nemotron_omni_audio.py
"""
from nemo_automodel.components.datasets.vlm.collate_fns import nemotron_omni_collate_fn

from conformance.corpus import load_corpus
from conformance.loading import load_processor

p = load_processor("nvidia/Nemotron-3-Nano-Omni-30B-A3B-Reasoning-BF16")
conv = {c.id: c for c in load_corpus()}["audio_question"].conversation
print("audio item:", [i for m in conv if isinstance(m["content"], list) for i in m["content"] if i["type"] == "audio"])
batch = nemotron_omni_collate_fn([{"conversation": conv}], p)
ids = batch["input_ids"][0].tolist()
print("keys:", sorted(batch))
print("<so_embedding> tokens in the batch:", ids.count(p.tokenizer.convert_tokens_to_ids("<so_embedding>")))
ref = p(text=[p.apply_chat_template(conv, tokenize=False)], audio=[__import__("soundfile").read(conv[1]["content"][0]["audio"])[0]],
        return_tensors="pt", add_special_tokens=False)["input_ids"][0].tolist()
print("<so_embedding> tokens from the processor given the audio:", ref.count(p.tokenizer.convert_tokens_to_ids("<so_embedding>")))
