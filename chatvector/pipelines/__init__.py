"""The jobs that write or read whole directories: extract, add, convert and inspect.

Each resolves and validates its inputs, streams them through the merge rules, and writes an output
that appears only when complete: the weights, the files beside them (model_files.py: config,
generation config, tokenizer) and a model card (modelcard.py). inspection.py reads a vector and
reports what it changes. May import chatvector.merge, chatvector.io and the ground floor.
"""
