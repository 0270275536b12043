"""scripts/bench_metrics.py: its two re-stated reference algorithms (deeplab2's STQ, VPSNet's VPQ) agree with
metrics.py on its synthetic sequence, or the script stops. Shortened to 11 frames (the id switch is at frame 10) and
timed once, so that it runs in a few seconds. Tried once: a re-stated AQ 1% off turns it red."""
from scripts import bench_metrics


def test_baselines_agree_with_metrics_and_table_prints(monkeypatch, capsys):
    monkeypatch.setattr(bench_metrics, "T", 11)
    monkeypatch.setattr(bench_metrics, "best_of", lambda fn, repeat=3: (1.0, fn()))
    bench_metrics.main([])
    out = capsys.readouterr().out
    assert "11 frames" in out and "(baselines agree to 1e-9)" in out
    assert out.count("\n| ") == 6  # header, rule and four rows
