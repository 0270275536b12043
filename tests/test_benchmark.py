"""scripts/benchmark.py runs on CPU and fills its tables (a smoke test: the numbers themselves live in BENCHMARKS.md)."""
import pytest

from scripts import benchmark


def test_model_rows_on_cpu():
    args = benchmark.parse_args(["--device", "cpu", "--iters", "1", "--warmup", "1", "--batch_size", "1",
                                 "--crop", "64x96", "--infer_size", "64x96", "--infer_frames", "2"])
    rows = benchmark.main(args)
    assert [r[:3] for r in rows] == [["pix2seq_d", "tiny", "eager fp32"], ["video_knet", "tiny", "eager fp32"]]
    for r in rows:
        cells = dict(zip(benchmark.COLUMNS, r))
        assert float(cells["train ms/step"]) > 0 and float(cells["GFLOP/step"]) > 0 and cells["MFU"] == "-"
        assert float(cells["infer frames/s (5 steps / tracking)"]) > 0
    assert float(dict(zip(benchmark.COLUMNS, rows[0]))["infer frames/s (20 steps)"]) > 0


def test_data_rows():
    rows = benchmark.main(benchmark.parse_args(["--data", "--data_clips", "2"]))
    assert [r[:3] for r in rows] == [["pix2seq_d", "384x1248", "1.0,1.0"], ["video_knet", "384x1248", "0.5,2.0"]]
    assert all(float(x) > 0 for r in rows for x in r[4:])


def test_bad_flags():
    for argv in (["--modes", "fast"], ["--crop", "64"], ["--iters", "0"],
                 ["--modes", "compile_fp32", "--warmup", "0"]):
        with pytest.raises(SystemExit):
            benchmark.parse_args(["--device", "cpu"] + argv)


def test_ops_rows_split_the_step_at_the_network():
    rows = benchmark.main(benchmark.parse_args(["--ops", "--device", "cpu", "--crop", "64x96"]))
    cells = {r[0]: dict(zip(benchmark.OPS_COLUMNS, r)) for r in rows}
    assert set(cells) == {"pix2seq_d", "video_knet"}
    for c in cells.values():
        assert all(int(c[k]) > 0 for k in ("forward ops: network", "forward ops: outside", "backward ops"))
    # Pix2Seq-D's loss is a few batched ops; Video K-Net's per-frame targets, matching and losses are many more
    assert int(cells["pix2seq_d"]["forward ops: outside"]) < int(cells["video_knet"]["forward ops: outside"])
