"""vlmspec's vision-token discovery must find every vision token the family declares.

If ``_get_vision_token_ids`` finds nothing, fake-image masking silently does nothing for the family.
"""

from conformance import impl
from conformance.checks import CheckFailure, header
from conformance.fake_checks import vision_token_ids
from conformance.loading import load_processor

CHECK = "vision_tokens"


def test_vision_tokens(family):
    _get_vision_token_ids = impl.get("fake_image", "_get_vision_token_ids")
    processor = load_processor(family.model_id)
    found = _get_vision_token_ids(processor=processor)
    declared = set(vision_token_ids(family, processor))
    if not found:
        raise CheckFailure(
            f"{header(family, '-', CHECK)} _get_vision_token_ids found no vision tokens for "
            f"{type(processor).__name__}: fake images would stay visible"
        )
    missing = declared - found
    if missing:
        tok = processor.tokenizer
        raise CheckFailure(
            f"{header(family, '-', CHECK)} _get_vision_token_ids misses declared vision tokens "
            f"{sorted(tok.convert_ids_to_tokens(sorted(missing)))}"
        )
