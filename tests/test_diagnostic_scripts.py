"""scripts/decoding_ablation.py and scripts/instance_diagnostics.py: the rows and counts they print, on tiny checkpoints."""
from dataclasses import asdict

import pytest
import torch

import infer
from scripts import decoding_ablation
from tests.test_train import one_thread  # noqa: F401  autouse: one thread, as the other end-to-end tests


@pytest.mark.slow
def test_rows_now_before_and_set(tmp_path, capsys):
    torch.manual_seed(0)
    model, cfg = infer.build_model("video_knet", dict(infer.MODELS["video_knet"].PRESETS["tiny"]))
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": asdict(cfg), "step": 0,
                "args": {"model": "video_knet", "dataset": "synthetic", "seed": 0}}, ckpt)
    rows = decoding_ablation.main(["--ckpt", str(ckpt), "--split", "val", "--set", "score_thr=0.9,overlap_thr=0.9"])
    assert list(rows) == ["now", "before", "score_thr=0.9,overlap_thr=0.9"]
    assert rows["before"]["SQ"] <= rows["now"]["SQ"]  # void on rejected pixels never helps SQ
    assert rows["score_thr=0.9,overlap_thr=0.9"] != rows["now"]  # the change reached the merge
    out = capsys.readouterr().out
    assert sum(line.startswith("| ") for line in out.splitlines()) == 4 and "| now |" in out  # header + 3 rows
    with pytest.raises(SystemExit):  # an unknown field is an argparse error
        decoding_ablation.main(["--ckpt", str(ckpt), "--set", "no_such_field=1"])


def test_instance_diagnostics_counts_a_perfect_and_a_forgetful_predictor(tmp_path, monkeypatch, capsys):
    """scripts/instance_diagnostics.py with predictions replaced by the ground truth: every instance matched and
    every id kept; with the ids shifted by the frame index: still matched, never kept."""
    from scripts import instance_diagnostics

    torch.manual_seed(0)
    model, cfg = infer.build_model("video_knet", dict(infer.MODELS["video_knet"].PRESETS["tiny"]))
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": asdict(cfg), "step": 0,
                "args": {"model": "video_knet", "dataset": "synthetic", "seed": 0}}, ckpt)
    for shift in (0, 1):
        def ground_truth(model, name, seq, device, **kw):
            for t in range(len(seq)):
                sem, ins = seq.label(t)
                yield t, sem, ins + shift * t * (ins > 0)

        monkeypatch.setattr(infer, "predict_sequence", ground_truth)
        total = instance_diagnostics.main(["--ckpt", str(ckpt), "--videos", "2", "--show", str(1 - shift)])
        assert total["frames"] == 2 * 16 and total["gt"] > total["frames"]  # several objects per frame
        assert total["pred"] == total["matched"] == total["gt"] and total["pairs"] > 0
        assert total["kept"] == (total["pairs"] if shift == 0 else 0)
    shown = capsys.readouterr().out  # --show 1, then 0: one frame's instances, each with its best kernel
    assert shown.count("best kernel") == shown.count("frame 0 GT") > 0 and shown.count("frame 1 GT") == 0
