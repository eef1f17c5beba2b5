"""Pure domain code: wire models, errors, ids, time grammar, dedup, context rendering."""
