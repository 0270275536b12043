"""scripts/line_stats.py: the numbers behind a readability pass's before / after table."""
from scripts import line_stats


def test_line_stats_counts_a_known_file(tmp_path):
    """scripts/line_stats.py (the readability pass's before / after numbers) on a file written here."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    a, b = 1, 2\n\n    return a + b  # " + "x" * 100 + "\n")
    n, chars, over, packed, longest = line_stats.stats(f)
    assert (n, over, packed, longest) == (4, 1, 1, (4, "f"))
    assert chars == sum(map(len, ["def f():", "    a, b = 1, 2", "    return a + b  # " + "x" * 100])) / 3
