"""Shared by every test module."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the tests' networks are tiny, and on a shared 2-core machine two threads spin against
    each other (tens of times slower); the kill/resume comparisons also need a subprocess and this process to do
    the same arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
