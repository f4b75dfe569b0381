"""Choosing the ratio with evidence: the sweep and how its replies are judged.

sweep.py runs the ratios on an engine and keeps a resumable log; prompts.py loads the prompt sets
(data/ is package data); languages.py says which language a reply is in; report.py turns rows into
per-ratio rates and a recommendation (pure functions); plots.py draws them. May import
chatvector.engines, chatvector.merge, chatvector.io and the ground floor.
"""
