"""Process-group setup for `torchrun`, device choice, and gathering results across ranks.

Run as ``torchrun --nproc_per_node N ...``: torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and
MASTER_ADDR/PORT, and `init_distributed` joins the group (NCCL on CUDA, gloo on the CPU). A plain
``python``/``bplab`` process is rank 0 of a world of 1, and every helper here is a no-op for it.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import torch
import torch.distributed as dist

from bplab.errors import BplabError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Rank, world size, local rank and training device of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1


def choose_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """Return the device for `name`: "auto" picks CUDA, then Apple MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise BplabError(f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N, mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BplabError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun; return this process's DistInfo."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        log.debug("rank %d of %d joined the %s process group", rank, world_size, backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """Return rank 0's `obj` on every rank (e.g. the run folder path it created)."""
    if not info.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_ordered(tensor: torch.Tensor, total: int, info: DistInfo) -> torch.Tensor:
    """Reassemble per-rank results of a padded, unshuffled DistributedSampler in dataset order.

    Rank r scores dataset indices r, r + W, r + 2W, ... (W = world size), and every rank has the
    same count L. Stacking the parts as (L, W, ...) and flattening restores the order, and
    cutting to `total` rows drops the padding that the sampler added at the end.
    """
    if not info.distributed:
        return tensor[:total]
    parts = [torch.empty_like(tensor) for _ in range(info.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    stacked = torch.stack(parts, dim=1)  # (L, W, ...)
    return stacked.reshape(-1, *tensor.shape[1:])[:total]


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """Return the module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model
