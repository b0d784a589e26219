"""Reliability checks behind `make reliability` (`python -m benchmarks.reliability`) and
docs/RELIABILITY.md, one module per kind of check; the test suite runs them light."""
