"""What a run for an unregistered model says when the Hub or the HF cache cannot provide it."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

# Long enough for a slow proxy, short enough that an unreachable Hub fails in seconds, not in the
# minutes that huggingface_hub's retries take per file.
PREFLIGHT_TIMEOUT_S = 3.0


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_unreachable(timeout: float = PREFLIGHT_TIMEOUT_S) -> str | None:
    """None when the Hub endpoint answers HTTP at all (any status), else one sentence saying why not."""
    endpoint = hub_endpoint().rstrip("/")
    try:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/api/models", method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return None  # it answered: reachable
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return (
            f"the Hub at {endpoint} is unreachable from here ({type(reason).__name__}: {reason}; "
            f"{timeout:g} s timeout). Run offline from a populated HF cache (HF_HUB_CACHE), or point "
            "HF_ENDPOINT at a reachable mirror."
        )
    return None


def unknown_model_message(model_id: str, exc: BaseException, online: bool, close: list[str]) -> str:
    """The usage error for an id that is neither registered nor loadable: what went wrong, what to do."""
    from huggingface_hub import constants

    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = (
        "the Hub" if online else f"your Hugging Face cache (HF_HUB_CACHE={constants.HF_HUB_CACHE}; the run is offline)"
    )
    lines = [
        f"--model {model_id}: not a registered model, and {where} cannot provide its processor "
        f"({type(exc).__name__}: {first_line})."
    ]
    options = (
        []
        if online
        else ["run with --online to fetch it from the Hub", f"or put it in the cache first (`hf download {model_id}`)"]
    )
    options.append("or register the family: docs/adding-a-family.md")
    lines.append("  To run it: " + ", ".join(options) + ".")
    if close:
        lines.append(f"  Registered ids close to it: {', '.join(close)}.")
    return "\n".join(lines)
