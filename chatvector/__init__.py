"""chatvector: give language models chat ability in new languages by weight arithmetic (Chat Vector)."""
__version__ = "0.1.0"

from .add import add  # noqa: E402
from .arithmetic import apply_chat_vectors, chat_vector  # noqa: E402
from .chat import load_chat_model  # noqa: E402
from .errors import ChatVectorError  # noqa: E402
from .extract import extract  # noqa: E402
from .repl import chat_loop  # noqa: E402

__all__ = ["ChatVectorError", "add", "apply_chat_vectors", "chat_loop", "chat_vector", "extract", "load_chat_model", "__version__"]
