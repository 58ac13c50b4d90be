"""`torchrig report RUN`: one self-contained HTML page, checked in headless Chromium (no console
errors, every image decoded); bad run dirs get a clear error and are left as they were."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

from torchrig._cli import main

# Put first in <head>: records errors (scripts, failed loads, console.error) and, once the page
# has loaded, writes every image's natural width into the DOM that --dump-dom prints.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => __errors.push(String(e.message || (e.target && e.target.src) || e)), true);
const __ce = console.error; console.error = (...a) => { __errors.push(a.join(" ")); __ce(...a); };
window.addEventListener("load", () => {
  const pre = document.createElement("pre"); pre.id = "__probe";
  pre.textContent = JSON.stringify({errors: __errors, widths: [...document.images].map(i => i.naturalWidth)});
  document.body.appendChild(pre);
});
</script>"""


def _chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it) to check report.html")
        pytest.skip("needs Debian's chromium package")
    return found


@pytest.fixture
def run(tiny_run):
    return tiny_run


@pytest.mark.slow
def test_report_is_one_self_contained_page_that_chromium_renders(run, tmp_path, capsys):
    (run / "report.html").unlink()  # train writes one; the command writes it again
    assert main(["report", str(run)]) == 0
    assert f"report: {run / 'report.html'}" in capsys.readouterr().out
    page = (run / "report.html").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert "<script" not in page and not re.search(r"""(src|href)=['"]?(https?:|//|file:)""", page)
    assert page.count("<img src='data:image/png;base64,") == 4  # curves, confusion, top losses, batch
    for text in ("Per class (test)", "Highest loss (test)", "Versions", "Recipe (resolved)", "digits-mlp",
                 f"{summary['test']['accuracy']:.4f}", summary["versions"]["torch"]):
        assert text in page, text

    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="__probe">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == []
    assert len(probe["widths"]) == 4 and all(w > 0 for w in probe["widths"])


def test_report_refuses_what_is_not_a_finished_run(rig_plugin, run, tmp_path, capsys, digests):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    assert main(["report", str(folder)]) == 2
    assert "is not a torchrig run dir" in capsys.readouterr().err
    assert digests(folder) == {"a.txt": hashlib.sha256(b"x").hexdigest()}

    # a run that stopped before its first epoch ended: recipe and meta, no epoch in metrics.csv
    early = tmp_path / "early"
    early.mkdir()
    for name in ("recipe.yaml", "meta.json"):
        shutil.copy(run / name, early / name)
    (early / "metrics.csv").write_text("epoch,train_loss\n")
    before = digests(early)
    assert main(["report", str(early)]) == 2
    assert "never finished an epoch" in capsys.readouterr().err
    assert digests(early) == before

    (run / "summary.json").write_text("{not json")
    before = digests(run)
    assert main(["report", str(run)]) == 2
    assert "summary.json' is not valid JSON" in capsys.readouterr().err
    assert digests(run) == before
