"""Fakes that ship with the package, for tests of modelport and of code built on it."""
