"""Operator operations that return data: the CLI (and later the gateway) render what they return.
Nothing here prints or imports typer or rich."""
