"""scripts/gpu_check.py on CPU (tiny presets), so the one GPU call cannot rot: its speed and smoke parts run here
for real (about 25 s); its fast-path part runs scripts/check_fast_path.py, which tests/test_fast_path.py runs on CPU
(1.5 minutes of graph tracing, not repeated here), so only that part's command line is checked."""
import pytest

from scripts import check_fast_path, gpu_check


@pytest.mark.slow
def test_speed_and_smoke_parts_run_on_cpu_and_print_their_tables(capsys):
    results = gpu_check.main(gpu_check.parse_args(["--device", "cpu", "--parts", "speed,smoke"]))
    out = capsys.readouterr().out
    assert results == {"speed": True, "smoke pix2seq_d": True, "smoke video_knet": True}, out
    assert "| model      | preset | mode" in out and "train ms/step" in out  # the benchmark table
    assert out.count("| pix2seq_d ") >= 2 and out.count("| video_knet ") >= 2  # speed and smoke rows
    assert "| recompiles |" in out and "gpu_check: 3 of 3 passed" in out
    # the fast-path part's CPU arguments are ones the checker accepts (its CUDA ones need a GPU to parse)
    assert check_fast_path.parse_args(gpu_check.PLANS["cpu"]["fast path"][0][0]).backend == "eager"


def test_failing_parts_are_reported_and_the_next_part_still_runs(capsys, monkeypatch):
    monkeypatch.setitem(gpu_check.PLANS["cpu"], "speed", [(["--device", "cpu", "--iters", "0"], 60)])
    monkeypatch.setitem(gpu_check.PLANS["cpu"], "fast path", [(["--device", "cpu", "--steps", "3"], 60)])
    results = gpu_check.main(gpu_check.parse_args(["--device", "cpu", "--parts", "speed,fast path"]))
    out = capsys.readouterr().out
    assert results == {"speed": False, "fast path": False}
    assert out.count("FAIL (exit status 2)") == 2 and "--iters and --batch_size must be >= 1" in out and "--steps must be" in out
    assert "gpu_check: 0 of 2 passed" in out
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--parts", "speed,mfu"])


def test_a_run_cut_short_keeps_the_rows_it_finished():
    cut = "warming up\ndone: pix2seq_d | paper | eager fp32 | 1029.0\n"  # benchmark.py's progress line, no table
    assert gpu_check.table_lines(cut) == "| pix2seq_d | paper | eager fp32 | 1029.0 |"
    whole = cut + "command: `python scripts/benchmark.py`\n| model | ms |\n| x | 1 |\n"
    assert gpu_check.table_lines(whole) == "command: `python scripts/benchmark.py`\n| model | ms |\n| x | 1 |"


def test_parts_without_a_minute_of_budget_left_are_skipped_and_named(capsys):
    results = gpu_check.main(gpu_check.parse_args(["--device", "cpu", "--parts", "fast path,smoke", "--budget", "30"]))
    out = capsys.readouterr().out
    assert results == {"fast path": False, "smoke pix2seq_d": False, "smoke video_knet": False}
    assert out.count("SKIPPED") == 3 and "--parts smoke" in out and "--parts 'fast path'" in out
    assert "gpu_check: 0 of 3 passed" in out
