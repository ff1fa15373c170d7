"""CLI plumbing: one-line errors and config overrides."""

import dataclasses

import pytest

from bplab.cli import main
from bplab.config import apply_overrides
from bplab.errors import BplabError


def test_unknown_command_one_line(capsys):
    """An unknown command exits 2 with one error line naming it."""
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "no-such-command" in err[0]


@dataclasses.dataclass
class _Optim:
    lr: float = 0.1  # step size
    name: str = "sgd"  # optimizer name


@dataclasses.dataclass
class _Config:
    epochs: int = 3  # passes over the training split
    hidden: tuple[int, ...] = (64,)  # hidden layer widths
    optim: _Optim = dataclasses.field(default_factory=_Optim)


def test_overrides_convert_types():
    """Dotted overrides are converted to the field types and leave the original untouched."""
    base = _Config()
    cfg = apply_overrides(base, {"epochs": "5", "optim.lr": "0.01", "hidden": "128,64"})
    assert cfg.epochs == 5
    assert cfg.optim.lr == 0.01
    assert cfg.hidden == (128, 64)
    assert base.optim.lr == 0.1


def test_overrides_reject_unknown_key():
    """An unknown key names itself and the valid keys."""
    with pytest.raises(BplabError, match="optim.momentum.*valid keys: lr, name"):
        apply_overrides(_Config(), {"optim.momentum": "0.9"})


def test_overrides_reject_bad_type():
    """A value of the wrong type is rejected with the key and the expected type."""
    with pytest.raises(BplabError, match="epochs"):
        apply_overrides(_Config(), {"epochs": "many"})


def test_report_command_missing_folder(tmp_path, capsys):
    """`bplab report` on a missing folder prints one error line and exits 2."""
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "nowhere not found" in err[0]


def test_report_refuses_folder_without_run_files(tmp_path, capsys):
    """`bplab report` on a folder with no run files leaves its report.html alone."""
    (tmp_path / "report.html").write_text("<p>my own page</p>")
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert (tmp_path / "report.html").read_text() == "<p>my own page</p>"


def test_report_refuses_to_overwrite_foreign_page(tmp_path, capsys):
    """`bplab report` never overwrites a report.html that bplab did not write."""
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "report.html").write_text("<p>my own page</p>")
    assert main(["report", str(tmp_path)]) == 2
    assert "not written by bplab" in capsys.readouterr().err
    assert (tmp_path / "report.html").read_text() == "<p>my own page</p>"


def test_report_rewrites_its_own_page(tmp_path, capsys):
    """`bplab report` can be run twice on a run folder."""
    (tmp_path / "config.json").write_text('{"lr": 0.1}')
    assert main(["report", str(tmp_path)]) == 0
    assert main(["report", str(tmp_path)]) == 0
    assert "lr" in (tmp_path / "report.html").read_text()


def test_report_bad_metrics_one_line(tmp_path, capsys):
    """A corrupt metrics.jsonl gives one error line naming the file."""
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{broken\n')
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "metrics.jsonl is not valid JSON lines" in err[0]


def test_write_json_numpy_nan_is_null(tmp_path):
    """NumPy NaN and inf, alone or in arrays, are written as null so the file stays valid JSON."""
    import json

    import numpy as np

    from bplab.runs import write_json

    write_json(tmp_path / "s.json", {"a": np.float64("nan"), "b": np.array([1.0, np.inf])})
    text = (tmp_path / "s.json").read_text()
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == {
        "a": None, "b": [1.0, None]}


def test_out_of_memory_one_line(capsys, monkeypatch):
    """A MemoryError in a command gives one error line, not a traceback."""
    import bplab.experiments.moons as moons

    def too_large(*args, **kwargs):
        raise MemoryError("Unable to allocate 74.5 GiB")

    monkeypatch.setattr(moons, "build_mlp", too_large)
    assert main(["moons", "--hidden", "100000,100000", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("bplab: error: out of memory")


def test_overrides_reject_bool_for_numbers():
    """A TOML true or false for a number field is rejected instead of becoming 1 or 0."""
    with pytest.raises(BplabError, match="invalid value True for epochs: expected int"):
        apply_overrides(_Config(), {"epochs": True})
    with pytest.raises(BplabError, match="invalid value False for optim.lr: expected float"):
        apply_overrides(_Config(), {"optim.lr": False})


def test_missing_torch_one_line(monkeypatch, capsys):
    """A command whose optional package is missing prints one line saying how to install it."""
    import argparse

    def needs_torch(args):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args",
                        lambda self, argv=None: argparse.Namespace(
                            command="train", verbose=False, func=needs_torch))
    assert main(["train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "needs torch" in err[0]
    assert "pip install 'bplab[torch]'" in err[0]
