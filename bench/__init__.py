"""FieldSync benchmarks: `python -m bench <name> [sizes] [--json]`.

Each benchmark builds its own world, measures, and prints one JSON document (machine, library versions,
parameters, figures). Figures that matter are ratios against a baseline measured in the same run (a
ratio holds on a noisy machine, an absolute time does not) and sizes in bytes; tests never assert times
(tests/bench/test_smoke.py only checks that every benchmark runs and reports what it promises).
"""
