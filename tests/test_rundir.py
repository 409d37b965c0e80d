"""vitbench run directories: what save_run_encoder writes loads back as the same encoder."""

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import vitbench
from vitbench.cli import app
from vitbench.contract import Supervision
from vitbench.errors import VitbenchError
from vitbench.zoo import rundir
from vitbench.zoo.rundir import save_run_encoder


def _trained(name: str = "test_vit", resolution: int = 32, seed: int = 31):
    """A zoo encoder at a run's resolution whose weights moved away from the random init."""
    encoder = vitbench.load(name, pretrained=False, resolution=resolution)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in encoder.modules()[0].parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return encoder


def test_saved_run_loads_as_the_trained_encoder(tmp_path):
    trained = _trained()
    run = tmp_path / "runs" / "dino-tiny"
    save_run_encoder(trained, "test_vit", run, resolution=32, objective="dino", step=7,
                     loss=1.5)
    record = json.loads((run / "run.json").read_text())
    assert {k: record[k] for k in ("model", "resolution", "objective", "step", "loss")} == {
        "model": "test_vit", "resolution": 32, "objective": "dino", "step": 7, "loss": 1.5}
    assert sorted(p.name for p in run.iterdir()) == ["encoder.safetensors", "run.json"]

    encoder = vitbench.load(run)  # default weights of a run directory: its own file
    spec = encoder.spec
    assert (spec.name, spec.backend, spec.input_size) == (str(run), "timm", 32)
    assert spec.supervision is Supervision.SELF and spec.weights.hf_hub_id is None
    assert spec.weights.local == str(run / "encoder.safetensors")
    assert encoder.loaded.kind == "file" and encoder.resolution == 32
    model = trained.modules()[0]
    assert spec.params_m == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6,
                                          abs=0.01)  # the 2x2 position grid, not 10x10
    x = torch.randn(2, 3, 32, 32)
    want = trained.encode_image(x)
    got = encoder.encode_image(x)
    torch.testing.assert_close(got.pooled, want.pooled)
    torch.testing.assert_close(got.tokens, want.tokens)
    torch.testing.assert_close(rundir.load(run).encode_image(x).pooled, want.pooled)


def test_run_at_another_resolution_resamples_like_timm(tmp_path):
    import timm

    trained = _trained(seed=32)
    save_run_encoder(trained, "test_vit", tmp_path, resolution=32, objective="mae", step=1)
    encoder = vitbench.load(str(tmp_path), resolution=48)
    want = timm.create_model("test_vit.r160_in1k", pretrained=True, img_size=48,
                             pretrained_cfg_overlay={"file": str(tmp_path / "encoder.safetensors")})
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        expected = want.eval().forward_head(want.forward_features(x), pre_logits=True)
    torch.testing.assert_close(encoder.encode_image(x).pooled, expected)


def test_run_of_a_reference_entry_and_of_a_run(tmp_path, monkeypatch):
    from dataclasses import replace

    from vitbench.zoo import registry

    base = registry.get_entry("ibot_s16")  # the same entry with a tiny ViT, registered
    tiny = registry.Entry(replace(base.spec, name="ibot_tiny_run"),
                          {**base.build_args, "kwargs": dict(embed_dim=32, depth=2, num_heads=2)})
    monkeypatch.setitem(registry._REGISTRY, "ibot_tiny_run", tiny)
    trained = _trained("ibot_tiny_run", resolution=32, seed=33)
    first, second = tmp_path / "a", tmp_path / "b"
    save_run_encoder(trained, "ibot_tiny_run", first, resolution=32, objective="iBOT", step=100)
    save_run_encoder(trained.modules()[0], first, second, resolution=32, objective="ibot",
                     step=200)  # continuing from a run: its base model is recorded
    assert json.loads((second / "run.json").read_text())["model"] == "ibot_tiny_run"
    x = torch.randn(1, 3, 32, 32)
    want = trained.encode_image(x).pooled
    for run in (first, second):
        encoder = vitbench.load(run)
        assert encoder.spec.backend == "reference" and encoder.spec.input_size == 32
        torch.testing.assert_close(encoder.encode_image(x).pooled, want)


def test_a_run_named_like_its_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = _trained(seed=36)
    save_run_encoder(trained, "test_vit", "test_vit", resolution=32, objective="dino", step=1)
    save_run_encoder(trained, "test_vit", "test_vit", resolution=32, objective="dino", step=2)
    assert json.loads((tmp_path / "test_vit" / "run.json").read_text())["model"] == "test_vit"
    assert vitbench.load("test_vit", pretrained=False).spec.name == "test_vit"  # zoo first
    run = vitbench.load("./test_vit")
    assert run.spec.name == "./test_vit" and run.loaded.kind == "file"
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(run.encode_image(x).pooled, trained.encode_image(x).pooled)


def test_cli_eval_and_info_read_a_run_directory(tmp_path):
    run = tmp_path / "run"
    save_run_encoder(_trained(seed=34), "test_vit", run, resolution=32, objective="clip",
                     step=3)
    result = CliRunner().invoke(app, ["eval", "--model", str(run), "--task", "digits_knn",
                                      "--out", str(tmp_path / "r.csv"),
                                      "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.stderr
    assert str(run) in result.stdout
    rows = (tmp_path / "r.csv").read_text()
    assert str(run) in rows and "file:encoder.safetensors" in rows
    info = CliRunner().invoke(app, ["info", str(run)])
    assert info.exit_code == 0 and "weakly" in info.stdout and "clip run of test_vit" in info.stdout


def test_supervision_follows_the_objective():
    assert rundir.supervision_of("MAE") is Supervision.SELF
    assert rundir.supervision_of("SigLIP") is Supervision.WEAKLY
    assert rundir.supervision_of("deit-3") is Supervision.FULLY
    assert rundir.supervision_of("my_new_loss") is Supervision.UNKNOWN


def _write(directory, run=None, text=None, weights=True):
    directory.mkdir(parents=True, exist_ok=True)
    if run is not None or text is not None:
        (directory / "run.json").write_text(text if text is not None else json.dumps(run))
    if weights:
        (directory / "encoder.safetensors").write_bytes(b"")
    return directory


def test_bad_run_directories_are_one_line_errors(tmp_path):
    good = {"model": "test_vit", "resolution": 32, "objective": "dino", "step": 1}
    cases = {
        "no run.json": _write(tmp_path / "empty", weights=False),
        "not valid JSON": _write(tmp_path / "json", text="{model: test_vit"),
        "expected a JSON object": _write(tmp_path / "list", text="[1, 2]"),
        "missing objective, step": _write(tmp_path / "keys", {"model": "test_vit",
                                                              "resolution": 32}),
        "resolution must be int, got '32'": _write(tmp_path / "type",
                                                   {**good, "resolution": "32"}),
        "unknown model 'test_vitt'": _write(tmp_path / "model", {**good, "model": "test_vitt"}),
        "no encoder.safetensors": _write(tmp_path / "weights", good, weights=False),
        "not a directory": _write(tmp_path / "nested", {**good, "model": str(tmp_path)}),
        "runs at 1024 px only": _write(tmp_path / "sam", {**good, "model": "sam_b"}),
    }
    for message, directory in cases.items():
        with pytest.raises(VitbenchError, match=message) as info:
            vitbench.load(directory)
        assert "\n" not in str(info.value), message
    result = CliRunner().invoke(app, ["eval", "--model", str(tmp_path / "empty"),
                                      "--task", "digits_knn"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "not a vitbench run directory" in result.stderr


def test_save_needs_the_run_facts_and_writes_weights_first(tmp_path, monkeypatch):
    trained = _trained(seed=35)
    with pytest.raises(VitbenchError, match="missing objective"):
        save_run_encoder(trained, "test_vit", tmp_path / "x", resolution=32, step=1)
    with pytest.raises(KeyError, match="unknown model"):
        save_run_encoder(trained, "test_vitt", tmp_path / "x", resolution=32, objective="d",
                         step=1)
    with pytest.raises(VitbenchError, match="Encoder or a torch.nn.Module"):
        save_run_encoder("weights", "test_vit", tmp_path / "x", resolution=32,
                         objective="d", step=1)
    # killed between the two files: the weights are there, run.json is not, so nothing loads
    # half-written, and a later save completes the directory
    def killed(path, value):
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        save_run_encoder(trained, "test_vit", tmp_path / "x", resolution=32, objective="d",
                         step=1)
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["encoder.safetensors"]
    monkeypatch.undo()
    save_run_encoder(trained, "test_vit", tmp_path / "x", resolution=32, objective="d", step=2)
    assert json.loads((tmp_path / "x" / "run.json").read_text())["step"] == 2
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["encoder.safetensors",
                                                                  "run.json"]


def test_tied_weights_are_saved_as_separate_tensors(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 4)
            self.b = torch.nn.Linear(4, 4)
            self.b.weight = self.a.weight  # shared storage, which safetensors refuses as is

    model = Tied()
    save_run_encoder(model, "test_vit", tmp_path, resolution=32, objective="dino", step=0)
    saved = load_file(tmp_path / "encoder.safetensors")
    assert torch.equal(saved["a.weight"], model.a.weight) and torch.equal(saved["b.weight"],
                                                                           model.a.weight)
