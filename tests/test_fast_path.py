"""The fast-path checker (tests/check_fast_path.py) on CPU: bf16 autocast + torch.compile (eager backend: the graph
capture without inductor's C++ build) against eager fp32, on both models' tiny presets."""
import pytest

from tests import check_fast_path


def test_compiled_bf16_path_matches_eager_fp32_and_has_no_graph_breaks():
    args = check_fast_path.parse_args(["--device", "cpu", "--backend", "eager", "--steps", "5", "--frames", "2",
                                       "--batch_size", "2", "--out_rtol", "1e-6"])
    rows = {r["model"]: r for r in check_fast_path.main(args)}
    assert set(rows) == {"pix2seq_d", "video_knet"}
    for r in rows.values():
        assert r["graph breaks"] == 0  # one graph for training, two for streaming inference
        assert r["graphs"] == "1 + 2"
        assert r["pass"]["loss"] and r["loss rel diff"] <= 0.02
        # bf16 really ran: the outputs differ from fp32 (so --out_rtol 1e-6 fails), but by bf16 rounding, not more
        assert not r["pass"]["outputs"] and 1e-6 < r["output rel err"] < 0.15
        assert r["result"].startswith("FAIL: outputs")
        first, last = (float(x) for x in r["train compiled"].split(" -> "))
        assert last < first  # five steps already lower the loss
    assert rows["pix2seq_d"]["worst output"] == "logits"


def test_check_fast_path_rejects_bad_flags():
    with pytest.raises(SystemExit):
        check_fast_path.parse_args(["--device", "cpu", "--steps", "3"])
    with pytest.raises(SystemExit):
        check_fast_path.parse_args(["--device", "cpu", "--models", "knet"])
    with pytest.raises(SystemExit):
        check_fast_path.parse_args(["--device", "cpu", "--ckpt", "out/ckpt.pt", "--models", "video_knet"])
