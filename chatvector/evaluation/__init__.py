"""Choosing the ratio with evidence: the sweep and how its replies are judged.

sweep.py runs the ratios on an engine and keeps resumable logs; prompts.py loads the prompt sets (data/ holds the
built-in instruction and safety sets, package data); languages.py says which language a reply is in;
instructions.py checks IFEval's verifiable instructions with lm-eval's checkers; refusals.py detects refusals in
five languages; judge.py asks an optional OpenAI-compatible judge; report.py turns rows into per-ratio rates, the
recommendation and tables (pure functions); plots.py draws them. May import chatvector.engines, chatvector.merge,
chatvector.io and the ground floor.
"""
