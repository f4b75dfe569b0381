"""Find the input embedding and output head: from config.json for common architectures, else from the model.

Imports no torch until the meta-device fallback needs it: extract's head start (io/headstart.py) names the
embeddings it copies before torch is imported.
"""
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ChatVectorError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class EmbeddingKeys:
    """Checkpoint keys of the input embedding and output head; the same key when they are tied."""

    input: str
    output: str | None

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(k for k in (self.input, self.output) if k))

    def to_json(self) -> dict:
        return {"input_embedding": self.input, "output_embedding": self.output}

    @classmethod
    def from_json(cls, data: dict) -> "EmbeddingKeys":
        return cls(data["input_embedding"], data.get("output_embedding"))


# Checkpoint keys of the embedding and head for common architectures, read from config.json and the
# checkpoint's own key names: building the model on the meta device needs transformers' modelling stack,
# seconds of import before the first byte (7 s on a GPU server). Other architectures use the meta model.
_LLAMA_LIKE = ("model.embed_tokens.weight", "lm_head.weight")
KNOWN_LAYOUTS: dict[str, list[tuple[str, str]]] = {
    **{model_type: [_LLAMA_LIKE] for model_type in (
        "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
        "phi3", "olmo", "olmo2", "granite", "starcoder2", "stablelm", "cohere", "helium", "glm", "smollm3")},
    "gpt2": [("transformer.wte.weight", "lm_head.weight"), ("wte.weight", "lm_head.weight")],
    "gpt_neox": [("gpt_neox.embed_in.weight", "embed_out.weight")],
}


def embedding_keys(model_dir: Path, config: dict, checkpoint_keys: Collection[str]) -> EmbeddingKeys:
    """From config.json and the checkpoint's keys for common architectures; else from the meta-device model."""
    return known_embedding_keys(config, checkpoint_keys) or find_embedding_keys(model_dir, list(checkpoint_keys))


def known_embedding_keys(config: dict, checkpoint_keys: Collection[str]) -> EmbeddingKeys | None:
    """None for an architecture not listed, or a checkpoint whose keys do not follow its usual layout."""
    keys = set(checkpoint_keys)
    for input_key, output_key in KNOWN_LAYOUTS.get(config.get("model_type"), []):
        if input_key not in keys:
            continue
        if output_key in keys:
            return EmbeddingKeys(input_key, output_key)
        if config.get("tie_word_embeddings", True):  # transformers' default: the head is the embedding
            return EmbeddingKeys(input_key, input_key)
    return None


def find_embedding_keys(model_dir: Path, checkpoint_keys: list[str]) -> EmbeddingKeys:
    """Build the model on the meta device and map its embedding parameters to the checkpoint's keys."""
    model = _meta_model(model_dir)
    params = list(model.named_parameters(remove_duplicate=False))
    input_weight = model.get_input_embeddings().weight
    output_module = model.get_output_embeddings()
    input_params = {n for n, p in params if p is input_weight}
    output_params = {n for n, p in params if output_module is not None and p is output_module.weight}
    to_model_key = checkpoint_to_model_key(model)
    input_key = output_key = None
    for key in checkpoint_keys:
        model_key = to_model_key(key)
        if model_key in input_params and input_key is None:
            input_key = key
        if model_key in output_params and (output_key is None or output_key == input_key):
            output_key = key
    if input_key is None:
        raise ChatVectorError(f"cannot find the input embedding {sorted(input_params)} among the weights of {model_dir}; is the checkpoint complete?")
    if output_params and output_key is None:
        raise ChatVectorError(f"cannot find the output head {sorted(output_params)} among the weights of {model_dir}; is the checkpoint complete?")
    return EmbeddingKeys(input_key, output_key)


def _meta_model(model_dir: Path) -> "torch.nn.Module":
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except Exception as e:
        raise ChatVectorError(f"cannot read the config of {model_dir} ({e}); is it a transformers model? upgrade transformers if the architecture is new") from None
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except Exception as e:
        raise ChatVectorError(f"transformers cannot build {config.architectures} from {model_dir} as a causal LM ({e}); upgrade transformers") from None


def checkpoint_to_model_key(model: "torch.nn.Module"):
    """The renaming transformers applies when loading (e.g. GPT-NeoX `embed_out` -> `lm_head`, GPT-2's prefix)."""
    meta_state = model.state_dict()
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

        conversions = get_model_conversion_mapping(model)
        renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
        converters = [c for c in conversions if isinstance(c, WeightConverter)]
        return lambda key: rename_source_key(key, renamings, converters, model.base_model_prefix, meta_state)[0]
    except ImportError:  # older transformers: keys are module names, possibly without the base prefix
        prefix = model.base_model_prefix
        return lambda key: key if key in meta_state or f"{prefix}.{key}" not in meta_state else f"{prefix}.{key}"
