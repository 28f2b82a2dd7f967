"""Builders of small real models and data for tests, benchmarks and the demo.

``synthetic``: tiny Llama/GPT-2 families (a base plus low-rank-plus-noise experts);
``eval_fixtures``: the tiny causal LMs, encoder and task files the evaluator tests share.
Everything here is real (saved with ``save_pretrained``, loadable by transformers) and
built offline from a seed; nothing is a mock. Search-level settings, which need the
evaluators and the search, live in :mod:`search.testing`.
"""
