"""The command line: help texts and the dataset-stats command."""

from __future__ import annotations

import json

import pytest

from personsearch.cli import build_parser, main

from handmade import write_cuhk


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("synth", "dataset-stats"):
        assert command in out


@pytest.mark.parametrize("command", ["synth", "dataset-stats"])
def test_command_help(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "--" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_dataset_stats_json(tmp_path, capsys):
    root = write_cuhk(tmp_path / "CUHK-SYSU")
    assert main(["dataset-stats", "--dataset", "cuhk-sysu", "--root", str(root), "--json"]) == 0
    out = capsys.readouterr().out
    stats = json.loads(out)
    assert stats["train"] == {"images": 3, "boxes": 6, "labeled_boxes": 4, "identities": 2}
    assert stats["query"] == {"count": 3, "images": 3}


def test_dataset_stats_table(tmp_path, capsys):
    root = write_cuhk(tmp_path / "CUHK-SYSU")
    assert main(["dataset-stats", "--dataset", "cuhk-sysu", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "gallery" in out and "boxes dropped (w <= 0 or h <= 0): 2" in out
