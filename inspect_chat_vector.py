"""Inspect a chat vector: what it changes per layer and module, compared with another, relative to a model."""
from chatvector.cli.commands import inspect_command

if __name__ == "__main__":
    inspect_command()
