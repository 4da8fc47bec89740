"""Fixtures of the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run the model tests on one intra-op thread.

    The test suite shares small CI machines; several processes each spinning two OpenMP threads on two cores
    slow tiny convolutions by 10-50x. One thread keeps the model tests fast and their results reproducible.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
