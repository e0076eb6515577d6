"""The library pieces behind the command modules, without running a model: the shared option blocks, the
typed options built from parsed arguments, the serve host policy, and the argument checks of the library
entry points (train config, two-step flags, index update)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from personsearch.argtypes import positive_float
from personsearch.cli import build_parser
from personsearch.commandline import options_from_args
from personsearch.errors import ConfigError, PersonSearchError


@dataclass(frozen=True)
class _Options:
    device: str = "auto"
    progress: bool = True


def test_options_from_args_takes_fields_by_name_and_is_strict() -> None:
    args = argparse.Namespace(device="cpu", no_progress=True, other=1)
    assert options_from_args(_Options, args, progress=not args.no_progress) == _Options("cpu", False)
    with pytest.raises(AttributeError):
        options_from_args(_Options, argparse.Namespace(device="cpu"))  # progress in neither
    with pytest.raises(TypeError, match="no field colour"):
        options_from_args(_Options, args, progress=True, colour="red")


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["index", "build", "x", "--checkpoint", "c.pth", "--out", "i"], "checkpoint", Path("c.pth")),
        (["query", "--index", "i", "--crop", "p.jpg", "--checkpoint", "dir"], "checkpoint", "dir"),
        (["serve", "--index", "i"], "device", "auto"),
        (["search", "--dataset", "prw", "--root", "r", "--out", "o.png"], "root", Path("r")),
        (["export", "--checkpoint", "c.pth", "--out", "o"], "checkpoint", Path("c.pth")),
        (["test", "--checkpoint", "c", "--dataset", "prw", "--root", "r"], "no_progress", False),
        (["train-teacher", "a=1", "b=2"], "overrides", ["a=1", "b=2"]),
    ],
)
def test_shared_options_parse_as_before(argv: list[str], dest: str, value: object) -> None:
    assert getattr(build_parser().parse_args(argv), dest) == value


def test_positive_float() -> None:
    assert positive_float("0.5") == 0.5
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive number"):
            positive_float(bad)


def test_serve_hosts() -> None:
    from personsearch.serve.hosts import LOCAL_NAMES, allowed_hosts, is_loopback, url_host

    assert is_loopback("127.0.0.2") and is_loopback("[::1]") and not is_loopback("0.0.0.0")
    assert allowed_hosts("127.0.0.1") == [*LOCAL_NAMES, "127.0.0.1"]
    assert allowed_hosts("0.0.0.0") is None
    assert url_host("::1") == "[::1]" and url_host("localhost") == "localhost"


def test_training_config_refuses_resume_with_a_config(tmp_path: Path) -> None:
    from personsearch.engine.runs import training_config

    with pytest.raises(ConfigError, match="do not combine it with --config"):
        training_config(None, ["train.lr=0.1"], resume=tmp_path)
    with pytest.raises(ConfigError, match="give one of them"):
        training_config(None, resume=tmp_path, overwrite=True)
    assert training_config(None, resume=tmp_path) == {}
    cfg = training_config(None, [], weights=tmp_path / "w.pth")
    assert cfg["model"]["backbone"]["pretrained"] == str(tmp_path / "w.pth")


def test_two_step_flags_go_together() -> None:
    import torch

    from personsearch.distill.two_step import two_step_embedder

    cpu = torch.device("cpu")
    assert two_step_embedder(False, None, cpu) is None
    for two_step, teacher in ((True, None), (False, Path("t.pth"))):
        with pytest.raises(PersonSearchError, match="--two-step and --teacher FILE go together"):
            two_step_embedder(two_step, teacher, cpu)


def test_update_job_of_a_missing_index(tmp_path: Path) -> None:
    from personsearch.footage.indexing import update_job

    with pytest.raises(PersonSearchError, match="does not exist"):
        update_job(tmp_path / "missing.index")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PersonSearchError, match="is not a gallery index"):
        update_job(tmp_path / "empty")
