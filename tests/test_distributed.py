"""`bplab train` under `torchrun --nproc_per_node 2` with gloo on the CPU."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed")

from _torch_fixtures import make_image_folder  # noqa: E402
from bplab.training.checkpoint import load_checkpoint  # noqa: E402

# Runs `bplab train` in each rank, and also saves every rank's final weights so the test can
# compare them (only rank 0 writes the run folder).
RANK_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    import bplab.training.recipe as recipe
    from bplab.cli import main
    from bplab.training.distributed import unwrap_model

    class RecordingTrainer(recipe.Trainer):
        def fit(self):
            history = super().fit()
            state = unwrap_model(self.model).state_dict()
            torch.save(state, os.path.join(sys.argv[1], f"rank{self.dist.rank}.pt"))
            return history

    recipe.Trainer = RecordingTrainer
    sys.exit(main(sys.argv[2:]))
""")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_ranks(tmp_path):
    """Two gloo ranks finish a tiny run with identical weights and write one run folder."""
    data = make_image_folder(tmp_path / "shapes", {"train": 20, "test": 5}, seed=2)
    script = tmp_path / "rank_script.py"
    script.write_text(RANK_SCRIPT)
    weights = tmp_path / "weights"
    weights.mkdir()
    runs = tmp_path / "runs"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(script), str(weights),
        "train", "--model", "resnet_course", "--dataset", str(data), "--epochs", "2",
        "--val-size", "13", "--batch-size", "8", "--threads", "1", "--device", "cpu",
        "--out", str(runs / "ddp"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    assert [p.name for p in runs.iterdir()] == ["ddp"]
    summary = json.loads((runs / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["test_images"] == 15
    assert result.stdout.count("test_accuracy") == 1  # printed by rank 0 only

    rank0 = torch.load(weights / "rank0.pt")
    rank1 = torch.load(weights / "rank1.pt")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    # The checkpoint written under DDP loads in a single process.
    ckpt = load_checkpoint(runs / "ddp" / "last.pt")
    assert not any(key.startswith("module.") for key in ckpt["model"])
    from bplab.experiments.torch_train import load_run_model

    model, _ = load_run_model(runs / "ddp", "last.pt")
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 3)
