"""scripts/decoding_ablation.py on a small Video K-Net checkpoint: the rows it prints, and --set's config rows."""
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
