"""The all-MiniLM-L6-v2 sentence model in numpy: verified weights, tokenizer, encoder.

Needs ``numpy`` and the weights package (``memtrace-server[semantic]``); nothing here is
imported unless hybrid search is on.
"""
