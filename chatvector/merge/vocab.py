"""Match embedding rows by token string between a CP tokenizer and a chat tokenizer (--align_vocab)."""
import sys
from dataclasses import dataclass

import torch

from ..errors import ChatVectorError


@dataclass(frozen=True)
class VocabAlignment:
    """For each CP row, the chat-vector row of the same token, or -1 (the CP row is left as it is)."""

    rows: torch.Tensor  # int64 [cp_rows]
    shared: int  # CP tokens the chat model also has (with a vector row)
    cp_only: int  # CP tokens the chat model lacks: rows unchanged
    chat_only: int  # chat tokens the CP lacks: their deltas are dropped
    padding: int  # rows no token names, matched by index where both models have them

    def summary(self) -> str:
        return f"{self.shared} shared, {self.cp_only} CP-only, {self.chat_only} chat-only, {self.padding} padding rows"


def align_vocab(cp_tokenizer, chat_tokenizer, cp_rows: int, vector_rows: int) -> VocabAlignment:
    cp_vocab = {t: i for t, i in cp_tokenizer.get_vocab().items() if i < cp_rows}
    chat_vocab = {t: i for t, i in chat_tokenizer.get_vocab().items() if i < vector_rows}
    rows = torch.full((cp_rows,), -1, dtype=torch.long)
    for token, cp_id in cp_vocab.items():
        rows[cp_id] = chat_vocab.get(token, -1)
    cp_named, chat_named = set(cp_vocab.values()), set(chat_vocab.values())
    padding = [r for r in range(min(cp_rows, vector_rows)) if r not in cp_named and r not in chat_named]
    rows[padding] = torch.tensor(padding, dtype=torch.long)
    shared = sum(1 for t in cp_vocab if t in chat_vocab)
    return VocabAlignment(rows, shared, len(cp_vocab) - shared, len(chat_vocab) - shared, len(padding))


def template_tokens(chat_tokenizer) -> list[str]:
    """Special tokens the chat template renders (found by rendering it), plus the chat model's eos and bos."""
    from ..io.tokenizer_files import TokenizerFiles

    if isinstance(chat_tokenizer, TokenizerFiles):  # read with `tokenizers`: rendered with jinja2 as transformers would
        return chat_tokenizer.template_tokens(_sample_conversations())
    special = {chat_tokenizer.convert_ids_to_tokens(i) for i in chat_tokenizer.all_special_ids}
    special |= {t.content for t in getattr(chat_tokenizer, "added_tokens_decoder", {}).values() if t.special}
    special.discard(chat_tokenizer.unk_token)  # the sample messages' own text may contain unknown characters
    found: list[str] = []
    for messages in _sample_conversations():
        try:
            text = chat_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:
            continue
        for token in chat_tokenizer.convert_ids_to_tokens(chat_tokenizer(text, add_special_tokens=False)["input_ids"]):
            if token in special and token not in found:
                found.append(token)
    for token in (chat_tokenizer.eos_token, chat_tokenizer.bos_token):
        if token and token not in found:
            found.append(token)
    return found


def _sample_conversations() -> list[list[dict]]:
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
    return [[{"role": "system", "content": "Be brief"}, *turns], turns]


def resolve_token(token: int | str, tokenizer, what: str, rows: int, where: str) -> int:
    """A token id as given, or the id of a token string in `tokenizer`; checked against the embedding's rows."""
    if isinstance(token, str):
        token_id = tokenizer.get_vocab().get(token) if tokenizer is not None else None
        if token_id is None:
            raise ChatVectorError(f"--special_tokens_map: the {what} tokenizer has no token {token!r}; "
                                  "add it to that tokenizer (and resize the embeddings) or map another token")
        token = token_id
    if not 0 <= token < rows:
        raise ChatVectorError(f"--special_tokens_map: {what} token id {token} is out of range for {where} with {rows} rows")
    return token


def auto_token_map(cp_tokenizer, chat_tokenizer) -> dict[str, str]:
    """`--special_tokens_map auto`: each token the chat template needs maps to the same string in the CP."""
    tokens = template_tokens(chat_tokenizer)
    missing = [t for t in tokens if t not in cp_tokenizer.get_vocab()]
    if missing:
        raise ChatVectorError(f"the chat template needs {missing[0]!r}, which the CP tokenizer lacks; add it to the CP tokenizer "
                              "and resize the CP's embeddings, or give --special_tokens_map explicitly")
    return {t: t for t in tokens}


def translate_ids(ids: list[int], source_tokenizer, target_tokenizer) -> tuple[list[int], list[str]]:
    """Token ids of one tokenizer as the other's ids, by token string; also the tokens the target lacks."""
    vocab = target_tokenizer.get_vocab()
    tokens = source_tokenizer.convert_ids_to_tokens(list(ids))
    return [vocab[t] for t in tokens if t in vocab], [t for t in tokens if t not in vocab]


def report(alignment: VocabAlignment, vector_path: str) -> None:
    print(f"align_vocab {vector_path}: {alignment.summary()}", file=sys.stderr)


def untrained_template_tokens(cp, vector, cp_tokenizer, chat_tokenizer, changed: set[int]) -> list[str]:
    """Chat-template tokens whose CP row looks untrained and that no option replaces (it reads the inputs only).

    Untrained: equal to the base model's row (recovered as chat row - delta), or of near-zero norm
    compared with the median row. Such a row makes a model that never ends its turn.
    """
    name = vector.embeddings.input
    cp_vocab, chat_vocab = cp_tokenizer.get_vocab(), chat_tokenizer.get_vocab()
    candidates = [t for t in template_tokens(chat_tokenizer)
                  if t in cp_vocab and cp_vocab[t] not in changed and cp_vocab[t] < cp.infos[name].rows]
    if not candidates:  # e.g. --special_tokens_map auto replaced them all: spare the pass over the embedding
        return []
    median = _median_row_norm(cp, name)
    return [t for t in candidates if _looks_untrained(cp, vector, name, cp_vocab[t], chat_vocab.get(t), median)]


def warn_untrained(tokens: list[str]) -> None:
    if tokens:
        print(f"warning: the chat template uses {', '.join(map(repr, tokens))}, whose CP rows look untrained (the base "
              "model's rows, or near zero); the model may never end its turn: pass --special_tokens_map auto to take the chat "
              "model's rows", file=sys.stderr)


def _looks_untrained(cp, vector, name: str, cp_id: int, chat_id: int | None, median: float) -> bool:
    cp_row = cp.read_rows(name, [cp_id])[0].double()
    untrained = bool(cp_row.norm() <= 1e-3 * median)
    if chat_id is not None and chat_id < min(vector.tensors.infos[name].rows, vector.chat_embeddings.infos[name].rows):
        delta = vector.tensors.read_rows(name, [chat_id])[0].double()
        base_row = vector.chat_embeddings.read_rows(name, [chat_id])[0].double() - delta
        untrained |= bool((cp_row - base_row).abs().max() <= 2**-7 * delta.abs().max() + 1e-12)
    return untrained


def _median_row_norm(cp, name: str, sample: int = 4096) -> float:
    """Median row norm over at most `sample` evenly spaced rows: the threshold is 1e-3 of it, so an estimate
    serves, and reading a whole 128k-row embedding again (1 GB for Llama-3-8B) would lengthen every add."""
    rows = cp.infos[name].rows
    picked = sorted({i * rows // min(rows, sample) for i in range(min(rows, sample))})
    return torch.linalg.vector_norm(cp.read_rows(name, picked).float(), dim=-1).median().item()
