"""Bad input on the command line: one line on stderr naming the key, file or box, exit code 2, never a
traceback or a crash (issue 9): config values, CLI numbers, query boxes, errors in DataLoader workers,
output paths, results files that are no ``.npz``, kill leftovers and finished run folders."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from personsearch.cli import main
from personsearch.config import default_config, load_config
from personsearch.config_schema import SCHEMA, flatten
from personsearch.errors import ConfigError, DatasetWarning
from personsearch.evaluation import make_results, save_results
from personsearch.evaluation.results import ResultsError

from handmade import TINY_MODEL, write_cuhk

TESTS = Path(__file__).parent
CONFIGS = sorted((TESTS.parent / "configs").glob("*.yaml"))


def cli(argv: list, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Exit code and stderr of ``personsearch ARGV`` in this process (argparse errors exit via SystemExit)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def cli_subprocess(argv: list, timeout: float = 600) -> tuple[int, str]:
    """Exit code and stderr of ``python -m personsearch.cli ARGV`` (a crash shows as a negative code)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "personsearch.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stderr


def assert_one_line(code: int, err: str, *names, warnings_allowed: bool = False) -> None:
    """Exit code 2 and exactly one stderr line (besides one-line dataset warnings if allowed) naming ``names``."""
    lines = err.splitlines()
    if warnings_allowed:
        lines = [line for line in lines if ": warning: " not in line]
    assert code == 2, err
    assert len(lines) == 1 and err.endswith("\n"), err
    assert "Traceback" not in err, err
    for name in names:
        assert str(name) in lines[0], (name, err)


# ---- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-cli")


@pytest.fixture(scope="module")
def cuhk(work: Path) -> Path:
    return write_cuhk(work / "CUHK")


@pytest.fixture(scope="module")
def run(work: Path, cuhk: Path) -> Path:
    """A run folder trained for one iteration; kill leftovers planted in it beforehand."""
    run = work / "run"
    run.mkdir()
    for name in (".last.pth.abcd1234.tmp", ".config.yaml.k_9x0zqq.tmp", ".epoch_001.pth.zzzzzzzz.tmp"):
        (run / name).write_bytes(b"half-written")
    (run / "notes.tmp").write_text("not ours")
    argv = ["train", "--no-progress", f"dataset.root={cuhk}", f"output_dir={run}", "train.epochs=1"]
    argv += ["train.max_iters_per_epoch=1", "train.batch_size=2", "train.workers=0", "train.eval_period=-1"]
    assert main([*argv, "train.tensorboard=false", *TINY_MODEL]) == 0
    return run


@pytest.fixture(scope="module")
def results(work: Path, cuhk: Path) -> Path:
    """A valid results file for the hand-made CUHK-SYSU set: every gallery box detected, random features."""
    from personsearch.data import load_dataset

    data = load_dataset("cuhk-sysu", cuhk)
    rng = np.random.default_rng(0)
    det_image = np.concatenate([np.full(len(r.boxes), i) for i, r in enumerate(data.gallery)])
    boxes = np.concatenate([np.asarray(r.boxes, dtype=np.float32) for r in data.gallery])
    feats = rng.standard_normal((len(boxes), 8)).astype(np.float32)
    qfeats = rng.standard_normal((len(data.queries), 8)).astype(np.float32)
    arrays = make_results(
        [r.name for r in data.gallery],
        det_image,
        boxes,
        np.full(len(boxes), 0.9, np.float32),
        feats / np.linalg.norm(feats, axis=1, keepdims=True),
        [q.name for q in data.queries],
        qfeats / np.linalg.norm(qfeats, axis=1, keepdims=True),
    )
    return save_results(work / "results.npz", arrays)


# ---- 1. config values ------------------------------------------------------------------------------
BAD_CONFIG = [
    ("train.lr=abc", "train.lr: expected a positive number, got 'abc'"),
    ("train.batch_size=0", "train.batch_size: expected a positive integer, got 0"),
    ("train.epochs=1.5", "train.epochs: expected a positive integer, got 1.5"),
    ("train.device=gpu", "train.device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("train.amp=fp8", "train.amp: expected one of off, bf16, fp16"),
    ("train.optimizer=adam", "train.optimizer: expected one of sgd, adamw, got 'adam'"),
    ("train.lr_steps=[a]", "train.lr_steps: expected a list of integers >= 0"),
    ("train.clip_grad_norm=-1", "train.clip_grad_norm: expected a number >= 0 or null, got -1"),
    ("train.seed=-3", "train.seed: expected an integer in [0, 4294967295], got -3"),
    ("train.sync_bn=maybe", "train.sync_bn: expected true or false, got 'maybe'"),
    ("eval.det_thresh=.nan", "eval.det_thresh: expected a number in [0, 1], got nan"),
    ("eval.gallery_size=-5", "eval.gallery_size"),
    ("input.hflip_prob=2", "input.hflip_prob: expected a number in [0, 1], got 2"),
    ("dataset.name=market", "dataset.name: expected one of cuhk-sysu, prw, got 'market'"),
    ("distill.beta_p=-1", "distill.beta_p: expected a number >= 0, got -1"),
    ("distill.kl_direction=both", "distill.kl_direction"),
    ("teacher.p=0", "teacher.p: expected a positive integer, got 0"),
    ("teacher.input_size=[256]", "teacher.input_size: expected a list of 2 positive integers, got [256]"),
    ("teacher.lr=.inf", "teacher.lr: expected a positive number, got inf"),
    ("model.reid.embedding_dim=-4", "model.reid.embedding_dim: expected a positive integer, got -4"),
    ("model.transform.min_size=[100, 0]", "model.transform.min_size"),
    ("model.transform.pixel_std=[0.2, 0, 0.2]", "model.transform.pixel_std"),
    ("model.rpn.bg_iou_thresh=0.9", "model.rpn.bg_iou_thresh: must be <= model.rpn.fg_iou_thresh"),
    ("model.backbone.arch=vgg16", "model.backbone.arch: expected one of resnet18"),
    ("model.backbone.pretrained=3", "model.backbone.pretrained"),
    ("model.oim.momentum=1.5", "model.oim.momentum: expected a number in [0, 1], got 1.5"),
    ("name=", "name: expected a non-empty string"),
]


@pytest.mark.parametrize(("override", "message"), BAD_CONFIG, ids=[o for o, _ in BAD_CONFIG])
def test_bad_config_value_is_one_line_naming_the_key(override, message, tmp_path, capsys):
    code, err = cli(["train", f"output_dir={tmp_path / 'run'}", override], capsys)
    assert_one_line(code, err, f"personsearch train: error: {message}")
    assert not (tmp_path / "run").exists()


def test_bad_value_in_a_config_file_and_in_train_teacher(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: abc\n")
    assert_one_line(*cli(["train", "--config", path], capsys), "train.lr: expected a positive number, got 'abc'")
    assert_one_line(*cli(["train-teacher", "teacher.p=0"], capsys), "teacher.p: expected a positive integer")


def test_defaults_and_every_shipped_config_validate():
    assert CONFIGS
    load_config()
    for path in CONFIGS:
        load_config(path)
    cfg = load_config(None, ["train.lr=1e-3", "train.amp=off"])  # YAML reads 1e-3 as a string, off as false
    assert cfg["train"]["lr"] == 0.001 and cfg["train"]["amp"] == "off"


def test_schema_covers_every_default_key_and_its_choices_match_the_code():
    from personsearch.data import DATASETS
    from personsearch.distill.losses import KL_DIRECTIONS
    from personsearch.models.backbone import SUPPORTED_ARCHS
    from personsearch.models.heads import POOLINGS

    assert set(SCHEMA) == set(flatten(default_config()))
    assert SCHEMA["dataset.name"].choices == tuple(DATASETS)
    assert SCHEMA["distill.kl_direction"].choices == tuple(KL_DIRECTIONS)
    assert SCHEMA["model.backbone.arch"].choices == SCHEMA["teacher.arch"].choices == tuple(SUPPORTED_ARCHS)
    assert SCHEMA["model.reid.pooling"].choices == tuple(POOLINGS)
    with pytest.raises(ConfigError, match=r"^train\.workers: expected an integer >= 0, got -1$"):
        load_config(None, ["train.workers=-1"])


# ---- 2. CLI numbers --------------------------------------------------------------------------------
def _bad_numbers(tmp: Path) -> list[tuple[list, str]]:
    ds = ["--dataset", "cuhk-sysu", "--root", tmp / "CUHK"]
    infer = ["infer", "--checkpoint", tmp / "c.pth", *ds, "--out", tmp / "r.npz"]
    test = ["test", "--checkpoint", tmp / "c.pth", *ds]
    evaluate = ["evaluate", *ds, "--results", tmp / "r.npz"]
    search = ["search", *ds, "--results", tmp / "r.npz", "--out", tmp / "v.png"]
    demo = ["demo-report", *ds, "--results", tmp / "r.npz", "--out", tmp / "v.png"]
    return [
        ([*infer, "--batch-size", "0"], "argument --batch-size: expected a positive integer, got '0'"),
        ([*infer, "--workers", "-1"], "argument --workers: expected an integer >= 0, got '-1'"),
        ([*infer, "--device", "bogus"], "argument --device: expected auto, cpu, cuda or cuda:N, got 'bogus'"),
        ([*infer, "--device", "cuda:99"], "argument --device: 'cuda:99' asked for, but"),
        ([*test, "--batch-size", "x"], "argument --batch-size: expected a positive integer, got 'x'"),
        ([*test, "--det-thresh", "nan"], "argument --det-thresh: expected a number in [0, 1], got 'nan'"),
        ([*evaluate, "--det-thresh", "1.5"], "argument --det-thresh: expected a number in [0, 1]"),
        ([*evaluate, "--gallery-size", "0"], "argument --gallery-size: expected a positive integer, -1"),
        ([*search, "--top", "-5"], "argument --top: expected a positive integer, got '-5'"),
        ([*search, "--det-thresh", "inf"], "argument --det-thresh: expected a number in [0, 1], got 'inf'"),
        ([*search, "--query", "-2"], "argument --query: expected an integer >= 0, got '-2'"),
        ([*search, "--gallery-size", "-7"], "argument --gallery-size: expected -1 (the whole gallery)"),
        ([*search, "--box", "1,2,3"], "argument --box: expected four numbers x1,y1,x2,y2"),
        ([*search, "--device", "tpu"], "argument --device: expected auto, cpu, cuda or cuda:N"),
        ([*demo, "--seed", "-1"], "argument --seed: expected an integer seed in [0, 4294967295]"),
        ([*demo, "--query", "-3"], "argument --query: expected a query index >= 0 or -1"),
        (["synth", "--format", "prw", "--out", tmp / "s", "--seed", "abc"], "argument --seed: expected an integer"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_numbers(Path()))))
def test_bad_cli_number_is_one_line_usage_error(case, tmp_path, capsys):
    argv, message = _bad_numbers(tmp_path)[case]
    code, err = cli(argv, capsys)
    assert_one_line(code, err, f"personsearch {argv[0]}: error: {message}", f"see personsearch {argv[0]} --help")


def test_cuda_device_on_a_host_without_cuda(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a CUDA GPU")
    argv = ["infer", "--checkpoint", tmp_path / "c.pth", "--dataset", "prw", "--root", tmp_path, "--out", "r.npz"]
    code, err = cli([*argv, "--device", "cuda"], capsys)
    assert_one_line(code, err, "argument --device: 'cuda' asked for, but no CUDA GPU is available")


# ---- 3. query boxes ----------------------------------------------------------------------------------
BAD_BOXES = [
    ("nan,50,160,230", "every coordinate must be a finite number"),
    ("0,0,inf,inf", "every coordinate must be a finite number"),
    ("-inf,0,10,10", "every coordinate must be a finite number"),
    ("100,50,60,230", "need x2 > x1 and y2 > y1"),
    ("10,50,10,230", "need x2 > x1 and y2 > y1"),
    ("500,400,600,500", "the box lies outside the image"),
    ("-50,-50,-10,-10", "the box lies outside the image"),
]


@pytest.mark.parametrize(("box", "message"), BAD_BOXES, ids=[b for b, _ in BAD_BOXES])
def test_bad_query_box_is_one_line_and_never_a_crash(box, message, run, cuhk, results, tmp_path):
    image = cuhk / "Image" / "SSM" / "s10.jpg"  # 400 x 300
    argv = ["search", "--dataset", "cuhk-sysu", "--root", cuhk, "--results", results, "--out", tmp_path / "v.png"]
    code, err = cli_subprocess([*argv, "--checkpoint", run / "last.pth", "--image", image, f"--box={box}"])
    assert code == 2, f"exit code {code} (-11 is a segmentation fault): {err}"
    assert_one_line(code, err, f"--box {box} in {image} (400x300 pixels): {message}")
    assert not (tmp_path / "v.png").exists()


def test_model_refuses_non_finite_boxes_with_a_value_error():
    script = """
import torch
from personsearch.config import load_config
from personsearch.models.build import build_model
from handmade import TINY_MODEL
model = build_model(load_config(None, TINY_MODEL)["model"], num_classes=2).eval()
image = torch.rand(3, 120, 100)
features = model.features(model.transform([image])[0])
for box in ([float("nan"), 5, 50, 60], [0, 0, float("inf"), float("inf")]):
    for call in (lambda b: model.extract_query_features([image], [b]), lambda b: model.reid_embeddings(features, [b])):
        try:
            call(torch.tensor([[1.0, 2, 30, 40], box]))
        except ValueError as exc:
            print("ValueError:", exc)
print(model.extract_query_features([image], [torch.tensor([[1.0, 2, 30, 40]])])[0].shape)
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=TESTS, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"exit code {proc.returncode}: {proc.stderr}"
    lines = proc.stdout.splitlines()
    assert sum("ValueError:" in line and "NaN or infinite" in line for line in lines) == 4, proc.stdout
    assert lines[-1] == "torch.Size([1, 256])"


# ---- 4. one place: errors in DataLoader workers, warnings -------------------------------------------
def test_corrupt_jpeg_in_a_dataloader_worker_is_one_line(run, tmp_path):
    root = write_cuhk(tmp_path / "CUHK")
    victim = root / "Image" / "SSM" / "s11.jpg"
    data = victim.read_bytes()
    victim.write_bytes(data[: data.index(b"\xff\xda") + 20])  # the header parses, the pixels are cut short
    argv = ["infer", "--checkpoint", run / "last.pth", "--dataset", "cuhk-sysu", "--root", root]
    code, err = cli_subprocess([*argv, "--out", tmp_path / "r.npz", "--workers", "2", "--no-progress"])
    assert_one_line(code, err, "personsearch infer: error: ", "s11.jpg", warnings_allowed=True)
    assert "DataLoader worker" not in err and "Original Traceback" not in err
    assert not (tmp_path / "r.npz").exists()


def test_worker_error_unwrapping():
    from personsearch.cli import user_error_message
    from personsearch.errors import DatasetError

    traceback = (
        "Caught DatasetError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 3, in f\n    raise DatasetError(f"{path}: cannot decode image")\n'
        "personsearch.errors.DatasetError: /d/s1.jpg: cannot decode image (broken data stream)\n"
    )
    assert user_error_message(DatasetError(traceback)) == "/d/s1.jpg: cannot decode image (broken data stream)"
    assert user_error_message(RuntimeError(traceback)) == "/d/s1.jpg: cannot decode image (broken data stream)"
    assert user_error_message(RuntimeError(traceback.replace("personsearch.errors.", "foo."))) is None
    assert user_error_message(ValueError("a bug")) is None
    assert user_error_message(DatasetError("two\nlines")) == "two lines"


PREFIX = "personsearch dataset-stats: warning: "


def test_personsearch_warnings_are_one_line_each_and_showwarning_is_restored(cuhk, capsys, monkeypatch):
    import personsearch.data.stats as stats

    original = stats.dataset_statistics

    def noisy(data):
        warnings.warn(f"{cuhk}/annotation/Images.mat: 3 boxes dropped\n(NaN coordinates)", DatasetWarning, 2)
        warnings.warn("an ordinary warning", UserWarning, 2)
        return original(data)

    monkeypatch.setattr(stats, "dataset_statistics", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = warnings.showwarning
        code, err = cli(["dataset-stats", "--dataset", "cuhk-sysu", "--root", cuhk, "--json"], capsys)
        assert warnings.showwarning is before
    assert code == 0
    ours = [line for line in err.splitlines() if line.startswith(PREFIX)]
    assert f"{PREFIX}{cuhk}/annotation/Images.mat: 3 boxes dropped (NaN coordinates)" in ours


# ---- 5. output paths, results files ----------------------------------------------------------------
def _verb_argv(verb: str, tmp: Path, cuhk: Path) -> list:
    """``verb`` with every required option; the checkpoint / results do not exist, so anything that runs
    before the output check would fail with another message."""
    ds = ["--dataset", "cuhk-sysu", "--root", cuhk]
    return {
        "infer": ["infer", "--checkpoint", tmp / "none.pth", *ds, "--out", tmp / "ok.npz"],
        "test": ["test", "--checkpoint", tmp / "none.pth", *ds],
        "evaluate": ["evaluate", *ds, "--results", tmp / "none.npz"],
        "search": ["search", *ds, "--results", tmp / "none.npz", "--out", tmp / "ok.png"],
        "demo-report": ["demo-report", *ds, "--results", tmp / "none.npz", "--out", tmp / "ok.png"],
    }[verb]


OUTPUTS = [
    ("infer", "--out"),
    ("test", "--out"),
    ("test", "--json"),
    ("evaluate", "--json"),
    ("evaluate", "--per-query"),
    ("search", "--out"),
    ("search", "--json"),
    ("demo-report", "--out"),
    ("demo-report", "--json"),
]


@pytest.mark.parametrize(("verb", "option"), OUTPUTS)
@pytest.mark.parametrize("where", ["folder", "parent-is-a-file", "cannot-create", "read-only"])
def test_bad_output_path_fails_before_the_work(verb, option, where, cuhk, tmp_path, capsys):
    if where == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "ro").mkdir(mode=0o500)
    target = {
        "folder": tmp_path,
        "parent-is-a-file": tmp_path / "afile" / "out.x",
        "cannot-create": Path("/proc/personsearch-no-such-dir/out.x"),
        "read-only": tmp_path / "ro" / "out.x",
    }[where]
    code, err = cli([*_verb_argv(verb, tmp_path, cuhk), option, target], capsys)
    assert_one_line(code, err, f"personsearch {verb}: error: {option} {target}", warnings_allowed=True)
    assert "none.pth" not in err and "none.npz" not in err


def _full_disk(handle):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_when_writing_json_is_one_line(cuhk, results, tmp_path, capsys, monkeypatch):
    import personsearch.outputs

    out = tmp_path / "m.json"
    monkeypatch.setattr(personsearch.outputs, "_sync", _full_disk)
    argv = ["evaluate", "--dataset", "cuhk-sysu", "--root", cuhk, "--results", results, "--gallery-size", "50"]
    code, err = cli([*argv, "--json", out], capsys)
    assert_one_line(code, err, f"cannot write JSON file {out}", "No space left on device", warnings_allowed=True)
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_full_disk_when_writing_results_keeps_the_previous_file(results, tmp_path, monkeypatch):
    import personsearch.outputs
    from personsearch.evaluation import load_results

    target = tmp_path / "r.npz"
    previous = save_results(target, load_results(results)).read_bytes()
    monkeypatch.setattr(personsearch.outputs, "_sync", _full_disk)
    with pytest.raises(ResultsError, match=rf"cannot write results file {target} .*previous one is unchanged"):
        save_results(target, load_results(results))
    assert target.read_bytes() == previous and sorted(p.name for p in tmp_path.iterdir()) == ["r.npz"]


@pytest.mark.parametrize(
    ("content", "what"),
    [("npy", "a .npy array"), (b"", "empty"), (b"gallery_names,det_image\n", "not a zip archive")],
)
def test_results_file_that_is_no_npz_is_one_line(content, what, cuhk, tmp_path, capsys):
    fake = tmp_path / "renamed.npz"
    if content == "npy":
        with open(fake, "wb") as handle:
            np.save(handle, np.zeros((3, 4), np.float32))
    else:
        fake.write_bytes(content)
    code, err = cli(["evaluate", "--dataset", "cuhk-sysu", "--root", cuhk, "--results", fake], capsys)
    assert_one_line(code, err, f"{fake}: not a .npz results file ({what}", warnings_allowed=True)


# ---- 6. kill leftovers, finished run folders ------------------------------------------------------
def test_training_removes_kill_leftovers_in_its_run_folder(run):
    names = sorted(p.name for p in run.iterdir())
    assert not [n for n in names if n.startswith(".") and n.endswith(".tmp")], names
    assert "notes.tmp" in names and "last.pth" in names


def test_save_results_removes_its_own_leftovers(results, tmp_path):
    from personsearch.evaluation import load_results

    for name in (".r.npz.abcd1234.tmp", ".other.npz.abcd1234.tmp", ".r.npz.tmp"):
        (tmp_path / name).write_bytes(b"x")
    save_results(tmp_path / "r.npz", load_results(results))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.abcd1234.tmp", ".r.npz.tmp", "r.npz"]


def test_training_into_a_finished_run_folder_is_an_error(run, cuhk, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    code, err = cli(["train", f"dataset.root={cuhk}", f"output_dir={run}", *TINY_MODEL], capsys)
    assert_one_line(code, err, f"run folder {run} already holds a run", f"--resume {run}", "--overwrite")
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_overwrite_passes_the_check_and_deletes_nothing_before_the_run_starts(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "last.pth", "epoch_020.pth"):
        (run / name).write_text("old")
    argv = ["train", "--overwrite", f"dataset.root={tmp_path / 'missing'}", f"output_dir={run}", *TINY_MODEL]
    code, err = cli(argv, capsys)
    assert_one_line(code, err, "missing")  # the dataset error: the run-folder check passed
    assert "already holds" not in err
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "epoch_020.pth", "last.pth"]


def test_overwrite_and_resume_together_is_an_error(run, capsys):
    assert_one_line(*cli(["train", "--resume", run, "--overwrite"], capsys), "--resume", "--overwrite")


def test_train_teacher_into_a_finished_teacher_folder_is_an_error(tmp_path, capsys):
    run = tmp_path / "teacher"
    run.mkdir()
    (run / "config.yaml").write_text("old")
    (run / "teacher.pth").write_text("old")
    code, err = cli(["train-teacher", f"output_dir={run}"], capsys)
    assert_one_line(code, err, f"run folder {run} already holds a run", "--overwrite")
    assert "--resume" not in err


def test_run_folder_that_is_a_file_is_an_error(tmp_path, capsys):
    (tmp_path / "run").write_text("a file")
    code, err = cli(["train", f"output_dir={tmp_path / 'run'}", *TINY_MODEL], capsys)
    assert_one_line(code, err, f"run folder {tmp_path / 'run'}", "is not a folder")
