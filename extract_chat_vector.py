"""Extract a chat vector: CHAT_MODEL - BASE_MODEL, written to CHAT_VECTOR_PATH."""
from chatvector.cli import as_bool, command_line, run


def main(base_model_path: str, chat_model_path: str, chat_vector_path: str, dtype: str = "auto", device: str = "auto",
         max_shard_size: str = "5GB", overwrite: bool = False) -> None:
    """Extract the chat vector (chat - base) of every floating-point weight.

    Args:
        base_model_path: base model directory or hub id, e.g. meta-llama/Meta-Llama-3-8B
        chat_model_path: its chat model, e.g. meta-llama/Meta-Llama-3-8B-Instruct
        chat_vector_path: output directory
        dtype: auto (the chat model's own), bfloat16, float16 or float32
        device: where the arithmetic runs: auto (cuda if available), cpu or cuda
        max_shard_size: largest output shard, e.g. 5GB
        overwrite: replace a non-empty output directory
    """
    from chatvector import extract

    extract(str(base_model_path), str(chat_model_path), str(chat_vector_path),
            dtype=dtype,
            device=device, max_shard_size=max_shard_size,
            overwrite=as_bool(overwrite, "overwrite"), command=command_line())


if __name__ == "__main__":
    run(main)
