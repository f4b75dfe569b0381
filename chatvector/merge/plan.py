"""The add rules in one place: validate a CP against chat vectors, then merge any rows of any weight.

Used by `add` (rows streamed from the CP's files) and by `chat --chat_vector` (rows of a loaded model).
"""
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..io.buffers import Workspace

from ..errors import ChatVectorError
from ..io.checkpoint import TensorInfo
from .arithmetic import accumulation_dtype, weighted_mean, weighted_sum_into
from .validate import check_same_architecture, check_same_names, check_same_shapes, float_names
from .vector import ChatVector
from .vocab import VocabAlignment, align_vocab, auto_token_map, report, resolve_token

# (CP tokenizer, one chat tokenizer per vector), loaded only when an option needs them
Tokenizers = Callable[[], tuple[object, list[object]]]


@dataclass
class Merge:
    vectors: list[ChatVector]
    ratios: list[float]
    skipped: set[str]  # weights that keep the CP's values (--skip_embed)
    special_rows: dict[str, dict[int, torch.Tensor]]  # weight -> {CP row: replacement row}
    workspace: Workspace
    names: set[str] = field(default_factory=set)  # the floating-point weights the vectors change
    alignments: dict[str, list[VocabAlignment]] = field(default_factory=dict)  # weight -> per vector (--align_vocab)
    token_map: dict = field(default_factory=dict)  # --special_tokens_map as applied ('auto' resolved to tokens)

    def rows(self, name: str, start: int, stop: int, cp_rows: torch.Tensor, dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows [start, stop) of the merged weight, in `dtype`: into `out`, or into a reused buffer (copy it before
        the next call)."""
        if name not in self.names:
            return cp_rows
        in_place = out is not None or cp_rows.device.type != "cpu"  # a loaded model merged on its GPU: the result stays there
        cp_rows = self.workspace.to_device(cp_rows, "cp")
        out = self.workspace.result(tuple(cp_rows.shape), dtype) if out is None else out
        if name in self.skipped:
            out.copy_(cp_rows)
        elif name in self.alignments:
            self._aligned_rows(out, name, start, stop, cp_rows)
        else:
            vectors = [self.workspace.to_device(v.tensors.read(name, start, stop), f"vector{i}") for i, v in enumerate(self.vectors)]
            weighted_sum_into(out, cp_rows, vectors, self.ratios, self.workspace)
        for row, value in self.special_rows.get(name, {}).items():
            if start <= row < stop:
                out[row - start].copy_(value)  # the chat models' row, rounded once
        return out if in_place else self.workspace.to_host(out)

    def changes(self, name: str) -> bool:
        """Whether any row of the weight differs from the CP's."""
        return name in self.names and (name not in self.skipped or bool(self.special_rows.get(name)))

    def _aligned_rows(self, out, name, start, stop, cp_rows) -> None:
        """out[r] = cp[r] + sum_i ratio_i * CV_i[row_i(r)] for the CP rows whose token vector i knows."""
        shape = tuple(cp_rows.shape)
        acc, scratch = (self.workspace.get(key, shape, accumulation_dtype(out.dtype)) for key in ("aligned", "aligned scratch"))
        acc.copy_(cp_rows)
        for i, (vector, alignment, ratio) in enumerate(zip(self.vectors, self.alignments[name], self.ratios)):
            mapped = alignment.rows[start:stop]
            where = (mapped >= 0).nonzero().squeeze(1)
            if ratio == 0 or not len(where):
                continue
            gathered = self.workspace.to_device(vector.tensors.read_rows(name, mapped[where].tolist()), f"vector{i}")
            widened = scratch[: len(where)].copy_(gathered)
            acc.index_add_(0, where.to(acc.device), widened, alpha=ratio)
        out.copy_(acc)


def plan_merge(cp_infos: dict[str, TensorInfo], cp_config: dict, vectors: Sequence[ChatVector], ratios: Sequence[float],
               skip_embed: bool, special_tokens_map: dict | str, device: torch.device, align_vocab: bool = False,
               tokenizers: Tokenizers | None = None, quiet: bool = False) -> Merge:
    """Check everything the merge needs before any weight is touched (`quiet`: a re-plan at other ratios, reported already)."""
    names = float_names(cp_infos)
    embeddings = vectors[0].embeddings
    loose = set(embeddings.names) if skip_embed or align_vocab else set()
    for vector in vectors:
        what = f"chat vector {vector.path}"
        check_same_architecture(cp_config, "CP model", vector.meta["config"], what)
        if vector.embeddings != embeddings:
            raise ChatVectorError(f"chat vectors {vectors[0].path} and {vector.path} name different embedding weights; extract them again with this version")
        check_same_names(names, "CP model", set(vector.tensors.infos), what)
        fix = ("the CP model's vocabulary differs from the chat model's; pass --align_vocab True to match rows by token, "
               "or --skip_embed True to keep the CP's embedding rows")
        check_same_shapes(cp_infos, "CP model", vector.tensors.infos, what, names - loose, embeddings.names, fix)
        for name in loose:
            if cp_infos[name].shape[1:] != vector.tensors.infos[name].shape[1:]:
                raise ChatVectorError(f"tensor {name} has rows of {list(cp_infos[name].shape[1:])} in the CP model but "
                                      f"{list(vector.tensors.infos[name].shape[1:])} in {what}; the hidden sizes must match")
    matching = needs_token_matching(align_vocab, special_tokens_map)
    cp_tokenizer, chat_tokenizers = tokenizers() if matching and tokenizers else (None, [None] * len(vectors))
    if matching and cp_tokenizer is None:
        raise ChatVectorError("--align_vocab and token strings in --special_tokens_map need the CP's and chat models' tokenizers")
    alignments = {}
    if align_vocab and not skip_embed:
        for name in embeddings.names:
            alignments[name] = [align_vocab_rows(cp_tokenizer, tok, cp_infos[name].rows, v, name, quiet) for v, tok in zip(vectors, chat_tokenizers)]
    if special_tokens_map == "auto":
        special_tokens_map = auto_token_map(cp_tokenizer, chat_tokenizers[-1])
        print(f"special_tokens_map auto: the chat model's rows for {', '.join(map(repr, special_tokens_map))}", file=sys.stderr)
    special_rows = _special_rows(cp_infos, vectors, ratios, embeddings.names, special_tokens_map, cp_tokenizer, chat_tokenizers)
    skipped = set(embeddings.names) if skip_embed else set()
    return Merge(list(vectors), list(ratios), skipped, special_rows, Workspace(device), names, alignments, dict(special_tokens_map))


def needs_token_matching(align_vocab: bool, special_tokens_map: dict | str) -> bool:
    """Whether the merge matches tokens by string (or renders the chat template, for `auto`): transformers' tokenizers."""
    return align_vocab or special_tokens_map == "auto" or (
        isinstance(special_tokens_map, dict) and any(isinstance(t, str) for pair in special_tokens_map.items() for t in pair))


def align_vocab_rows(cp_tokenizer, chat_tokenizer, cp_rows: int, vector: ChatVector, name: str, quiet: bool = False) -> VocabAlignment:
    alignment = align_vocab(cp_tokenizer, chat_tokenizer, cp_rows, vector.tensors.infos[name].rows)
    if name == vector.embeddings.input and not quiet:
        report(alignment, vector.path)
    return alignment


def _special_rows(cp_infos, vectors, ratios, embedding_names, token_map: dict, cp_tokenizer, chat_tokenizers) -> dict[str, dict[int, torch.Tensor]]:
    """Row k of the CP's embedding and head becomes the ratio-weighted mean of the chat models' row v."""
    if not token_map:
        return {}
    if sum(ratios) == 0:
        raise ChatVectorError("--special_tokens_map takes the ratio-weighted mean of the chat models' rows, but the ratios sum to 0")
    rows: dict[str, dict[int, torch.Tensor]] = {}
    for name in embedding_names:
        rows[name] = {}
        for cp_token, chat_token in token_map.items():
            cp_id = resolve_token(cp_token, cp_tokenizer, "CP", cp_infos[name].rows, name)
            chat_rows = []
            for vector, chat_tokenizer in zip(vectors, chat_tokenizers):
                if vector.chat_embeddings is None:
                    raise ChatVectorError(f"{vector.path} is a reference-format chat vector: its chat_embed/chat_lmhead are the base "
                                          "model's rows, not the chat model's, so --special_tokens_map cannot use them; extract the "
                                          "vector again with extract_chat_vector.py")
                chat_id = resolve_token(chat_token, chat_tokenizer, "chat", vector.chat_embeddings.infos[name].rows, f"{name} of {vector.path}")
                chat_rows.append(vector.chat_embeddings.read(name, chat_id, chat_id + 1)[0].clone())
            rows[name][cp_id] = weighted_mean(chat_rows, ratios, torch.float32)
    return rows
