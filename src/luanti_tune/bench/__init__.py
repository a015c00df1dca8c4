"""Benchmarks. Each prints one JSON object: figures plus a ratio to a baseline from the same run."""
