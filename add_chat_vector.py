"""Add chat vectors to a continually pre-trained model: W = W_cp + sum_i ratio_i * CV_i."""
from chatvector.cli import as_bool, as_paths, as_ratios, as_token_map, command_line, run


def main(cp_model_path: str, chat_vector_path, output_path: str, ratio=None, skip_embed: bool = False,
         special_tokens_map=None, dtype: str = "auto", device: str = "auto", max_shard_size: str = "5GB",
         overwrite: bool = False, align_vocab: bool = False) -> None:
    """Add chat vectors to CP_MODEL_PATH and write a Hugging Face checkpoint to OUTPUT_PATH.

    Args:
        cp_model_path: CP model directory or hub id
        chat_vector_path: a chat vector directory, or a list: "['CV1','CV2']"
        output_path: output directory
        ratio: one per chat vector: "[0.5,0.5]"; default [1] for one vector
        skip_embed: keep the CP's input-embedding and output-head rows
        special_tokens_map: "{CP_TOKEN: CHAT_TOKEN, ...}" by id or string, or auto: rows taken from the chat model
        dtype: auto (the CP's own), bfloat16, float16 or float32
        device: where the arithmetic runs: auto (cuda if available), cpu or cuda
        max_shard_size: largest output shard, e.g. 5GB
        overwrite: replace a non-empty output directory
        align_vocab: match embedding and output-head rows by token string (extended or reordered vocabularies)
    """
    from chatvector import add

    vectors = as_paths(chat_vector_path, "CHAT_VECTOR_PATH")
    add(str(cp_model_path), vectors, str(output_path), ratios=as_ratios(ratio, len(vectors)),
        skip_embed=as_bool(skip_embed, "skip_embed"), special_tokens_map=as_token_map(special_tokens_map),
        dtype=dtype,
        device=device, max_shard_size=max_shard_size,
        overwrite=as_bool(overwrite, "overwrite"), command=command_line(), align_vocab=as_bool(align_vocab, "align_vocab"))


if __name__ == "__main__":
    run(main)
