"""Ready Flower apps built on SecCL (used by the CLI, the tests and the benchmark)."""
