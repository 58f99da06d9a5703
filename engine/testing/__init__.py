"""Test and benchmark fixtures (tiny random-weight models in the real file layouts). Production code never
imports this package (tests/test_architecture.py checks it)."""
