"""README's "One model file in your own project": each Python block runs with only the model file(s) it names
copied into an empty folder (the files stand alone)."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_blocks():
    """-> the ```python blocks of the README section "One model file in your own project"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## One model file in your own project", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_has_one_block_per_model():
    blocks = readme_blocks()
    assert len(blocks) == 2 and "import video_knet" in blocks[0] and "import pix2seq_d" in blocks[1]


@pytest.mark.parametrize("index, files", [(0, ["video_knet.py"]), (1, ["pix2seq_d.py", "bitdiffusion.py"])])
def test_block_runs_with_only_the_copied_files(tmp_path, index, files):
    for name in files:
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "snippet.py").write_text(readme_blocks()[index])
    # -E -s: no PYTHONPATH, no user site; the script's own folder (tmp_path) is the only project path
    result = subprocess.run([sys.executable, "-E", "-s", "snippet.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("torch.Size([70, 100])") for line in lines), result.stdout
