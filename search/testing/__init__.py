"""Builders and harnesses for search tests and benchmarks (importable, unlike tests/).

``setting``: a tiny real search setting (encoder base, experts, tasks, item banks) and a
small config over it; ``cases``: the bad-input cases of benchmarks/reliability; ``kills``:
kill-and-resume harness of a real ``merge3 search`` process.
"""
