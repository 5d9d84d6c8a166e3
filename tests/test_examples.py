"""Every script in examples/ runs at a tiny size and writes its picture."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: Per example, the flags that make it tiny (a second or two after numba's compile).
TINY = {
    "lorenz_bifurcation": ["--n", "40", "--t-end", "10"],
    "duffing_bifurcation": ["--n", "12", "--transient", "5", "--samples", "10"],
    "sir_parameter_map": ["--n", "100"],
    "vanderpol_period": ["--n", "20", "--mu-max", "2"],
    "robertson_half_life": ["--n", "16"],
    "bouncing_ball": ["--n", "16"],
    "lif_fi_curve": ["--n", "20", "--t-end", "10"],
    "pk_doses": ["--n", "16"],
}


def run_example(name, *flags, timeout=120):
    env = dict(os.environ, MPLBACKEND="Agg")
    # The examples import gpuivp: make the source tree importable without an install.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *flags],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_every_example_has_a_tiny_configuration():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_example_runs_and_writes_a_png(name, tmp_path):
    out = tmp_path / f"{name}.png"
    proc = run_example(name, *TINY[name], "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.is_file() and out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "backend" in proc.stdout  # each example says which backend ran, and how long


@pytest.mark.parametrize("name", ["lorenz_bifurcation", "duffing_bifurcation",
                                  "sir_parameter_map"])
def test_example_docstring_says_how_to_run_it(name):
    import ast

    doc = ast.get_docstring(ast.parse((EXAMPLES / f"{name}.py").read_text()))
    assert doc and f"python examples/{name}.py" in doc and "--backend" in doc
