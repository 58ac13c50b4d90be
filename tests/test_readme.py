"""README.md is a contract: every ```bash line and ```python block in it runs, and
examples/quickstart.py too, so the README cannot drift from the code.

The blocks run in README order, in one fresh temporary folder, as a newcomer's session after the
Quickstart: the repo's `recipes/` are linked in, and the files the README calls "yours" are made
here (`my_digit.png`, `photos/`, `clips/`, `clip.wav`, `other.flac`, `reviews.csv`), as is a
TORCH_HOME holding "pretrained" ResNet-18 weights (a random state_dict saved where torchvision
looks: nothing downloads). Training commands get `--set trainer.max_epochs=1` appended (2, with
one frozen, for fine-tuning recipes).

Skipped, with the reason shown in the README itself: a block whose first line starts with
`# not run by the README tests:`, and the Quickstart's two commands, which .ci/run runs verbatim.
Every ```yaml block parses.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
MARK = "# not run by the README tests:"
SHORT = "--set trainer.max_epochs=1"


@dataclass
class Block:
    line: int
    lang: str
    code: str
    skip: str | None
    section: str = ""

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def readme_blocks(path: Path = REPO / "README.md") -> list[Block]:
    blocks, section, fence, start, body = [], "", None, 0, []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if fence is None and line.startswith("#") and not line.startswith("#!"):
            section = line.lstrip("#").strip()
        if line.startswith("```") and fence is None:
            fence, start, body = line[3:].strip(), n, []
        elif line.startswith("```"):
            code = "\n".join(body) + "\n"
            skip = None
            if body and body[0].startswith(MARK):
                skip = body[0][len(MARK):].strip()
            elif section == "Quickstart":
                skip = ".ci/run runs the Quickstart's two commands verbatim"
            blocks.append(Block(start, fence or "text", code, skip, section))
            fence = None
        elif fence is not None:
            body.append(line)
    return blocks


BLOCKS = readme_blocks()
RUNNABLE = [b for b in BLOCKS if b.lang in ("bash", "python")]


def commands(code: str) -> list[str]:
    """A bash block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    found = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            found.append(line + (f" {_short(line)}" if re.search(r"torchrig (train|cv|lr-find) ", line) else ""))
    return found


def _short(command: str) -> str:
    """One epoch; a fine-tuning recipe gets two, the first with the backbone frozen."""
    recipe = next((REPO / w for w in command.split() if w.endswith(".yaml")), None)
    if recipe is not None and recipe.is_file() and "freeze_epochs" in recipe.read_text():
        return "--set trainer.max_epochs=2 --set trainer.finetune.freeze_epochs=1"
    return SHORT


def _user_files(root: Path) -> None:
    """The files the README calls the reader's own."""
    import numpy as np
    import soundfile as sf
    import torch
    import torchvision
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    Image.fromarray((digits.images[7] * 16).astype("uint8")).resize((32, 32)).save(root / "my_digit.png")
    rng = np.random.default_rng(0)
    for c, colour in enumerate(((200, 60, 40), (40, 90, 200))):
        (root / "photos" / f"class{c}").mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (40, 40, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / "photos" / f"class{c}" / f"{i}.jpg")
    rate = 16000
    for c, pitch in enumerate((220.0, 660.0)):
        (root / "clips" / ("no", "yes")[c]).mkdir(parents=True)
        for i in range(8):
            t = np.arange(int(0.5 * rate)) / rate
            wave = 0.4 * np.sin(2 * np.pi * pitch * (1 + 0.02 * i) * t) + 0.01 * rng.normal(size=t.size)
            sf.write(root / "clips" / ("no", "yes")[c] / f"{i}.wav", wave.astype(np.float32), rate)
    sf.write(root / "clip.wav", (0.4 * np.sin(2 * np.pi * 660 * np.arange(rate) / rate)).astype(np.float32), rate)
    sf.write(root / "other.flac", (0.4 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.float32), rate)
    good = ["a wonderful film", "great acting and a moving story", "loved every minute", "superb and funny"]
    bad = ["a dull film", "poor acting and a boring story", "hated every minute", "weak and tedious"]
    rows = ["review,stars"] + [f"{t} {i},{5 if j == 0 else 1}" for i in range(10)
                               for j, group in enumerate((good, bad)) for t in group]
    (root / "reviews.csv").write_text("\n".join(rows) + "\n")
    home = root / "torch-home" / "hub" / "checkpoints"
    home.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), home / "resnet18-f37072fd.pth")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("newcomer")
    (root / "recipes").symlink_to(REPO / "recipes")
    (root / "benchmarks").symlink_to(REPO / "benchmarks")
    _user_files(root)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCHRIG_OFFLINE": "1", "TORCH_HOME": str(root / "torch-home"),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.pop("TORCHRIG_TRACEBACK", None)  # a newcomer's session: what a user sees
    # the Quickstart's training, which every later example builds on
    first = subprocess.run(["torchrig", "train", "recipes/vision/digits.yaml", *SHORT.split(), "--quiet"], cwd=root,
                           env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    return root, env


def _run(argv: list[str], root: Path, env: dict[str, str], what: str) -> None:
    result = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_readme_block_runs(block, session):
    if block.skip:
        pytest.skip(f"{block}: {block.skip}")
    root, env = session
    if block.lang == "python":
        script = root / f"readme_{block.line}.py"
        script.write_text(block.code)
        _run([sys.executable, str(script)], root, env, str(block))
        return
    for command in commands(block.code):
        _run(["bash", "-c", f"set -eo pipefail; {command}"], root, env, f"{block}: {command}")


def test_examples_quickstart_runs(session):
    root, env = session
    _run([sys.executable, str(REPO / "examples" / "quickstart.py"), "--epochs", "2", "--out", "runs/example"], root,
         env, "examples/quickstart.py")


def test_every_yaml_block_parses_and_every_skip_says_why():
    for block in BLOCKS:
        if block.lang == "yaml":
            assert isinstance(yaml.safe_load(block.code), dict), block
    skipped = [b for b in RUNNABLE if b.skip]
    assert all(len(b.skip) > 20 for b in skipped), skipped
    assert len(RUNNABLE) - len(skipped) >= 10  # the README's examples are exercised, not skipped away


def test_the_plugin_guide_shows_the_template_verbatim():
    """README's "Write a plugin" and examples/plugin-template cannot disagree."""
    template = REPO / "examples" / "plugin-template"
    guide = {b.lang: b.code for b in BLOCKS if b.section == "Write a plugin" and b.lang in ("toml", "python", "yaml")}
    assert guide["toml"] == (template / "pyproject.toml").read_text()
    assert guide["python"] == (template / "src" / "torchrig_acme" / "__init__.py").read_text()
    assert guide["yaml"] == (template / "recipe.yaml").read_text()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Write a plugin\n"):readme.index("\n## ", readme.index("## Write a plugin\n"))]
    own = (template / "README.md").read_text(encoding="utf-8")
    assert own.startswith("# torchrig-acme")
    assert own.split("\n", 2)[2].strip() == section.split("\n", 2)[2].strip()  # all but the title
