"""Data-parallel training with ``torch.distributed`` (launched by ``torchrun``).

Every rank holds the whole model and the same data, draws the same negatives and the same order
(same seed), and takes its contiguous share of each mini-batch. After the backward pass the
gradients are summed across ranks in one flattened all-reduce, so each step equals the
single-process step on the full batch (the losses are sums), up to floating-point summation order.
Every rank evaluates (the evaluation is deterministic, so all ranks take the same early-stopping
decisions without talking); only rank 0 writes files.

    torchrun --standalone --nproc_per_node 2 -m distillrec.cli train --config … --out runs/NAME

The backend is gloo on CPU (nccl when CUDA is used).
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(rc: int) -> None:
    """Ends a torchrun worker with exit status ``rc`` once its command has returned.

    On success every rank first waits for the others (no collective in flight, rank 0's files
    written). The process then exits without interpreter teardown, which is where a gloo worker
    intermittently aborted with "terminate called without an active exception" (its C++ threads
    still holding tensors while Python shuts down), turning a finished run into a failed job. On
    failure the ranks do not wait for each other (another rank may be inside a collective).
    """
    if dist.is_initialized() and rc == 0:
        dist.barrier()
        _leave_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Reads ``RANK``/``WORLD_SIZE`` (set by torchrun) and joins the process group once."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            # A command that returns leaves through exit_worker; after an uncaught exception, leave
            # the group at least before interpreter teardown (see exit_worker).
            atexit.register(_leave_process_group)
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size())

    def shard(self, start: int, stop: int) -> slice:
        """This rank's contiguous share of the rows ``start:stop`` of a batch."""
        n = stop - start
        lo = start + n * self.rank // self.world_size
        hi = start + n * (self.rank + 1) // self.world_size
        return slice(lo, hi)

    def sum_gradients(self, params: list[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
        """Sums gradients (and the loss) over ranks in one all-reduce; returns the global loss."""
        if not self.enabled:
            return loss.detach()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(1)])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            if p.grad is None:
                p.grad = flat[offset : offset + n].view_as(p).clone()
            else:
                p.grad.copy_(flat[offset : offset + n].view_as(p))
            offset += n
        return flat[-1]

    def sum_values(self, values: dict[str, float]) -> dict[str, float]:
        """Sums a dict of scalars over ranks (every rank must pass the same keys)."""
        if not self.enabled:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(t)
        return dict(zip(keys, t.tolist()))
