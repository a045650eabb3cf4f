"""The one place the vault imports LiteLLM, configured once: no telemetry, no debug banners, and the
price map bundled with the pinned LiteLLM release (never fetched from the internet at import)."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # not a secret: where LiteLLM reads prices

import litellm  # must follow the environment default above
from litellm import exceptions as errors

__all__ = ["errors", "litellm"]

litellm.telemetry = False
litellm.suppress_debug_info = True
