"""Checkpoints never run code: crafted payloads in every container, fed to every verb that takes a checkpoint,
are refused with one line (exit 2) and never execute; what training saves loads with ``weights_only=True``,
old checkpoints (numpy RNG state inside) still load, and checkpoints that do not fit give one-line errors."""

from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from personsearch.cli import main
from personsearch.config import load_config
from personsearch.engine.checkpoint import load_checkpoint, save_checkpoint
from personsearch.errors import PersonSearchError

from handmade import TINY_MODEL, tiny_overrides

SMALL_EMBEDDING = "model.reid.embedding_dim=32"
SMALL = [*TINY_MODEL, SMALL_EMBEDDING]


class Payload:
    """Unpickling this creates ``marker``: proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def write_payload(path: Path, container: str, marker: Path) -> Path:
    obj = {"model": Payload(marker), "config": {"model": {}}, "num_classes": 2, "teacher": {}}
    if container == "zip":
        torch.save(obj, path)
    elif container == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    elif container == "zip+numpy":  # also holds what old checkpoints hold, so the numpy allowlist is tried too
        torch.save({"rng": {0: {"numpy": np.random.get_state()}}, **obj}, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(obj, handle)
    return path


CONTAINERS = ["zip", "legacy", "pickle", "zip+numpy"]


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return tiny_overrides(root, out, "train.device=cpu", SMALL_EMBEDDING, *extra)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic dataset (no loader warning, so stderr holds only the error), a real one-step training
    run (its last.pth) and a teacher."""
    from personsearch.data import load_dataset
    from personsearch.data.synthetic import generate_dataset
    from personsearch.distill.teacher import TeacherNet, TeacherSpec, teacher_checkpoint_state
    from personsearch.engine.trainer import Trainer

    base = tmp_path_factory.mktemp("ckpt_safety")
    root = base / "data"
    generate_dataset("cuhk-sysu", root, "tiny", 0)
    class_map = load_dataset("cuhk-sysu", root).train_class_map()
    cfg = load_config(None, train_args(root, base / "run", "train.epochs=1", "train.max_iters_per_epoch=1"))
    Trainer(cfg, progress=False).train()
    torch.manual_seed(0)
    teacher = TeacherNet(TeacherSpec("resnet18", len(class_map), 32, input_size=(64, 32)))
    teacher_path = save_checkpoint(teacher_checkpoint_state(teacher, class_map, {"metrics": None}), base / "t.pth")
    last = base / "run" / "last.pth"
    return {"base": base, "root": root, "last": last, "teacher": teacher_path, "classes": len(class_map)}


def verb_args(verb: str, env: dict[str, Path], bad: Path, tmp: Path) -> list[str]:
    root = str(env["root"])
    data = ["--dataset", "cuhk-sysu", "--root", root, "--device", "cpu"]
    infer = [*data, "--workers", "0", "--no-progress"]
    return {
        "infer": ["infer", "--checkpoint", str(bad), *infer, "--out", str(tmp / "r.npz")],
        "test": ["test", "--checkpoint", str(bad), *infer],
        "search": ["search", "--checkpoint", str(bad), *data, "--out", str(tmp / "v.png")],
        "train --resume": ["train", "--no-progress", "--resume", str(bad)],
        "train distill.teacher":
            ["train", "--no-progress", *train_args(env["root"], tmp / "run", f"distill.teacher={bad}")],
        "test --two-step --teacher":
            ["test", "--checkpoint", str(env["last"]), *infer, "--two-step", "--teacher", str(bad)],
    }[verb]  # fmt: skip


VERBS = ["infer", "test", "search", "train --resume", "train distill.teacher", "test --two-step --teacher"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("container", CONTAINERS)
def test_payloads_are_live(container: str, tmp_path: Path) -> None:
    """The control: loaded the old way (weights_only=False, or pickle), each crafted file does run its code."""
    marker = tmp_path / "MARKER"
    path = write_payload(tmp_path / "evil.pth", container, marker)
    if container == "pickle":
        with open(path, "rb") as handle:
            pickle.load(handle)
    else:
        torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("verb", VERBS)
def test_no_verb_runs_a_checkpoint_payload(verb: str, container: str, env, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "MARKER"
    bad = write_payload(tmp_path / "evil.pth", container, marker)
    code, err = run_cli(verb_args(verb, env, bad, tmp_path), capsys)
    assert not marker.exists(), "the checkpoint's code ran"
    assert code == 2
    assert len(err) == 1 and str(bad) in err[0], err
    assert "refused to load" in err[0] and "Python objects" in err[0], err[0]


def test_payload_refused_by_a_real_process(env, tmp_path: Path) -> None:
    """The same through the installed command line in its own process: exactly one line on stderr."""
    marker = tmp_path / "MARKER"
    bad = write_payload(tmp_path / "evil.pth", "legacy", marker)
    argv = verb_args("infer", env, bad, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "personsearch.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert not marker.exists()
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and str(bad) in proc.stderr, proc.stderr
    assert "builtins.getattr" in proc.stderr


# ---- what we save loads safely; old checkpoints still load ------------------------------------------------
def test_training_checkpoint_loads_with_weights_only(env) -> None:
    state = torch.load(env["last"], map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "scheduler", "train_state", "rng", "config", "class_map"} <= set(state)
    numpy_state = state["rng"][0]["numpy"]
    assert numpy_state[0] == "MT19937" and torch.is_tensor(numpy_state[1]) and numpy_state[1].numel() == 624
    assert isinstance(state["rng"][0]["python"], tuple)
    assert torch.load(env["teacher"], map_location="cpu", weights_only=True)["teacher"]["arch"] == "resnet18"


def test_rng_state_round_trips_through_a_safe_checkpoint(tmp_path: Path) -> None:
    import random

    from personsearch.engine.rng import rng_state, set_rng_state

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # a cached Gaussian is part of the state
    save_checkpoint({"model": {}, "rng": rng_state()}, tmp_path / "r.pth")
    expected = (random.random(), np.random.random_sample(3).tolist(), torch.rand(2).tolist())
    set_rng_state(torch.load(tmp_path / "r.pth", weights_only=True)["rng"])
    assert (random.random(), np.random.random_sample(3).tolist(), torch.rand(2).tolist()) == expected


def _old_style(env, path: Path, legacy: bool = False) -> tuple[Path, np.ndarray]:
    """``last.pth`` as this project wrote it before RNG states were tensors: numpy's state as an array."""
    state = torch.load(env["last"], map_location="cpu", weights_only=True)
    np.random.seed(123)
    old = np.random.get_state()
    state["rng"][0]["numpy"] = old
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path, old[1]


@pytest.mark.parametrize("variant", ["zip", "legacy", "numpy1"])
def test_old_checkpoints_still_load_and_resume(variant: str, env, tmp_path: Path) -> None:
    from personsearch.engine.trainer import Trainer

    run = tmp_path / "run"
    run.mkdir()
    path, keys = _old_style(env, run / "last.pth", legacy=variant != "zip")
    if variant == "numpy1":  # numpy 1.x wrote the same array under its old module name
        data = path.read_bytes()
        assert b"cnumpy._core.multiarray\n" in data
        path.write_bytes(data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)  # the plain safe load refuses it...
    assert np.array_equal(load_checkpoint(path)["rng"][0]["numpy"][1], keys)  # ...the narrow allowlist does not
    trainer = Trainer({}, resume=run, progress=False)
    assert np.array_equal(np.random.get_state()[1], keys)
    assert trainer.state.global_step == 1


def test_numpy_beyond_the_rng_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.pth"
    torch.save({"model": {}, "x": np.zeros(3)}, path)
    with pytest.raises(PersonSearchError, match=r"refused to load: .*Float64DType"):
        load_checkpoint(path)


def test_damaged_files_are_not_readable_checkpoints(tmp_path: Path, env) -> None:
    for name, data in {"empty": b"", "garbage": b"not a checkpoint", "half": env["last"].read_bytes()[:5000]}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(PersonSearchError, match="not a readable checkpoint") as info:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(info.value)
    with open(tmp_path / "plain", "wb") as handle:
        pickle.dump({"model": {}}, handle)
    with pytest.raises(PersonSearchError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "plain")


# ---- checkpoints that do not fit ---------------------------------------------------------------------------
def _student(env, path: Path, *overrides: str, extra_classes: int = 0, **changes) -> Path:
    """A student checkpoint whose weights are built with ``overrides`` but which carries the small config."""
    from personsearch.models.build import build_model

    cfg = load_config(None, train_args(env["root"], env["base"] / "x"))
    model = build_model(load_config(None, [*SMALL, *overrides])["model"], num_classes=env["classes"] + extra_classes)
    state = {"model": model.state_dict(), "config": cfg, "num_classes": env["classes"], **changes}
    return save_checkpoint(state, path)


def _infer(path: Path, env, tmp_path: Path, capsys) -> str:
    code, err = run_cli(verb_args("infer", env, path, tmp_path), capsys)
    assert code == 2 and len(err) == 1 and str(path) in err[0], err
    return err[0]


def test_student_of_another_architecture_embedding_or_class_count(env, tmp_path: Path, capsys) -> None:
    n = env["classes"]
    cases = {
        "arch": (["model.backbone.arch=resnet34"], 0, "backbone resnet34, {} has backbone resnet18"),
        "dim": (["model.reid.embedding_dim=64"], 0, "embedding size 64, {} has embedding size 32"),
        "classes": ([], 3, f"{n + 3} identities, {{}} has {n} identities"),
        "queue": (["model.oim.queue_size=8"], 0, "OIM queue size 8, {} has OIM queue size 16"),
    }
    for name, (overrides, extra, expected) in cases.items():
        path = _student(env, tmp_path / f"{name}.pth", *overrides, extra_classes=extra)
        err = _infer(path, env, tmp_path, capsys)
        assert f"checkpoint {path} was trained with {expected.format('the config saved in it')}" in err, err


def test_student_lacking_weights_or_keys(env, tmp_path: Path, capsys) -> None:
    path = _student(env, tmp_path / "s.pth")
    state = torch.load(path, weights_only=True)
    del state["model"]["reid_head.bn.weight"]
    save_checkpoint(state, path)
    assert "does not fit the model the config saved in it describes: it lacks reid_head.bn.weight" in _infer(
        path, env, tmp_path, capsys
    )
    state["model"]["reid_head.bn.weight"] = torch.ones(32)
    state["model"]["extra.weight"] = torch.ones(1)
    save_checkpoint(state, path)
    assert "it holds extra.weight, which the model has no place for" in _infer(path, env, tmp_path, capsys)
    save_checkpoint({"model": state["model"]}, path)
    assert "lacks 'config', 'num_classes'" in _infer(path, env, tmp_path, capsys)
    save_checkpoint({"model": state["model"], "config": {"train": {}}, "num_classes": 2}, path)
    assert "its saved config has no model section" in _infer(path, env, tmp_path, capsys)


def test_load_state_dict_errors_become_one_line(monkeypatch) -> None:
    """The fallback behind the checks: torch's own size-mismatch error, as one line naming the file."""
    from personsearch.engine import loading
    from personsearch.models.build import build_model

    monkeypatch.setattr(loading, "_first_misfit", lambda expected, weights: None)
    model = build_model(load_config(None, SMALL)["model"], num_classes=2)
    weights = build_model(load_config(None, [*SMALL, "model.reid.embedding_dim=64"])["model"], num_classes=2)
    with pytest.raises(PersonSearchError, match=r"dim\.pth does not fit .*size mismatch for reid_head") as info:
        loading.load_weights(model, weights.state_dict(), "runs/x/dim.pth", fields=())
    assert "\n" not in str(info.value)


def test_teacher_and_student_are_not_interchangeable(env, tmp_path: Path, capsys) -> None:
    teacher, student = str(env["teacher"]), str(env["last"])
    is_teacher = f"checkpoint {teacher} is a Re-ID teacher (train-teacher), not a person search model"
    is_student = f"checkpoint {student} is a person search model (train), not a Re-ID teacher (train-teacher)"
    for verb, bad, expected in [
        ("infer", env["teacher"], is_teacher),
        ("search", env["teacher"], is_teacher),
        ("train --resume", env["teacher"], is_teacher),
        ("train distill.teacher", env["last"], is_student),
        ("test --two-step --teacher", env["last"], is_student),
    ]:
        code, err = run_cli(verb_args(verb, env, bad, tmp_path / verb.replace(" ", "_")), capsys)
        assert (code, err) == (2, [f"personsearch {verb.split()[0]}: error: {expected}"])


def test_teacher_weights_that_do_not_fit_their_spec(env, tmp_path: Path) -> None:
    from personsearch.distill.teacher import load_teacher

    state = torch.load(env["teacher"], weights_only=True)
    state["teacher"]["embedding_dim"] = 64
    save_checkpoint(state, tmp_path / "t.pth")
    spec = "the teacher spec saved in it"
    with pytest.raises(PersonSearchError, match=f"embedding size 32, {spec} has embedding size 64"):
        load_teacher(tmp_path / "t.pth")
    state["teacher"]["embedding_dim"], state["teacher"]["arch"] = 32, "resnet34"
    save_checkpoint(state, tmp_path / "t.pth")
    with pytest.raises(PersonSearchError, match=f"backbone resnet18, {spec} has backbone resnet34"):
        load_teacher(tmp_path / "t.pth")
    state["teacher"]["arch"], state["teacher"]["colour"] = "resnet18", "red"
    save_checkpoint(state, tmp_path / "t.pth")
    with pytest.raises(PersonSearchError, match="its teacher spec does not build a teacher"):
        load_teacher(tmp_path / "t.pth")


def test_resume_refuses_a_checkpoint_that_does_not_fit_the_run(env, tmp_path: Path, capsys) -> None:
    state = torch.load(env["last"], map_location="cpu", weights_only=True)
    run = tmp_path / "run"
    run.mkdir()

    def resume(**changes) -> str:
        save_checkpoint({**state, **changes}, run / "last.pth")
        code, err = run_cli(["train", "--no-progress", "--resume", str(run / "last.pth")], capsys)
        assert code == 2 and len(err) == 1 and str(run / "last.pth") in err[0], err
        return err[0]

    assert "was trained with 5 identities, the training split of dataset.root=" in resume(num_classes=5)
    assert "another identity set" in resume(class_map={pid + 1000: i for pid, i in state["class_map"].items()})
    stripped = {k: v for k, v in state.items() if k != "optimizer"}
    save_checkpoint(stripped, run / "last.pth")
    code, err = run_cli(["train", "--no-progress", "--resume", str(run / "last.pth")], capsys)
    assert code == 2 and err[0].endswith("holds no optimizer: infer/test can use it, train --resume cannot"), err
    wrong = {**state["optimizer"], "param_groups": [{**state["optimizer"]["param_groups"][0], "params": [0]}]}
    assert "its training state does not fit this run" in resume(optimizer=wrong)
