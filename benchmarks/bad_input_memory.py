"""Peak memory of reading a decompression-bomb PNG: PIL on its own against torchrig's image reader.

Each side runs in a fresh subprocess that imports what it needs, records its peak RSS (VmHWM in
/proc/self/status: ``getrusage``'s ru_maxrss would do, but Linux carries it over from the parent
at fork, so a child of a torch process starts at the parent's peak), reads the file, and records
the peak again; the figure is the growth.
Files: a 12000 x 12000 greyscale PNG (1.6x PIL's bomb limit: PIL only warns, then decodes it)
and a 20000 x 20000 one (PIL itself refuses it at open). Both are ~150-400 KB on disk.

    python benchmarks/bad_input_memory.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "core"))
from test_bad_input import _png_bomb  # noqa: E402  (the corpus's own bomb writer)

SIDES = {
    "PIL alone (Image.open + load + convert RGB)": "from PIL import Image\n"
    "import warnings\nwarnings.simplefilter('ignore')\nImage.open(path).convert('RGB')",
    "torchrig's reader (vision/image_folder's loader)": "from torchrig_vision._datasets import load_image\n"
    "load_image(path, 3)",
}
PROBE = """import sys
path = sys.argv[1]
{imports}
def peak():
    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))
before = peak()
try:
    {call}
    outcome = 'decoded'
except Exception as exc:
    outcome = 'refused: ' + type(exc).__name__
print(before, peak(), outcome)
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for side in (12000, 20000):
            path = Path(tmp) / f"bomb-{side}.png"
            _png_bomb(path, side)
            print(f"{side} x {side} PNG ({path.stat().st_size / 1e3:.0f} KB on disk):")
            for name, code in SIDES.items():
                imports, call = code.rsplit("\n", 1)
                script = PROBE.format(imports=imports, call=call)
                out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                                     check=True).stdout.split(maxsplit=2)
                before, after = int(out[0]) / 1024, int(out[1]) / 1024
                print(f"  {name}: {out[2].strip()}; peak RSS +{after - before:.0f} MB "
                      f"({before:.0f} -> {after:.0f} MB)")


if __name__ == "__main__":
    main()
