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
