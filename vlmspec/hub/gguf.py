"""Read the tokenizer metadata of a GGUF file and turn an SPM-style BPE vocabulary into ``tokenizer.json``.

llama.cpp ships vocabulary-only GGUF files (``models/ggml-vocab-*.gguf`` in the ``llama-cpp-python``
sdist): a header, key/value metadata and no tensors. The metadata holds the released tokenizer's
token list (index = id), the token types, the BPE merges and the embedded chat template, which is
all a ``tokenizers`` BPE model needs. Only the parts of the format that metadata uses are read
(GGUF v2/v3, little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
"""

from __future__ import annotations

import json
import struct
from typing import Any

from .recipe import PackError

__all__ = ["TOKEN_TYPES", "read_gguf_metadata", "spm_bpe_tokenizer_json"]

_MAGIC = b"GGUF"
# GGUF value types -> struct format (scalars); 8 = string, 9 = array
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# llama.cpp's token types (tokenizer.ggml.token_type)
TOKEN_TYPES = {1: "normal", 2: "unknown", 3: "control", 4: "user_defined", 5: "unused", 6: "byte"}


class _Cursor:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise PackError(f"GGUF: truncated file at byte {self.pos}")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        raw = self.data[self.pos : self.pos + n]
        if len(raw) != n:
            raise PackError(f"GGUF: truncated string at byte {self.pos}")
        self.pos += n
        return raw.decode("utf-8")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, n = self.unpack("<I"), self.unpack("<Q")
            if etype in _SCALARS:  # one struct call for the whole array
                fmt = _SCALARS[etype]
                size = struct.calcsize(fmt) * n
                values = list(struct.unpack_from(f"<{n}{fmt[1:]}", self.data, self.pos))
                self.pos += size
                return values
            return [self.value(etype) for _ in range(n)]
        raise PackError(f"GGUF: unknown value type {vtype} at byte {self.pos}")


def read_gguf_metadata(data: bytes) -> dict[str, Any]:
    """The key/value metadata of a GGUF file (tensor data is not read)."""
    cur = _Cursor(data)
    if data[:4] != _MAGIC:
        raise PackError(f"not a GGUF file (magic {data[:4]!r})")
    cur.pos = 4
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise PackError(f"GGUF version {version} is not supported (2 or 3)")
    cur.unpack("<Q")  # tensor count
    n_kv = cur.unpack("<Q")
    meta: dict[str, Any] = {"GGUF.version": version}
    for _ in range(n_kv):
        key = cur.string()
        meta[key] = cur.value(cur.unpack("<I"))
    return meta


def _added(idx: int, content: str) -> dict:
    return {
        "id": idx,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def spm_bpe_tokenizer_json(meta: dict[str, Any], where: str) -> bytes:
    """``tokenizer.json`` for a GGUF whose ``tokenizer.ggml.model`` is an SPM-style BPE (``gemma4``).

    The vocabulary keeps every token at its GGUF index; the merges keep their order (rank). The text
    pipeline is the SentencePiece-style BPE the GGUF describes: spaces become ``▁`` (no prefix space
    when ``add_space_prefix`` is false), BPE over the whole text with ``<0xXX>`` byte fallback, and the
    decoder reverses it. Control and user-defined tokens (types 3 and 4) are the special added tokens;
    llama.cpp marks a few control tokens user-defined only so that its chat parser prints them.
    ``add_bos_token`` adds ``<bos>`` through a post-processor.
    """
    model = meta.get("tokenizer.ggml.model")
    if model != "gemma4":
        raise PackError(f"{where}: GGUF tokenizer model {model!r} is not supported (supported: 'gemma4')")
    try:
        tokens, types, merges = (
            meta["tokenizer.ggml.tokens"],
            meta["tokenizer.ggml.token_type"],
            meta["tokenizer.ggml.merges"],
        )
    except KeyError as exc:
        raise PackError(f"{where}: GGUF has no {exc.args[0]} metadata") from None
    if len(types) != len(tokens):
        raise PackError(f"{where}: GGUF has {len(tokens)} tokens but {len(types)} token types")
    vocab: dict[str, int] = {}
    for idx, tok in enumerate(tokens):
        if tok in vocab:
            raise PackError(f"{where}: GGUF token {tok!r} appears twice (ids {vocab[tok]} and {idx})")
        vocab[tok] = idx
    pairs = []
    for rank, merge in enumerate(merges):
        cut = merge.find(" ", 1)  # a merge is "left right"; the left part is never empty
        if cut < 0:
            raise PackError(f"{where}: GGUF merge {rank} {merge!r} has no separator")
        pairs.append([merge[:cut], merge[cut + 1 :]])
    if not any(TOKEN_TYPES.get(t) == "byte" for t in types):
        raise PackError(f"{where}: GGUF vocabulary has no <0xXX> byte tokens; byte fallback needs them")
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    bos_id = meta.get("tokenizer.ggml.bos_token_id")
    added = [_added(i, tokens[i]) for i, t in enumerate(types) if TOKEN_TYPES.get(t) in ("control", "user_defined")]
    space_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
    normalizers = [{"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]
    if space_prefix:
        normalizers.insert(0, {"type": "Prepend", "prepend": "\u2581"})
    tok_json: dict[str, Any] = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": normalizers[0] if len(normalizers) == 1 else {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": tokens[unk_id] if unk_id is not None else None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": pairs,
        },
    }
    if meta.get("tokenizer.ggml.add_bos_token") and bos_id is not None:
        bos = tokens[bos_id]
        tok_json["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
        }
    return json.dumps(tok_json, ensure_ascii=False).encode("utf-8")
