"""chatvector: give language models chat ability in new languages by weight arithmetic (Chat Vector).

The packages, from the ground up (each imports only those below it): io (checkpoints on disk),
merge (the chat-vector rules), pipelines (extract, add, convert, inspect) and engines (generation),
evaluation (the ratio sweep), cli (the command line). errors, interrupts and imports are the ground
floor every package may use. The public API below is imported on first use, so that `import
chatvector.cli` (every script's start) does not import torch.
"""
import importlib

__version__ = "0.2.0"

# name -> module
_PUBLIC = {
    "extract": "pipelines.extract", "add": "pipelines.add", "chat_vector": "merge.arithmetic", "apply_chat_vectors": "merge.arithmetic",
    "load_chat_model": "engines.hf", "chat_loop": "cli.repl", "ChatVectorError": "errors",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'chatvector' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
