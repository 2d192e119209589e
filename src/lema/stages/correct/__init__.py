"""Stage `correct`: ``task`` renders and parses a correction, ``reference`` and ``llm`` are the correctors,
``correct`` runs one over the wrong paths."""
