"""Generation engines: a model loaded (with chat vectors merged in memory) that answers conversations.

hf.py loads with transformers and generates with `generate` (chat's streaming replies, the sweep's
batches); replies.py holds what every engine reports for a reply and the checks that need no model.
May import chatvector.merge, chatvector.io and the ground floor.
"""
