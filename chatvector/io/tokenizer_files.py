"""Tokenizers read from a model directory: with transformers, or with `tokenizers` alone; their files copied as they are."""
import json
import shutil
from pathlib import Path

from ..errors import ChatVectorError


def load_tokenizer(model_dir: Path, what: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except Exception as e:
        raise ChatVectorError(f"cannot load the tokenizer of the {what} {model_dir} ({type(e).__name__}); it needs its tokenizer files") from None


# The files a Hugging Face tokenizer is saved as (fast, slow, sentencepiece, tiktoken), template included
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                   "chat_template.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json", "merges.txt",
                   "vocab.txt", "tokenizer.tiktoken")


def require_tokenizer_files(model_dir: Path, what: str) -> None:
    if not any((Path(model_dir) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise ChatVectorError(f"the {what} {model_dir} has no tokenizer files (tokenizer.json or tokenizer_config.json); "
                              "copy them from the model's original release")


def copy_tokenizer_files(model_dir: Path, out_dir: Path) -> None:
    """The tokenizer exactly as the model ships it: no transformers import, no re-serialisation."""
    for path in Path(model_dir).iterdir():
        if path.name in TOKENIZER_FILES or path.suffix == ".tiktoken":
            shutil.copyfile(path, out_dir / path.name)


class TokenizerFiles:
    """A fast tokenizer read from its files with the `tokenizers` library: no transformers import.

    transformers' AutoTokenizer import pulls in its modelling stack (measured 7.9 s on a GPU server),
    more than streaming a 2 GB model takes. Transferring a template and an eos token, and translating
    ids by token string, needs only the vocabulary, the special tokens and the template text.
    """

    def __init__(self, model_dir: Path):
        from tokenizers import Tokenizer

        self.dir = Path(model_dir)
        config_path = self.dir / "tokenizer_config.json"
        self.config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        self.backend = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        template = self.dir / "chat_template.jinja"
        self.chat_template = template.read_text() if template.is_file() else self.config.get("chat_template")
        self.eos_token, self.bos_token = self._token("eos_token"), self._token("bos_token")

    def _token(self, key: str) -> str | None:
        value = self.config.get(key)
        return value.get("content") if isinstance(value, dict) else value

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str | None]:
        return [self.backend.id_to_token(i) for i in ids]

    def template_tokens(self, conversations: list[list[dict]]) -> list[str]:
        """Special tokens the chat template renders for `conversations`, in order of appearance, then eos and bos.

        Rendered with jinja2 the way transformers renders templates (sandboxed, trim_blocks, lstrip_blocks,
        loop controls, `raise_exception`); a template that refuses a conversation is skipped for it.
        """
        special = [t.content for t in self.backend.get_added_tokens_decoder().values() if t.special]
        found: list[str] = []
        for text in self._renderings(conversations):
            found += sorted((t for t in special if t in text), key=text.find)
        return list(dict.fromkeys([*found, *(t for t in (self.eos_token, self.bos_token) if t)]))

    def _renderings(self, conversations: list[list[dict]]) -> list[str]:
        if not self.chat_template:
            return []
        from jinja2.exceptions import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.globals["raise_exception"] = raise_exception
        template = env.from_string(self.chat_template)
        texts = []
        for messages in conversations:
            try:
                texts.append(template.render(messages=messages, add_generation_prompt=True, bos_token=self.bos_token or "",
                                             eos_token=self.eos_token or ""))
            except Exception:  # a template that refuses this conversation (say, a system message)
                continue
        return texts


def read_tokenizer_files(model_dirs: list[Path]) -> list[TokenizerFiles] | None:
    """Every tokenizer via `tokenizers`, or None where one is not a fast tokenizer with a plain template."""
    try:
        tokenizers = [TokenizerFiles(d) for d in model_dirs]
    except Exception:  # no tokenizer.json, or one `tokenizers` cannot read: transformers handles it
        return None
    plain = all(t.chat_template is None or isinstance(t.chat_template, str) for t in tokenizers)
    return tokenizers if plain else None
