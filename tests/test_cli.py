"""The command lines: every command answers `--help` with its usage (exit 0), and a user's mistake (a GPU that is
not there, a file where a folder goes, an error raised in a DataLoader worker) ends in one `error: ...` line.

argparse %-formats each help string, so a bare '%' in one (e.g. "95%") turns `python train.py --help` into a
traceback; a script without a parser would take `--help` for a file name or run its whole job.
"""
import importlib
from pathlib import Path

import pytest
import torch

import data
import infer

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


def test_device_mistakes_are_user_errors():
    with pytest.raises(infer.UserError, match="--device gpu: use cpu, cuda or cuda:N"):
        infer.check_device("gpu")
    assert infer.check_device("cpu") == torch.device("cpu")
    for name in ("mps", "xpu", "meta"):  # names torch knows but this code never runs on: was torch's traceback
        with pytest.raises(infer.UserError, match=f"--device {name}: use cpu, cuda or cuda:N"):
            infer.check_device(name)
    if torch.cuda.is_available():
        with pytest.raises(infer.UserError, match="CUDA device"):  # one past the last GPU
            infer.check_device(f"cuda:{torch.cuda.device_count()}")
    else:  # the CPU wheel: a clear line instead of torch's AssertionError (or NCCL's)
        with pytest.raises(infer.UserError, match="no CUDA device is available.*use --device cpu"):
            infer.check_device("cuda")


def test_a_file_where_a_folder_goes(tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"")
    with pytest.raises(infer.UserError, match="ckpt.pt: a file of that name exists; give a folder"):
        infer.check_out_dir(tmp_path / "ckpt.pt", "--out")
    infer.check_out_dir(tmp_path / "new", "--out")  # a folder to be made, or one that exists, is fine
    infer.check_out_dir(tmp_path, "--out")


def test_run_cli_prints_one_line_and_exits_2(capsys):
    """A DataError raised in a DataLoader worker reaches the main process wrapped in the worker's traceback: only
    its last line (the file and what is wrong) is printed. A bug (any other exception) keeps its traceback."""
    worker = ("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
              '  File "data.py", line 75, in _open_png\ndata.DataError: /d/000001.png: unreadable or truncated image\n')

    def fail(error):
        raise error

    for error, line in [(data.DataError(worker), "error: /d/000001.png: unreadable or truncated image\n"),
                        (infer.UserError("--ckpt x: file not found"), "error: --ckpt x: file not found\n")]:
        with pytest.raises(SystemExit) as exit_info:
            infer.run_cli(fail, error)
        assert exit_info.value.code == 2 and capsys.readouterr().err == line
    with pytest.raises(KeyError):
        infer.run_cli(fail, KeyError("a bug"))
    with pytest.raises(SystemExit) as exit_info:  # Ctrl-C: one line with the hint, exit 130, no traceback
        infer.run_cli(fail, KeyboardInterrupt(), on_interrupt="rerun with --resume")
    assert exit_info.value.code == 130 and capsys.readouterr().err == "\ninterrupted; rerun with --resume\n"


def test_dataset_mistakes_are_data_errors():
    with pytest.raises(data.DataError, match="synthetic split 'foo': train, val or test"):
        data.load_sequences("synthetic", split="foo")
    with pytest.raises(data.DataError, match="KITTI-STEP needs a root directory"):  # was a TypeError from Path(None)
        data.kitti_step_sequences(None, "val")
