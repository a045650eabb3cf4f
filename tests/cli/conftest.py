from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """CliRunner runs `legion`'s root callback, which configures structlog for a CLI process
    (level filter, stderr). Put the defaults back so later tests' capture_logs() sees everything."""
    yield
    structlog.reset_defaults()
