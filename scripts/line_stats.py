"""How dense each source file reads: a markdown row per file (the before / after of a readability pass).

    python scripts/line_stats.py                      # the seven top-level files
    python scripts/line_stats.py video_knet.py        # any files

Columns: lines; mean characters per non-blank line; lines over 100 characters; packed assignments (`a, b = x, y`:
a tuple assigned a tuple); the longest function or method and its length in lines (decorators not counted).
"""
import argparse
import ast
from pathlib import Path

FILES = ["bitdiffusion.py", "pix2seq_d.py", "video_knet.py", "data.py", "metrics.py", "train.py", "infer.py"]


def stats(path):
    """Python file path -> (lines, chars per non-blank line, lines > 100, packed assignments, (longest, name))."""
    source = Path(path).read_text()
    lines = source.splitlines()
    filled = [line for line in lines if line.strip()]
    longest, packed = (0, "-"), 0
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            longest = max(longest, (node.end_lineno - node.lineno + 1, node.name))
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple) and isinstance(node.value, ast.Tuple):
            packed += 1
    chars = sum(map(len, filled)) / max(1, len(filled))
    return len(lines), chars, sum(len(line) > 100 for line in lines), packed, longest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", help="Python files (default: the seven top-level files)")
    files = p.parse_args(argv).files or [str(Path(__file__).resolve().parents[1] / f) for f in FILES]
    print("| file | lines | chars/line | lines > 100 | packed `a, b = x, y` | longest function |")
    print("|---|---|---|---|---|---|")
    for f in files:
        try:
            n, chars, over, packed, (length, name) = stats(f)
        except (OSError, SyntaxError, UnicodeDecodeError) as e:
            p.error(f"{f}: not a readable Python file ({type(e).__name__})")
        print(f"| {Path(f).name} | {n} | {chars:.0f} | {over} | {packed} | {name} ({length}) |")


if __name__ == "__main__":
    main()
