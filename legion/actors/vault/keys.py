"""Provider keys: read once at start, held only here, scrubbed from every text that leaves the vault.

A model alias names its key (``models.<alias>.key: openai``); the vault reads the value from the
environment variable ``LEGION_SYSTEM_OPENAI`` or, failing that, from the same name in
``<fleet>/.env`` (read with python-dotenv's ``dotenv_values``: never loaded into ``os.environ``).

Values never appear in a repr, an event, a log line, a reply or an exception message: every text
that comes from a provider or from LiteLLM goes through :meth:`ProviderKeys.scrub` first, and
:func:`install_log_scrubber` scrubs the stdlib log records of third-party libraries as a backstop.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from legion.runtime.config import FleetConfig
from legion.runtime.config.secrets import SYSTEM_PREFIX, env_var

__all__ = ["ENV_PREFIX", "REDACTED", "ProviderKeys", "install_log_scrubber", "key_env_name", "uninstall_log_scrubber"]

ENV_PREFIX = SYSTEM_PREFIX
REDACTED = "[redacted]"
_MIN_SECRET = 6  # shorter "keys" would mangle ordinary text and are not secrets worth the name
# Key-shaped tokens, e.g. a provider echoing a partly masked key ("sk-proj-****abcd").
_KEY_SHAPED = re.compile(r"\b(?:sk|pk|rk|key)-[A-Za-z0-9_\-*.]{6,}")


def key_env_name(key: str) -> str:
    """``openai`` -> ``LEGION_SYSTEM_OPENAI``: the fleet's one secret-naming rule."""
    return env_var(key, "system")


class ProviderKeys:
    """Key name -> value. The values are private: no repr, no iteration, only :meth:`get`."""

    __slots__ = ("_pattern", "_values")

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = {name: value for name, value in values.items() if value}
        secrets = sorted({v for v in self._values.values() if len(v) >= _MIN_SECRET}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in secrets)) if secrets else None

    @classmethod
    def load(
        cls,
        config: FleetConfig,
        *,
        fleet_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ProviderKeys:
        """The keys named by ``config.models``, from ``environ`` (default: the process) then ``.env``."""
        env = os.environ if environ is None else environ
        dotenv: dict[str, str | None] = {}
        if fleet_dir is not None and (fleet_dir / ".env").is_file():
            dotenv = dotenv_values(fleet_dir / ".env")
        values: dict[str, str] = {}
        for name in sorted({m.key for m in config.models.values() if m.key}):
            var = key_env_name(name)
            value = env.get(var) or env.get(ENV_PREFIX + name.upper()) or dotenv.get(var)
            if value:
                values[name] = value.strip()
        return cls(values)

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def names(self) -> list[str]:
        """The key names that have a value (never the values)."""
        return sorted(self._values)

    def missing(self, names: Iterable[str]) -> list[str]:
        return sorted({n for n in names if n not in self._values})

    def scrub(self, text: str) -> str:
        """``text`` without any key value (for model output: nothing else is touched)."""
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return text

    def scrub_error(self, text: str) -> str:
        """:meth:`scrub`, and also anything shaped like a provider key (error texts and log lines,
        where a provider may echo a partly masked or a different key)."""
        return _KEY_SHAPED.sub(REDACTED, self.scrub(text))

    def scrub_any(self, value: Any) -> Any:
        """:meth:`scrub` applied to every string inside JSON-like ``value`` (tool call arguments)."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self.scrub_any(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub_any(v) for v in value]
        return value

    def __repr__(self) -> str:
        return f"ProviderKeys(names={self.names()})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("ProviderKeys cannot be pickled: keys never leave the vault process")


class _LogScrubber:
    """A log-record factory that scrubs every registered key set from stdlib records (LiteLLM, httpx, openai)."""

    def __init__(self) -> None:
        self._keys: list[ProviderKeys] = []
        self._lock = threading.Lock()
        self._installed = False

    def register(self, keys: ProviderKeys) -> None:
        with self._lock:
            self._keys.append(keys)
            if not self._installed:
                previous = logging.getLogRecordFactory()

                def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                    record = previous(*args, **kwargs)
                    self._scrub(record)
                    return record

                logging.setLogRecordFactory(factory)
                self._installed = True

    def unregister(self, keys: ProviderKeys) -> None:
        with self._lock:
            self._keys = [k for k in self._keys if k is not keys]

    def _scrub(self, record: logging.LogRecord) -> None:
        keys = self._keys
        if not keys:
            return
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record must not break logging
            text = str(record.msg)
        for k in keys:
            text = k.scrub_error(text)
        record.msg, record.args = text, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            for k in keys:
                text = k.scrub_error(text)
            record.exc_text = text


_scrubber = _LogScrubber()

_QUIET = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "httpcore", "openai")


def install_log_scrubber(keys: ProviderKeys) -> None:
    """Scrub ``keys`` from every stdlib log record from now on; quiet the chatty HTTP and LiteLLM loggers."""
    _scrubber.register(keys)
    for name in _QUIET:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def uninstall_log_scrubber(keys: ProviderKeys) -> None:
    _scrubber.unregister(keys)
