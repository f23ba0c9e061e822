"""Benchmark harness: ms per training step of weightwise against hand-written PyTorch and Keras 3.

Run it from the repository root with ``python -m benchmarks`` (``--help`` for the options,
``benchmarks/README.md`` for what is measured and how). Every (peer, model, variant) runs in
its own fresh interpreter (``benchmarks.child``); the parent (``benchmarks.runner``) collects
the results and prints the tables (``benchmarks.report``).
"""
