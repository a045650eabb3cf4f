"""The one place the vault imports LiteLLM, configured once: no telemetry, no debug banners, and the
price map bundled with the pinned LiteLLM release (never fetched from the internet at import)."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # not a secret: where LiteLLM reads prices

import litellm  # must follow the environment default above
import openai.resources  # noqa: F401 - see below
from litellm import exceptions as errors

# LiteLLM calls OpenAI-compatible providers through the openai SDK, whose client imports
# `openai.resources` on first use: ~0.5 s of imports inside the vault's first model call, which
# stalled the event loop and with it every concurrent call, budget refusals included
# (tests/e2e_money). Imported here, it is paid once at start instead.

__all__ = ["errors", "litellm"]

litellm.telemetry = False
litellm.suppress_debug_info = True
