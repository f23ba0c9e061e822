"""The devices and processes of a run, as ``keras.distribution`` names them, read from torch.distributed.

Keras names a device ``"type:index"`` (``"cpu:0"``, ``"gpu:3"``). Under torch.distributed each
process drives one device, so the global devices of a run are ``"<type>:<rank>"`` for every rank:
the index of a device is the rank of the process that owns it. Outside a process group the
devices are the local ones (``"cpu:0"``, or ``"gpu:<i>"`` for each visible GPU).

The world is the initialized process group; before it is initialized, the ``WORLD_SIZE`` and
``RANK`` variables that ``torchrun`` sets stand in for it, so a distribution built at the top of a
script launched by ``torchrun`` already spans every rank.

>>> list_devices("cpu")
['cpu:0']
>>> parse_device("GPU:3"), parse_device("cuda:1")
(('gpu', 3), ('gpu', 1))
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch
import torch.distributed as dist

from weightwise.arguments import count, invalid

__all__ = ["get_device_count", "initialize", "list_devices", "parse_device", "rank", "world_size"]

# Keras's device kinds; torch calls a GPU "cuda", which is accepted as another name for "gpu".
_KINDS = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "tpu": "tpu"}
_DEVICE = re.compile(r"([A-Za-z]+):(\d+)")


def parse_device(device: Any) -> tuple[str, int]:
    """``(kind, index)`` of a device named as Keras names it (``"gpu:1"``), or of a ``torch.device``.

    ``kind`` is ``"cpu"``, ``"gpu"`` (``"cuda"`` is read as ``"gpu"``) or ``"tpu"``; case does not matter.

    >>> parse_device("cpu:2"), parse_device(torch.device("cuda", 0))
    (('cpu', 2), ('gpu', 0))
    >>> parse_device("cpu")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `device`: expected a device named "type:index" with type cpu, gpu (or cuda) or tpu, such as "cpu:0". Received: device='cpu'
    """
    if isinstance(device, torch.device):
        if device.index is not None and device.type in _KINDS:
            return _KINDS[device.type], device.index
    elif isinstance(device, str):
        match = _DEVICE.fullmatch(device.strip())
        if match and match.group(1).lower() in _KINDS:
            return _KINDS[match.group(1).lower()], int(match.group(2))
    raise invalid("device", 'a device named "type:index" with type cpu, gpu (or cuda) or tpu, such as "cpu:0"', device,
                  error=TypeError if not isinstance(device, (str, torch.device)) else ValueError)


def _env_int(name: str) -> int | None:
    """The int in the environment variable ``name``, ``None`` when unset; a clear error when it holds no int."""
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"The environment variable {name} must hold an int. Received: {name}={text!r}") from None


def world_size() -> int:
    """How many processes the run has: the process group's size, else torchrun's ``WORLD_SIZE``, else 1.

    >>> world_size()
    1
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE") or 1


def rank() -> int:
    """This process's rank: the process group's, else torchrun's ``RANK``, else 0.

    >>> rank()
    0
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK") or 0


def _kind(device_type: Any) -> str:
    if device_type is None:
        if dist.is_available() and dist.is_initialized():
            # A group without NCCL (gloo alone) runs on the CPU even where a GPU is present.
            return "gpu" if torch.cuda.is_available() and "nccl" in str(dist.get_backend()).lower() else "cpu"
        return "gpu" if torch.cuda.is_available() else "cpu"
    if not isinstance(device_type, str) or device_type.lower() not in _KINDS:
        raise invalid("device_type", 'one of "cpu", "gpu" (or "cuda"), "tpu" or None', device_type)
    return _KINDS[device_type.lower()]


def list_devices(device_type: str | None = None) -> list[str]:
    """The devices of the run, as ``"type:index"`` strings; never a mix of types.

    ``device_type`` is ``"cpu"``, ``"gpu"`` or ``"tpu"``; by default ``"gpu"`` where CUDA is
    available (and, in an initialized process group, its backend has NCCL), else ``"cpu"``. With several processes (an initialized process group, or
    ``torchrun``'s ``WORLD_SIZE``) the global devices are returned, one per rank: ``"cpu:<rank>"``,
    or ``"gpu:<rank>"`` where CUDA is available. A type the run does not have gives ``[]``
    (there are no TPUs under torch).

    >>> list_devices("cpu"), list_devices("tpu")
    (['cpu:0'], [])
    """
    kind = _kind(device_type)
    if kind == "tpu" or (kind == "gpu" and not torch.cuda.is_available()):
        return []
    processes = world_size()
    if processes > 1 or (dist.is_available() and dist.is_initialized()):
        return [f"{kind}:{rank}" for rank in range(processes)]
    if kind == "gpu":
        return [f"gpu:{index}" for index in range(torch.cuda.device_count())]
    return ["cpu:0"]


def get_device_count(device_type: str | None = None) -> int:
    """How many devices :func:`list_devices` gives for ``device_type``.

    >>> get_device_count("cpu")
    1
    """
    return len(list_devices(device_type))


def _coordinator(job_addresses: Any) -> tuple[str, int | None]:
    """Host and port of the first of the comma-separated ``job_addresses`` (the job of process 0)."""
    if not isinstance(job_addresses, str) or not job_addresses.strip():
        raise invalid("job_addresses", 'a string of comma-separated "host:port" addresses', job_addresses)
    first = job_addresses.split(",")[0].strip()
    host, colon, port = first.rpartition(":")
    if not colon:
        return first, None
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid("job_addresses", 'comma-separated "host:port" addresses with a port in [1, 65535]',
                      job_addresses)
    return host, int(port)


def initialize(job_addresses: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               ) -> None:
    """Start torch.distributed's default process group for a run of several processes.

    Each argument falls back to Keras's environment variable (``KERAS_DISTRIBUTION_JOB_ADDRESSES``,
    ``KERAS_DISTRIBUTION_NUM_PROCESSES``, ``KERAS_DISTRIBUTION_PROCESS_ID``), then to the ones
    ``torchrun`` sets (``MASTER_ADDR`` and ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``). Process 0
    listens at the first address of ``job_addresses``; the others connect to it. The backend is
    torch's default for the devices present (gloo on CPU, NCCL for CUDA tensors).

    When the process group is already up, nothing is started; an argument that contradicts it
    (another ``num_processes`` or ``process_id``) is refused. With no process count anywhere (a
    plain ``python script.py``), a ``ValueError`` says what to set.

    >>> import os
    >>> os.environ.get("WORLD_SIZE") is None and not __import__("torch").distributed.is_initialized()
    True
    >>> initialize()
    Traceback (most recent call last):
    ...
    ValueError: `initialize` needs the number of processes: pass `num_processes` (and `process_id`, `job_addresses`), set KERAS_DISTRIBUTION_NUM_PROCESSES, or launch the script with torchrun, which sets WORLD_SIZE.
    """
    env_names = {"job_addresses": "KERAS_DISTRIBUTION_JOB_ADDRESSES", "num_processes": "KERAS_DISTRIBUTION_NUM_PROCESSES",
                 "process_id": "KERAS_DISTRIBUTION_PROCESS_ID"}
    if job_addresses is None:
        job_addresses = os.environ.get(env_names["job_addresses"])
    if num_processes is None:
        num_processes = _env_int(env_names["num_processes"])
    if process_id is None:
        process_id = _env_int(env_names["process_id"])
    num_processes = count(num_processes, "num_processes", low=1, allow_none=True)
    process_id = count(process_id, "process_id", low=0, allow_none=True)
    host, port = _coordinator(job_addresses) if job_addresses is not None else (None, None)

    if dist.is_initialized():
        running = {"num_processes": dist.get_world_size(), "process_id": dist.get_rank()}
        for name, value in (("num_processes", num_processes), ("process_id", process_id)):
            if value is not None and value != running[name]:
                raise ValueError(f"The process group is already initialized with {name}={running[name]}; "
                                 f"`initialize` cannot change it. Received: {name}={value}")
        return

    num_processes = num_processes if num_processes is not None else _env_int("WORLD_SIZE")
    process_id = process_id if process_id is not None else _env_int("RANK")
    if num_processes is None:
        raise ValueError("`initialize` needs the number of processes: pass `num_processes` (and `process_id`, "
                         "`job_addresses`), set KERAS_DISTRIBUTION_NUM_PROCESSES, or launch the script with torchrun, "
                         "which sets WORLD_SIZE.")
    if process_id is None:
        if num_processes != 1:
            raise ValueError(f"`initialize` needs this process's id among the {num_processes} processes: pass "
                             "`process_id`, set KERAS_DISTRIBUTION_PROCESS_ID, or launch with torchrun, which sets RANK.")
        process_id = 0
    if process_id >= num_processes:
        raise invalid("process_id", f"an int in [0, {num_processes - 1}] (one of the {num_processes} processes)",
                      process_id)
    host = host or os.environ.get("MASTER_ADDR")
    port = port or _env_int("MASTER_PORT")
    if num_processes == 1 and (host is None or port is None):
        # A group of one process has nobody to meet: an in-memory store needs no address.
        dist.init_process_group(store=dist.HashStore(), world_size=1, rank=0)
        return
    if host is None or port is None:
        raise ValueError("`initialize` needs the address of process 0 as \"host:port\": pass `job_addresses`, set "
                         "KERAS_DISTRIBUTION_JOB_ADDRESSES, or set MASTER_ADDR and MASTER_PORT (torchrun does). "
                         f"Received: job_addresses={job_addresses!r}")
    dist.init_process_group(init_method=f"tcp://{host}:{port}", world_size=num_processes, rank=process_id)
