"""Model cards (README.md with YAML front matter) recording how a vector or a merge was made."""
from pathlib import Path


def load_card_library() -> None:
    """Import huggingface_hub's card metadata (0.07 s after torch): on a side thread while the weights stream, not
    before them. Its whole card module pulls in the hub client too (0.2 s of CPU that the arithmetic's cores then lose)."""
    import huggingface_hub.repocard_data  # noqa: F401


def _write(out_dir: Path, data: dict, body: str) -> None:
    """The card as huggingface_hub's ModelCard saves it: front matter from ModelCardData, then the markdown."""
    from huggingface_hub.repocard_data import ModelCardData

    with open(out_dir / "README.md", "w", newline="", encoding="utf-8") as f:
        f.write(f"---\n{ModelCardData(**data).to_yaml()}\n---\n\n{body}")


def write_vector_card(out_dir: Path, name: str, meta: dict, command: str | None) -> None:
    data = dict(base_model=[meta["base_model"], meta["chat_model"]], tags=["chat-vector", "chatvector"], library_name="chatvector")
    body = f"""# Chat vector: {meta['chat_model']} − {meta['base_model']}

A chat vector (Huang et al., ACL 2024) is the weight difference between a chat model and the base
model it was tuned from. Add it to a model continually pre-trained from the same base to give that
model chat ability without instruction tuning:

```
python add_chat_vector.py CP_MODEL_PATH "['{name}']" OUTPUT_PATH --ratio "[1]"
```

- base model: `{meta['base_model']}`
- chat model: `{meta['chat_model']}`
- architecture: `{', '.join(meta['architectures'])}`, dtype `{meta['dtype']}`
- embeddings: input `{meta['embeddings']['input_embedding']}`, output `{meta['embeddings']['output_embedding']}`
- made with chatvector {meta['tool_version']}{_command(command)}
"""
    _write(out_dir, data, body)


def write_merge_card(out_dir: Path, name: str, record: dict, command: str | None, notes: str | None = None) -> None:
    vectors = record["chat_vectors"]
    models = [record["cp_model"], *[m for v in vectors for m in (v["base_model"], v["chat_model"])]]
    data = dict(base_model=list(dict.fromkeys(models)), tags=["chat-vector", "merge", "chatvector"], library_name="transformers")
    rows = "\n".join(f"| `{v['path']}` | `{v['base_model']}` | `{v['chat_model']}` | {v['ratio']} |" for v in vectors)
    options = "\n".join(f"- {k}: `{v}`" for k, v in record["options"].items())
    body = f"""# {name}

`{record['cp_model']}` with chat vectors added (Chat Vector, Huang et al., ACL 2024):
W = W_cp + Σ ratio_i · (W_chat_i − W_base_i), computed in float32 or wider and rounded once.

| chat vector | base model | chat model | ratio |
|---|---|---|---|
{rows}

Options:
{options}

{_written_by(record.get('written_by'))}Made with chatvector {record['tool_version']}{_command(command)}
{f"{chr(10)}{notes}" if notes else ""}"""
    _write(out_dir, data, body)


def _written_by(versions: dict | None) -> str:
    """Which transformers version wrote the files beside the weights: what a loader must read them as."""
    if not versions:
        return ""
    config, generation = versions.get("config.json"), versions.get("generation_config.json")
    line = (f"Files: `config.json` and the tokenizer as the CP's own transformers {config or '(version not recorded)'} wrote them, "
            "with the chat model's template and eos token")
    return line + (f"; `generation_config.json` as the chat model's transformers {generation} wrote it.\n\n" if generation else ".\n\n")


def _command(command: str | None) -> str:
    return f"\n\nCommand line:\n\n```\n{command}\n```" if command else ""
