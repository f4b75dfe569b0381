"""chatvector: give language models chat ability in new languages by weight arithmetic (Chat Vector)."""
import importlib

__version__ = "0.2.0"

# name -> module: imported on first use, so `import chatvector.cli` (every script's start) does not import torch
_PUBLIC = {
    "extract": "extract_vector", "add": "add_vectors", "chat_vector": "arithmetic", "apply_chat_vectors": "arithmetic",
    "load_chat_model": "chat", "chat_loop": "repl", "ChatVectorError": "errors",
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
