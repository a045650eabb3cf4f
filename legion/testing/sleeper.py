"""A stand-in actor process for backend tests (the backend contract suite runs it through every
backend): ``python -m legion.testing.sleeper --fleet-dir DIR --name NAME``.

It prints one line (``sleeper NAME env=<LEGION_SLEEPER_ENV>``), then waits for SIGTERM and exits 0.
``LEGION_SLEEPER_EXIT=N`` makes it exit with N at once; ``LEGION_SLEEPER_IGNORE_TERM=1`` makes it
ignore SIGTERM, so only a kill ends it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m legion.testing.sleeper")
    parser.add_argument("--fleet-dir", default=".")
    parser.add_argument("--name", default="sleeper")
    args = parser.parse_args(argv)
    print(f"sleeper {args.name} env={os.environ.get('LEGION_SLEEPER_ENV', '')}", flush=True)
    code = os.environ.get("LEGION_SLEEPER_EXIT")
    if code is not None:
        return int(code)
    if os.environ.get("LEGION_SLEEPER_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
