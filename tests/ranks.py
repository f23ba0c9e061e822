"""Run a test's worker on several gloo ranks on 127.0.0.1, each in its own process, within a deadline.

A worker is a module-level function ``worker(rank, world_size, port, *args)`` (module level so that
``torch.multiprocessing.spawn`` can pickle it). Inside it, ``with gloo(rank, world_size, port):``
initializes the process group, limits torch to one thread (two ranks share two cores) and always
destroys the group. Results travel back through files the worker writes under a ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(worker: Callable[..., None], *args: Any, nprocs: int = 2, timeout: float = 120.0) -> None:
    """Spawn ``nprocs`` processes running ``worker(rank, nprocs, port, *args)``; fail the test after ``timeout`` s.

    An exception in a rank fails the test with that rank's traceback; a rank still alive at the
    deadline is killed, so a hung collective never hangs the suite.
    """
    import torch.multiprocessing as mp

    port = free_port()
    deadline = time.monotonic() + timeout
    context = mp.spawn(worker, args=(nprocs, port, *args), nprocs=nprocs, join=False)
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                pytest.fail(f"{nprocs} ranks of {worker.__name__} did not finish within {timeout:.0f} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


@contextlib.contextmanager
def gloo(rank: int, world_size: int, port: int) -> Iterator[None]:
    """The process group of one rank, as ``torchrun`` would set it up (its environment variables too)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()
