"""Shared test set-up: make tests/parity.py and tests/strategies.py
importable from every test folder, and fix NumPy's print options."""
import os
import sys

import numpy
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng():
    """A seeded NumPy generator, fresh for every test."""
    return numpy.random.default_rng(1234)
