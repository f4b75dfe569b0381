"""The reference scripts' approach, as a baseline: whole models in memory via transformers, vector as a pickle."""
import sys

import torch
from transformers import AutoModelForCausalLM


def extract(base_path: str, chat_path: str, out_file: str) -> None:
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.bfloat16)
    chat = AutoModelForCausalLM.from_pretrained(chat_path, dtype=torch.bfloat16)
    base_params = dict(base.named_parameters())
    with torch.no_grad():
        for name, param in chat.named_parameters():
            param -= base_params[name]
    torch.save(chat.state_dict(), out_file)


def add(cp_path: str, vector_file: str, out_dir: str, ratio: float) -> None:
    cp = AutoModelForCausalLM.from_pretrained(cp_path, dtype=torch.bfloat16)
    vector = torch.load(vector_file, weights_only=True)
    with torch.no_grad():
        for name, param in cp.named_parameters():
            param += ratio * vector[name]
    cp.save_pretrained(out_dir)


if __name__ == "__main__":
    if sys.argv[1] == "extract":
        extract(*sys.argv[2:5])
    else:
        add(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
