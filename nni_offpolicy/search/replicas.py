"""One search on several devices: data-parallel replicas launched through Lightning Fabric's ``devices`` setting.

Why the batch is split rather than each device taking its own batch: the P-DARTS code runs several GPUs through
``nn.DataParallel``, which splits each batch of ``batch_size`` images across them, so the schedule (steps per
epoch, learning-rate curve, controller updates per epoch) does not change with the number of GPUs. We keep that
meaning and run it the faster DDP way: every replica builds the same global batch (augmentation is seeded by
``(seed, epoch)``), takes its slice, and the gradients are averaged across replicas in one flat all-reduce, so the
weights stay identical everywhere (as with DataParallel, batch-norm statistics are per device).

Why there is no leader that broadcasts decisions: every replica holds the same controller with the same seed and
receives the same all-reduced accuracies, so it samples, shrinks and derives exactly what the others do. Only
replica 0 writes files and reports progress. A cheap checksum of the weights at every stage end turns any
divergence into an error instead of a silently different search.

Why ``ddp_spawn``: the search is a library call (``run_search``), also from inside an NNI trial and from tests,
so the replicas must be started from a function, not by re-running the command line.
"""
from __future__ import annotations

import os
import pickle
import threading
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from nni_offpolicy.errors import SearchDiverged, UserError
from nni_offpolicy.processes import die_with_parent


class ReplicasDiverged(UserError):
    """The replicas' weights differ at a stage end: their searches would no longer be one search."""


class Replicas:
    """The single-device case: every collective is the identity, so the search code has one path."""

    rank, world = 0, 1

    def __init__(self, device: torch.device):
        self.device = device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This replica's contiguous slice of a global batch."""
        return tensors

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def average_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        return None

    def average(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def check_in_step(self, module: torch.nn.Module, where: str) -> None:
        return None


class DistributedReplicas(Replicas):
    """Collectives over the process group Fabric set up (gloo on CPU, NCCL on GPUs)."""

    def __init__(self, device: torch.device, rank: int, world: int):
        super().__init__(device)
        self.rank, self.world = rank, world

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.tensor_split(self.world)[self.rank] for t in tensors)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def average(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.sum(tensor).div_(self.world)

    def average_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """One all-reduce of all gradients flattened together (per-tensor calls cost a launch and a round trip each).
        Replicas run the same path, so the same parameters have gradients on all of them."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.average(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()

    def check_in_step(self, module: torch.nn.Module, where: str) -> None:
        with torch.no_grad():
            total = torch.zeros(2, dtype=torch.float64, device=self.device)
            for p in module.parameters():
                total[0] += p.double().sum()
                total[1] += p.double().abs().sum()
        gathered = [torch.zeros_like(total) for _ in range(self.world)]
        dist.all_gather(gathered, total)
        if any(not torch.allclose(g, gathered[0], rtol=1e-9, atol=0.0) for g in gathered[1:]):
            sums = ", ".join(f"{g[0].item():.9g}" for g in gathered)
            raise ReplicasDiverged(f"replicas diverged {where}: their weights differ (weight sums {sums}), so "
                                   f"they no longer run one search; it stopped")


class _EpochForwarder:
    """Replica 0's per-epoch records travel to the launching process, where the caller's callback (an NNI report,
    say: it cannot be pickled into a spawned process) runs."""

    def __init__(self, queue: Any):
        self.queue = queue

    def __call__(self, record: dict) -> None:
        self.queue.put(("epoch", record))


def _replica_main(fabric: Any, worker: Callable[..., Any], queue: Any, launcher: int, args: tuple) -> None:
    # a killed search (kill -9 included) takes its replicas with it at once, not at their next epoch's end, when
    # replica 0's record meets the closed queue (processes.die_with_parent)
    die_with_parent(launcher)
    replicas = DistributedReplicas(fabric.device, fabric.global_rank, fabric.world_size)
    on_epoch = _EpochForwarder(queue) if replicas.is_main else None
    try:
        outcome: tuple = ("result", pickle.dumps(worker(replicas, on_epoch, *args)))
    except UserError as error:  # every replica meets it at the same point; replica 0's message goes back
        outcome = ("user_error", (type(error).__name__, str(error)))
    # Through our queue, which the launcher drains while the replicas run, not as Fabric's return value: Fabric
    # reads its result pipe only after every replica has exited, so a result over the pipe's 64 KiB buffer (a
    # genotype.json document easily is) blocks replica 0 in put() for ever. Plain pickle bytes, because a tensor
    # would otherwise travel as a shared-memory handle that dies with this process.
    if replicas.is_main:
        queue.put(outcome)


def launch(worker: Callable[..., Any], devices: int, accelerator: str, on_epoch: Callable[[dict], None] | None,
           *args: Any) -> Any:
    """Run ``worker(replicas, on_epoch, *args)`` on ``devices`` replicas; return replica 0's result.
    A UserError raised in the replicas is raised again here, so the CLI prints its one line."""
    import multiprocessing

    from lightning_fabric import Fabric

    queue = multiprocessing.get_context("spawn").SimpleQueue()
    outcome: list[tuple] = []

    def relay() -> None:
        while True:
            kind, payload = queue.get()
            if kind == "stop":
                return
            if kind == "epoch":
                if on_epoch is not None:
                    on_epoch(payload)
            else:
                outcome.append((kind, payload))

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        fabric = Fabric(accelerator=accelerator, devices=devices, strategy="ddp_spawn")
        fabric.launch(_replica_main, worker, queue, os.getpid(), args)
    finally:
        queue.put(("stop", None))
        reader.join()
    if not outcome:
        raise RuntimeError("the replicas ended without a result")
    kind, payload = outcome[0]
    if kind == "user_error":
        error = {SearchDiverged.__name__: SearchDiverged, ReplicasDiverged.__name__: ReplicasDiverged}.get(payload[0],
                                                                                                   UserError)
        raise error(payload[1])
    return pickle.loads(payload)


def check_devices(devices: int, device: torch.device, batch_size: int) -> None:
    """Before anything is spawned: a count the machine has and a batch that splits evenly."""
    if devices < 1:
        raise UserError(f"devices must be >= 1, got {devices}")
    if devices == 1:
        return
    if device.index is not None:
        raise UserError(f"device {device} names one GPU but devices={devices} asks for several; use device=cuda "
                        f"(the replicas take the first {devices} visible GPUs; CUDA_VISIBLE_DEVICES picks which)")
    if device.type == "cuda" and devices > torch.cuda.device_count():
        raise UserError(f"devices={devices} asked for, but only {torch.cuda.device_count()} CUDA device(s) are "
                        f"visible")
    if device.type not in ("cuda", "cpu"):
        raise UserError(f"devices > 1 runs on cuda or cpu, not {device.type}")
    if batch_size % devices:
        raise UserError(f"batch_size {batch_size} does not split evenly over {devices} devices; use a multiple of "
                        f"{devices}")
