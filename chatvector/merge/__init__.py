"""The chat-vector rules: which weights combine, how, and with what checks.

Pure arithmetic on tensors, accumulated wide and rounded once (arithmetic.py); the checks that a CP
and its vectors fit (validate.py, lineage.py); where the embeddings are (embeddings.py); a chat vector
directory (vector.py); vocabulary alignment and token maps (vocab.py); the merge plan that turns
options into rows of any weight (plan.py); and that plan applied to a loaded model in place
(in_memory.py), which chat and the sweep share. One merge implementation serves add, chat and the
sweep. May import chatvector.io and the ground floor, never a package above it.
"""
