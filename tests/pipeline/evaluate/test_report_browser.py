"""The evaluation report opened in a real browser (headless Chromium): its pictures show."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from modelport.pipeline.evaluate import evaluate


def test_the_report_renders_its_pictures(trained_mlp: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "scripts/test.sh installs Debian's chromium"
    evaluate(trained_mlp, out=tmp_path / "eval")
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,1100", f"--screenshot={shot}",
         (tmp_path / "eval" / "report.html").as_uri()],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    diagonal_blue = (b > 200) & (r < 120) & (g < 120)  # the confusion matrix's well-filled diagonal
    curve_red = (r > 180) & (g < 80) & (b < 80)  # the validation curves
    curve_blue = (b > 150) & (r < 60) & (g > 90) & (g < 150)  # the training curves (#1f77b4)
    assert diagonal_blue.sum() > 5000, "no confusion matrix drawn"
    assert curve_red.sum() > 100 and curve_blue.sum() > 100, "no learning curves drawn"
