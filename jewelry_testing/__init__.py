"""Test support shared by tests/ and benchmarks/: a launcher for servers on 127.0.0.1 and a
corpus of hostile uploads. Imports no pytest, so benchmark scripts can use it too; it lives beside
them in the checkout, outside src/, so the wheel does not ship it."""
