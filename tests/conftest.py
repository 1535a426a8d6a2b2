"""Settings shared by every test."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # The tensors in these tests are tiny: splitting each op over threads costs more
    # than the op, and far more when other processes share the two cores (OpenMP waits
    # for a descheduled thread). One thread keeps in-process tests fast and stable;
    # subprocesses (the CLI tests) keep torch's default.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
