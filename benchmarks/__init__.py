"""Side-by-side benchmarks of mmvlp against the official implementations
(see docs/benchmarks.md)."""
