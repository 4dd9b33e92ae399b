"""nemo-automodel 0.7.0 qwen3_omni_collate_fn with its optional extras (qwen-omni-utils, librosa), on
transformers 5.23.0: three deviations, each shown on the smallest batch.

1. A batch in which one sample has a medium (image, audio, video) and another has none crashes: the
   collate passes per-sample lists with None for the sample without it (``images=[[img], None]``),
   which transformers' image processor / feature extractor rejects (TypeError).
2. use_audio_in_video=True crashes: the collate calls the processor the Qwen3-Omni model card's way
   (every clip, the videos' tracks included, in ``audio=``, plus ``use_audio_in_video=True``);
   transformers 5.23 maps the deprecated keyword to ``load_audio_from_video`` without
   ``audio_from_video_indices`` and counts all clips against the text's audio placeholders (ValueError).
   The same call without nemo fails the same way; with ``audio_from_video_indices`` it works.
3. pixel_values come back float32, not bfloat16 (the data contract's dtype).

Run from the repository root after `./dev impl-nemo` installed nemo and its Qwen3-Omni extras (README):
    PYTHONPATH=.venv-impl/nemo_automodel:.venv-impl/nemo_automodel_extras HF_HUB_OFFLINE=1 \
        .venv/bin/python docs/repro/nemo_automodel/qwen3_omni.py
"""

import librosa
from nemo_automodel.components.datasets.vlm.collate_fns import qwen3_omni_collate_fn

from conformance.corpus import load_corpus
from conformance.loading import load_processor

p = load_processor("Qwen/Qwen3-Omni-30B-A3B-Instruct")
corpus = {c.id: c for c in load_corpus()}


def run(what, examples, **kwargs):
    try:
        batch = qwen3_omni_collate_fn(examples, p, **kwargs)
        print(f"{what}: ok, pixel_values {batch['pixel_values'].dtype if 'pixel_values' in batch else '-'}")
    except Exception as exc:
        print(f"{what}: {type(exc).__name__}: {exc}")


image, text, audio = (corpus[i].conversation for i in ("single_turn_image", "text_only_plain", "audio_question"))
run("1. [image sample] alone", [{"conversation": image}])
run("1. [image sample, text-only sample]", [{"conversation": image}, {"conversation": text}])
run("1. [audio sample, text-only sample]", [{"conversation": audio}, {"conversation": text}])

sound = corpus["video_with_sound"].conversation
run("2. video_with_sound, use_audio_in_video=False", [{"conversation": sound}])
run("2. video_with_sound, use_audio_in_video=True", [{"conversation": sound}], use_audio_in_video=True)

# 2, without nemo: the model card's call, then the same with transformers 5.23's audio_from_video_indices
clip, video = sound[1]["content"][0]["audio"], sound[3]["content"][0]["video"]
audios = [librosa.load(clip, sr=16000)[0], librosa.load(video, sr=16000)[0]]  # what qwen-omni-utils returns
text = p.apply_chat_template(sound, tokenize=False)
for extra in ({"use_audio_in_video": True}, {"load_audio_from_video": True, "audio_from_video_indices": [None, 0]}):
    try:
        out = p(text=[text], videos=[video], audio=audios, return_tensors="pt", **extra)
        print(f"2. processor({', '.join(extra)}): ok, {out['input_ids'].shape[1]} tokens")
    except Exception as exc:
        print(f"2. processor({', '.join(extra)}): {type(exc).__name__}: {exc}")
