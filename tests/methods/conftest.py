"""Fixtures of the method tests; helpers live in method_kit.py."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a small machine shared with other processes, OpenMP threads
    contend and the tiny networks of these tests run several times slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
