"""The CLI end to end on embedded and on-disk data, and its one-line errors."""

import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import vitbench
from vitbench.cli import app


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.stdout, result.stderr
    return invoke


def test_eval_embedded_end_to_end(run, tmp_path):
    out = tmp_path / "r.csv"
    code, stdout, stderr = run("eval", "--model", "pixels,test_vit", "--task",
                               "digits_knn,digits_linear", "--weights", "random", "--out", out,
                               "--cache-dir", tmp_path / "cache")
    assert code == 0, stderr
    rows = pd.read_csv(out)
    assert set(rows.model) == {"pixels", "test_vit"}
    assert set(rows.metric) == {"top1_k10", "top1_k20", "top1_k100", "top1_k200", "top1", "top5"}
    assert (rows.resolution == 32).all() and (rows.source == "measured").all()
    # the linear task reuses the kNN task's features: no second encoding
    linear = rows[rows.task == "digits_linear"]
    assert linear.cache_hit.all()
    knn20 = rows[(rows.task == "digits_knn") & (rows.metric == "top1_k20")]
    assert (knn20.value > 50).all()  # percent; chance is 10
    assert "digits_knn/top1_k20" in stdout and "test_vit" in stdout
    code, board, _ = run("leaderboard", "--results", out, "--format", "md")
    assert code == 0 and "| pixels" in board


def test_eval_on_an_image_folder_with_bad_images(run, tmp_path):
    data = tmp_path / "data"
    for split in ("train", "test"):
        for cls, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
            (data / split / cls).mkdir(parents=True)
            for i in range(6):
                shade = tuple(min(255, c + 5 * i) for c in colour)
                Image.new("RGB", (24, 24), shade).save(data / split / cls / f"{i}.png")
    (data / "train" / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    args = ("eval", "--model", "pixels", "--task", "cifar10_knn", "--data-dir", data,
            "--resolution", "16", "--out", tmp_path / "r.csv", "--cache-dir", tmp_path / "c",
            "--set", "ks=1,3")
    code, _, stderr = run(*args)
    assert code == 1 and "broken.jpg" in stderr and "--skip-bad-images" in stderr
    assert len(stderr.strip().splitlines()) == 1
    code, _, stderr = run(*args, "--skip-bad-images")
    assert code == 0, stderr
    rows = pd.read_csv(tmp_path / "r.csv")
    assert (rows.n_bad_images == 1).all() and (rows.n_train == 12).all()
    assert list(rows.metric) == ["top1_k1", "top1_k3"] and (rows.value == 100).all()
    assert '"ks": [1, 3]' in rows.settings[0]  # the override is recorded in the row


@pytest.mark.parametrize("args, code, needle", [
    (("eval", "--model", "vit_s61", "--task", "digits_knn"), 2, "closest: vit_s16"),
    (("eval", "--model", "pixels", "--task", "digits_knnn"), 2, "closest: digits_knn"),
    (("eval", "--model", "pixels", "--task", "imagenet_linear"), 1, "--data-dir"),
    (("eval", "--model", "test_vit", "--task", "digits_knn"), 1, "hf.co/timm/test_vit"),
    (("eval", "--model", "test_vit", "--task", "digits_knn", "--weights", "./nope.pth"), 1,
     "does not exist"),
    (("eval", "--model", "pixels", "--task", "digits_knn", "--set", "k=3"), 1, "accepted: "),
    (("eval", "--model", "pixels", "--task", "digits_knn", "--dtype", "fp8"), 1, "accepted: "),
    (("info", "nope"), 2, "unknown model"),
])
def test_bad_input_is_one_line_and_nonzero(run, tmp_path, args, code, needle):
    got, _, stderr = run(*args, *(("--out", tmp_path / "r.csv") if args[0] == "eval" else ()))
    assert got == code
    assert needle in stderr and len(stderr.strip().splitlines()) == 1
    assert "Traceback" not in stderr


def test_list_tasks_info(run):
    code, out, _ = run("list", "--format", "csv")
    assert code == 0
    listed = out.strip().splitlines()
    assert listed[0].startswith("name,family,supervision")
    assert [line.split(",")[0] for line in listed[1:]] == vitbench.list_models()
    code, out, _ = run("list", "--supervision", "self", "--format", "csv")
    selfsup = {line.split(",")[0] for line in out.strip().splitlines()[1:]}
    assert {"dinov2_s14", "mae_b16", "eva02_l"} <= selfsup
    assert selfsup == set(vitbench.list_models(supervision="self"))
    code, out, _ = run("tasks")
    assert code == 0 and "imagenet_linear" in out and "shapes_knn" in out
    code, out, _ = run("info", "clip_b32")
    assert code == 0 and "ViT-B-32-quickgelu" in out and "huggingface-cli download" in out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "vitbench.cli", "tasks", "--format", "csv"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "digits_knn" in result.stdout
