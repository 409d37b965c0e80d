"""CapFilt (BLIP sec. 3.3): the filter keeps exactly the pairs its ITM head passes, and
`vitbench capfilt` writes them as a CSV the trainer reads. That bootstrapping helps is measured
by the slow test_blip_capfilt_bootstraps_a_noisy_web_set (test_learns_fusion.py)."""

from pathlib import Path

import pandas as pd
import torch
from learns_harness import save_web_pairs
from typer.testing import CliRunner

import vitbench
from vitbench.cli import app
from vitbench.data import get_dataset
from vitbench.data.embedded import digit_captions
from vitbench.pretrain.objectives import get_objective
from vitbench.pretrain.objectives.blip import capfilt, caption_vocabulary, generate, itm_scores


def test_capfilt_keeps_exactly_the_pairs_the_itm_head_passes():
    torch.manual_seed(0)
    cls = get_objective("blip")
    objective = cls(vitbench.load("vit_pico", pretrained=False, resolution=32), cls.Params())
    pixels = torch.randn(5, 3, 32, 32)
    web = [(0, digit_captions(0)[0]), (0, "a second caption"), (2, digit_captions(2)[1]),
           (3, "the number 7"), (4, digit_captions(9)[2])]
    words = caption_vocabulary([c for _, c in web], cls.Params().vocab_size)
    objective.eval()
    synthetic = generate(objective, pixels, words)
    web_p = itm_scores(objective, pixels[[row for row, _ in web]], [c for _, c in web])
    synthetic_p = itm_scores(objective, pixels, synthetic)
    # halfway between the 5th and 6th of the 10 scores: some pairs pass, some do not
    threshold = float(torch.cat([web_p, synthetic_p]).sort().values[4:6].mean())
    objective.train()

    found = capfilt(objective, pixels, web, words, threshold, batch_size=2)
    expected = [pair for pair, p in zip(web, web_p, strict=True) if p > threshold]
    expected += [(i, c) for i, (c, p) in enumerate(zip(synthetic, synthetic_p, strict=True))
                 if c and p > threshold]
    assert found.synthetic == synthetic and found.pairs == expected
    assert found.web_kept.tolist() == (web_p > threshold).tolist()
    assert 0 < len(found.pairs) < len(web) + len(synthetic) and objective.training


def test_cli_capfilt_writes_pairs_the_trainer_reads(tmp_path):
    labels = get_dataset("digits", "train").labels
    pairs = [(i, digit_captions(int(labels[i]))[0]) for i in range(12)]
    pairs.append((0, "another caption of the first image"))
    web = save_web_pairs(tmp_path, "digits", pairs, "web")
    runner = CliRunner()

    def pretrain(objective: str, data: Path) -> Path:
        result = runner.invoke(app, [
            "pretrain", "--objective", objective, "--model", "vit_pico", "--data", "csv",
            "--data-dir", str(data), "--steps", "1", "--batch-size", "8", "--resolution", "16",
            "--out", str(tmp_path / f"{objective}-{data.stem}")])
        assert result.exit_code == 0, result.output
        return tmp_path / f"{objective}-{data.stem}"

    blip = pretrain("blip", web)
    out = tmp_path / "bootstrapped.csv"
    result = runner.invoke(app, ["capfilt", str(blip), "--data-dir", str(web),
                                 "--out", str(out), "--threshold", "0"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    # threshold 0 keeps every web pair, then at most one synthetic caption per image
    assert [(Path(p).name, c) for p, c in rows.values[:len(pairs)]] == [
        (f"{i}.png", c) for i, c in sorted(pairs, key=lambda pair: pair[0])]
    assert len(pairs) <= len(rows) <= len(pairs) + 12
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in rows.image)
    assert f"kept {len(pairs)} of {len(pairs)} web pairs" in result.output
    assert len(get_dataset("csv", "train", out)) == 12
    pretrain("blip", out)  # the bootstrapped set is a training set

    out.write_text("kept\n")
    clip = pretrain("clip", web)
    for args, message in (([str(clip)], "needs a blip run"),
                          ([str(tmp_path / "nope")], "does not exist"),
                          ([str(blip), "--threshold", "0.9999"], "kept no pair"),
                          ([str(blip), "--threshold", "1.5"], "threshold must be in [0, 1)")):
        bad = runner.invoke(app, ["capfilt", *args, "--data-dir", str(web), "--out", str(out)])
        assert bad.exit_code == 1 and bad.output.count("\n") == 1 and message in bad.output
    assert out.read_text() == "kept\n"  # a failed run leaves what was there
