"""scripts/seed_table.py: mean +- sample std over seeds from the last evaluation of each run's log.jsonl."""
import json

import pytest

from scripts import seed_table


def write_log(run_dir, step, stq, aq, model="video_knet"):
    run_dir.mkdir()
    run = {"model": model, "preset": "tiny", "dataset": "synthetic"} if model else {}  # older logs: none
    lines = [{"step": step // 2, "eval": {"STQ": 0.0, "AQ": 0.0, "SQ": 0.0, "VPQ": 0.0}}, {"step": step, "loss": 1.0},
             {"step": step, "eval": {"STQ": stq, "AQ": aq, "SQ": 0.5, "VPQ": 0.5}, **run}]
    (run_dir / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_mean_and_sample_std_of_the_last_evaluations(tmp_path, capsys):
    for i, (stq, aq) in enumerate([(0.5, 0.2), (0.7, 0.4), (0.6, 0.3)]):
        write_log(tmp_path / f"s{i}", 100, stq, aq, model=None if i == 2 else "video_knet")  # an older log too
    scores = seed_table.main([str(tmp_path / f"s{i}") for i in range(3)] + ["--name", "m"])
    assert scores["STQ"].tolist() == [0.5, 0.7, 0.6]  # the final evaluation, not the one at step 50
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| m | 0.600 +- 0.100 | 0.300 +- 0.100 | 0.500 +- 0.000 | 0.500 +- 0.000 | 3 | 0.500 0.700 0.600 " \
                  "| 0.200 0.400 0.300 |"


def test_unfinished_or_unequal_runs_are_errors(tmp_path):
    write_log(tmp_path / "a", 100, 0.5, 0.2)
    write_log(tmp_path / "b", 200, 0.5, 0.2)
    with pytest.raises(SystemExit, match="different steps"):
        seed_table.main([str(tmp_path / "a"), str(tmp_path / "b")])
    with pytest.raises(SystemExit, match="missing/log.jsonl: no such file"):
        seed_table.main([str(tmp_path / "a"), str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "log.jsonl").write_text(json.dumps({"step": 50, "loss": 1.0}) + "\n")
    with pytest.raises(SystemExit, match="no evaluation"):
        seed_table.main([str(tmp_path / "a"), str(tmp_path / "empty")])
    write_log(tmp_path / "c", 100, 0.5, 0.2, model="pix2seq_d")
    with pytest.raises(SystemExit, match="different model / preset / dataset"):
        seed_table.main([str(tmp_path / "a"), str(tmp_path / "c")])


def test_a_null_score_reads_as_nan(tmp_path, capsys):
    """train.py logs an undefined score (VPQ of videos shorter than its windows) as null."""
    for i in range(2):
        write_log(tmp_path / f"s{i}", 100, 0.5, 0.2)
        log = tmp_path / f"s{i}" / "log.jsonl"
        log.write_text(log.read_text().replace('"VPQ": 0.5', '"VPQ": null'))
    scores = seed_table.main([str(tmp_path / "s0"), str(tmp_path / "s1")])
    assert scores["STQ"].tolist() == [0.5, 0.5] and "| nan +- nan |" in capsys.readouterr().out
