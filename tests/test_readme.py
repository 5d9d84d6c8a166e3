"""The README's ```python blocks run, in order, in one namespace (as a reader would paste
them), with the ensemble sizes in ``SMALLER`` reduced so CI stays quick (the README says so)."""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

#: Sizes the CI run reduces: (text in the README, text run instead).
SMALLER = [("20_000", "2_000"), ("10**6", "10**4")]


def python_blocks(text):
    """The ```python blocks, dedented (some sit inside list items)."""
    return [textwrap.dedent(b) for b in re.findall(r"^ *```python\n(.*?)^ *```", text,
                                                  flags=re.S | re.M)]


def test_readme_has_python_blocks():
    assert len(python_blocks(README.read_text())) >= 3


def test_readme_python_blocks_run(tmp_path):
    code = "\n".join(python_blocks(README.read_text()))
    for big, small in SMALLER:
        assert big in code, f"{big!r} no longer in the README: update SMALLER"
        code = code.replace(big, small)
    script = tmp_path / "readme_blocks.py"
    script.write_text(code)
    # Run from -c, not as a file: Dask's spawned workers then do not re-run the script.
    proc = subprocess.run([sys.executable, "-c", f"exec(open({str(script)!r}).read())"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
