"""Every command a user may type answers `--help` with its usage (exit 0), and never runs or crashes instead.

argparse %-formats each help string, so a bare '%' in one (e.g. "95%") turns `python train.py --help` into a
traceback; a script without a parser would take `--help` for a file name or run its whole job.
"""
import importlib
from pathlib import Path

import pytest

# module -> the function that parses its command line (argv list in, SystemExit on --help)
ENTRY_POINTS = {
    "train": "parse_args", "infer": "parse_args", "data": "main", "metrics": "parse_args",
    "scripts.ablation_cond": "main", "scripts.bench_metrics": "main", "scripts.benchmark": "parse_args",
    "scripts.check_fast_path": "parse_args", "scripts.condition_oracle": "main",
    "scripts.convert_knet_checkpoint": "main", "scripts.decoding_ablation": "main", "scripts.gpu_check": "parse_args",
    "scripts.instance_diagnostics": "main", "scripts.line_stats": "main", "scripts.seed_table": "main",
    "scripts.synthetic_baselines": "main",
}


def test_every_script_is_listed():
    """A new script in scripts/ must join ENTRY_POINTS (so its --help is checked too)."""
    scripts = {f"scripts.{p.stem}" for p in (Path(__file__).resolve().parents[1] / "scripts").glob("*.py")}
    assert scripts - {"scripts.__init__"} == {m for m in ENTRY_POINTS if m.startswith("scripts.")}


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_help_prints_usage(module, capsys):
    parse = getattr(importlib.import_module(module), ENTRY_POINTS[module])
    with pytest.raises(SystemExit) as exit_info:
        parse(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")
