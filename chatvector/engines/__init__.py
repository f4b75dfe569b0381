"""Generation engines: a model that answers conversations, at any ratio of chat vectors merged into its weights.

hf.py loads with transformers and merges in memory (merge/in_memory.py): chat's streamed replies, the sweep's
batches. vllm.py starts vLLM once on the CP and has each of its workers (vllm_worker.py, which runs inside vLLM's
processes) stream the merged weights in at every ratio. Both report replies as replies.py's Reply. May import
chatvector.merge, chatvector.io and the ground floor; vLLM itself only where --engine vllm asks for it.
"""
