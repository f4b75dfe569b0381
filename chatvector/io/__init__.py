"""Checkpoints on disk: reading and writing them, and nothing about what the weights mean.

Safetensors layouts and headers (layout.py, torch-free), file regions as tensors and kernel copies
(filemap.py), the lazy reader that yields rows of any weight (checkpoint.py), the streaming shard
writer (writer.py) and the driver that fills it chunk by chunk (stream.py), per-thread reused buffers
(buffers.py), output directories that appear only when complete (outdir.py), the head start that copies
an output's bytes while torch imports (headstart.py), and tokenizers read from a model directory
(tokenizer_files.py). May import only the ground floor: chatvector.errors and chatvector.interrupts.
"""
