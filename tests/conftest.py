from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map from the internet

# the test kit's fixtures come from its pytest11 entry point (pyproject.toml)
