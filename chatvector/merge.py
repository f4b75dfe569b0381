"""The add rules in one place: validate a CP against chat vectors, then merge any rows of any weight.

Used by `add` (rows streamed from the CP's files) and by `chat --chat_vector` (rows of a loaded model).
"""
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .arithmetic import Workspace, accumulation_dtype, weighted_mean, weighted_sum_into
from .checkpoint import TensorInfo
from .errors import ChatVectorError
from .validate import check_same_architecture, check_same_names, check_same_shapes, float_names
from .vector import ChatVector


@dataclass
class Merge:
    vectors: list[ChatVector]
    ratios: list[float]
    skipped: set[str]  # weights that keep the CP's values (--skip_embed)
    special_rows: dict[str, dict[int, torch.Tensor]]  # weight -> {CP row: replacement row}
    workspace: Workspace
    names: set[str] = field(default_factory=set)  # the floating-point weights the vectors change

    def rows(self, name: str, start: int, stop: int, cp_rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Rows [start, stop) of the merged weight, in `dtype` (a reused buffer: copy it before the next call)."""
        if name not in self.names:
            return cp_rows
        shape = tuple(cp_rows.shape)
        acc = self.workspace.get("acc", shape, accumulation_dtype(dtype))
        skip = name in self.skipped
        vectors = [] if skip else [self.workspace.to_device(v.tensors.read(name, start, stop), f"vector{i}") for i, v in enumerate(self.vectors)]
        weighted_sum_into(acc, cp_rows, vectors, [] if skip else self.ratios)
        for row, value in self.special_rows.get(name, {}).items():
            if start <= row < stop:
                acc[row - start].copy_(value)
        return self.workspace.get("out", shape, dtype, host=cp_rows.device.type == "cpu").copy_(acc)


def plan_merge(cp_infos: dict[str, TensorInfo], cp_config: dict, vectors: Sequence[ChatVector], ratios: Sequence[float],
               skip_embed: bool, special_tokens_map: dict, device: torch.device) -> Merge:
    """Check everything the merge needs before any weight is touched."""
    names = float_names(cp_infos)
    embeddings = vectors[0].embeddings
    for vector in vectors:
        what = f"chat vector {vector.path}"
        check_same_architecture(cp_config, "CP model", vector.meta["config"], what)
        if vector.embeddings != embeddings:
            raise ChatVectorError(f"chat vectors {vectors[0].path} and {vector.path} name different embedding weights; extract them again with this version")
        check_same_names(names, "CP model", set(vector.tensors.infos), what)
        fix = "the CP model's vocabulary differs from the chat model's; pass --skip_embed True to keep the CP's embedding rows"
        shaped = names - set(embeddings.names) if skip_embed else names
        check_same_shapes(cp_infos, "CP model", vector.tensors.infos, what, shaped, embeddings.names, fix)
    special_rows = _special_rows(cp_infos, vectors, ratios, embeddings.names, special_tokens_map)
    skipped = set(embeddings.names) if skip_embed else set()
    return Merge(list(vectors), list(ratios), skipped, special_rows, Workspace(device), names)


def _special_rows(cp_infos, vectors, ratios, embedding_names, token_map: dict) -> dict[str, dict[int, torch.Tensor]]:
    """Row k of the CP's embedding and head becomes the ratio-weighted mean of the chat models' row v."""
    if not token_map:
        return {}
    if any(not isinstance(k, int) or not isinstance(v, int) for k, v in token_map.items()):
        raise ChatVectorError("--special_tokens_map takes token ids here, e.g. \"{128009:128009}\"")
    if sum(ratios) == 0:
        raise ChatVectorError("--special_tokens_map takes the ratio-weighted mean of the chat models' rows, but the ratios sum to 0")
    rows: dict[str, dict[int, torch.Tensor]] = {}
    for name in embedding_names:
        cp_rows = cp_infos[name].rows
        rows[name] = {}
        for cp_id, chat_id in token_map.items():
            if not 0 <= cp_id < cp_rows:
                raise ChatVectorError(f"--special_tokens_map: CP token id {cp_id} is out of range for {name} with {cp_rows} rows")
            chat_rows = []
            for vector in vectors:
                available = vector.chat_embeddings.infos[name].rows
                if not 0 <= chat_id < available:
                    raise ChatVectorError(f"--special_tokens_map: chat token id {chat_id} is out of range for {name} of {vector.path} with {available} rows")
                chat_rows.append(vector.chat_embeddings.read(name, chat_id, chat_id + 1)[0].clone())
            rows[name][cp_id] = weighted_mean(chat_rows, ratios, torch.float32)
    return rows
