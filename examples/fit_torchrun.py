"""Train a regularized, constrained weightwise model on several processes with ``torchrun``.

Run it on 2 processes (CPUs, or one GPU each):

    torchrun --standalone --nproc_per_node 2 examples/fit_torchrun.py
    torchrun --standalone --nproc_per_node 2 examples/fit_torchrun.py --distribute fsdp

Every process runs this same script. ``fit`` sees the process group that ``torchrun`` set
up: it wraps the model in DDP (or shards it with FSDP2), gives each process its own part
of every epoch, reports the metrics of the global batch on every rank, and prints and
writes files from rank 0 only. With ``--batch-size 32`` on 2 processes, each step trains on
a global batch of 64, as ``fit(batch_size=64)`` does in one process.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.distributed as dist

import weightwise as ww
from weightwise import callbacks, constraints, layers, regularizers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distribute", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="fit_torchrun_out", help="folder of the checkpoint and the CSV log")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    os.makedirs(args.out, exist_ok=True)

    # The same data on every rank; fit splits each epoch among the ranks.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 20)).astype("float32")
    y = (x[:, :5].sum(axis=1, keepdims=True) > 0).astype("float32")

    ww.utils.set_random_seed(0)  # rank 0's weights are the starting point of every rank
    model = ww.Sequential([
        layers.Input(shape=(20,)),
        layers.Dense(32, activation="relu", kernel_regularizer=regularizers.L2(1e-3),
                     activity_regularizer=regularizers.L1(1e-4), kernel_constraint=constraints.MaxNorm(2.0)),
        layers.Dense(1, activation="sigmoid", bias_constraint=constraints.NonNeg()),
    ]).to(device)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"], distribute=args.distribute)
    history = model.fit(
        x, y, batch_size=args.batch_size, epochs=args.epochs, validation_split=0.25, verbose=2,
        callbacks=[callbacks.ModelCheckpoint(os.path.join(args.out, "model.keras")),
                   callbacks.CSVLogger(os.path.join(args.out, "log.csv"))],
    )
    # Every rank holds the same History: the metrics of the global batches.
    if rank == 0:
        print(f"final: loss {history.history['loss'][-1]:.4f}, val_accuracy {history.history['val_accuracy'][-1]:.4f}")
    dist.barrier()  # no rank tears the group down while another still talks to it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
