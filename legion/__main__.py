"""``python -m legion`` is the ``legion`` command."""

from legion.cli import main

main()
