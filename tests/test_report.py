"""The Snakemake HTML report of the tiny pipeline: every figure and table embedded with its
caption (parsed from the report's `<script id="results">` JSON), and the report rendered in
headless Chromium without JavaScript errors and not blank."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_snakemake
from matplotlib.image import imread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--enable-logging=stderr",
                  "--v=0", "--virtual-time-budget=10000", "--window-size=1400,1000"]
#: run_name of tests/data/tiny.yaml, shown by the workflow description.
RUN_NAME = "tiny"
#: Every report output (under results/report/) and its category (workflow/rules/report.smk).
EXPECTED = {
    "data/timeline.png": "Data", "data/classes.png": "Data",
    "training/curves.png": "Training",
    "gapfill/examples.png": "Gap filling", "gapfill/calibration.png": "Gap filling",
    "gapfill/metrics.png": "Gap filling",
    "classification/embeddings.png": "Classification",
    "classification/metrics.png": "Classification",
    "classification/label_efficiency.png": "Classification",
    "classification/confusion.png": "Classification",
    "maps/T31TCJ.png": "Maps", "maps/T31UDQ.png": "Maps",
    "cost/cost.html": "Cost",
}


def _script_json(page: str, script_id: str, var: str) -> object:
    m = re.search(rf'<script id="{script_id}">\s*var {var} = (.*?);\s*</script>', page, re.S)
    assert m, f"no <script id={script_id!r}> in the report"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def report(tiny_run: Path) -> tuple[Path, str]:
    out = tiny_run / "results" / "report.html"
    proc = run_snakemake(tiny_run, "--report", str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, out.read_text(encoding="utf-8")


def test_every_figure_and_table_is_embedded_with_a_caption(report: tuple[Path, str]) -> None:
    _, page = report
    results = _script_json(page, "results", "results")
    categories = _script_json(page, "categories", "categories")
    by_name = {k.split("results/report/", 1)[-1]: v for k, v in results.items()}
    missing = sorted(set(EXPECTED) - set(by_name))
    assert not missing, f"report lacks {missing}"
    for name, category in EXPECTED.items():
        res = by_name[name]
        assert len(res["caption"]) > 80, f"{name}: caption missing or empty"
        assert "{{" not in res["caption"], f"{name}: unrendered template"
        prefix, _, payload = res["data_uri"].partition(",")
        data = base64.b64decode(payload) if "base64" in prefix else payload.encode()
        assert len(data) > (1000 if name.endswith(".png") else 300), f"{name}: empty file"
        assert category in categories, f"category {category} absent"
    desc = _script_json(page, "workflow-desc", "workflow_desc")
    assert RUN_NAME in desc and "T31TCJ" in desc, "workflow description lacks run/tiles"


def _chromium() -> Path | None:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is absent but CI is set: install the Debian chromium package")
    pytest.skip(f"{CHROMIUM} absent (apt-get install chromium); set CI to make this fail")
    return None


def _render(url: str, png: Path, tmp_path: Path) -> tuple[str, str]:
    """Screenshot ``url`` to ``png``; returns (dumped DOM, Chromium's console log)."""
    chromium = str(_chromium())
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    shot = subprocess.run([chromium, *flags, f"--screenshot={png}", url],
                          capture_output=True, text=True, timeout=120)
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True,
                         text=True, timeout=120)
    assert png.exists(), shot.stderr[-3000:]
    return dom.stdout, shot.stderr + dom.stderr


def _assert_not_blank(png: Path) -> None:
    image = imread(png)[..., :3]
    assert image.shape[0] >= 500 and image.shape[1] >= 500
    assert float(np.std(image)) > 0.05, f"{png} is blank"


def test_report_renders_in_headless_chromium(report: tuple[Path, str], tmp_path: Path
                                            ) -> None:
    path, page = report
    png = tmp_path / "landing.png"
    dom, console = _render(path.resolve().as_uri(), png, tmp_path)
    errors = [line for line in console.splitlines()
              if "Uncaught" in line or ":ERROR:CONSOLE" in line]
    assert not errors, "JavaScript errors:\n" + "\n".join(errors)
    _assert_not_blank(png)
    text = re.sub(r"<[^>]+>", " ", dom)
    for word in ("Data", "Training", "Gap filling", "Classification", "Maps", "Cost", RUN_NAME):
        assert word in text, f"rendered report lacks {word!r}"
    # one embedded figure, decoded from the report and rendered on its own
    results = _script_json(page, "results", "results")
    uri = next(v["data_uri"] for k, v in results.items() if k.endswith("gapfill/examples.png"))
    figure = tmp_path / "examples.png"
    figure.write_bytes(base64.b64decode(uri.partition(",")[2]))
    _assert_not_blank(figure)
    shot = tmp_path / "figure_shot.png"
    _render(figure.as_uri(), shot, tmp_path)
    _assert_not_blank(shot)
