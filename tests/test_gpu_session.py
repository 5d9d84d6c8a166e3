"""The GPU session is prepared without a GPU: it fits the device time, brings back what it
writes, and the benchmark pieces that need no GPU run here.

``benchmarks/gpu_session.sh`` (two device commands), ``benchmarks/scale.py`` (JSON written
as it goes) and ``benchmarks/ptxas_report.py`` (registers, in CI rather than on the device).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SESSION = os.path.join(ROOT, "benchmarks", "gpu_session.sh")
#: Device time of a session: 900 s, the machine's start (~3 min) and idle time included.
LIMITS = {"1": 360, "2": 180}
MAX_FILES = 6

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")


def _plan(phase, tmp_path):
    out = subprocess.run(["bash", SESSION, phase], capture_output=True, text=True, check=True,
                         env=dict(os.environ, DRY="1", OUT=str(tmp_path)))
    steps = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("step ")]
    # `timeout` runs a file, never a shell function: each step's command must be one
    assert all(kind == "file" for *_, kind in steps), steps
    return [(int(limit), name, int(files)) for limit, name, files, _ in steps]


@needs_bash
@pytest.mark.parametrize("phase", sorted(LIMITS))
def test_each_device_command_fits_its_time_and_file_limits(phase, tmp_path):
    steps = _plan(phase, tmp_path)
    assert steps
    assert sum(limit for limit, _, _ in steps) <= LIMITS[phase], steps
    assert sum(files for _, _, files in steps) <= MAX_FILES, steps
    assert len({name for _, name, _ in steps}) == len(steps)
    assert not list(tmp_path.iterdir()), "a dry run wrote files"


@needs_bash
def test_the_session_fits_fifteen_minutes_with_the_machine_start(tmp_path):
    total = sum(limit for phase in LIMITS for limit, _, _ in _plan(phase, tmp_path))
    assert total + 180 <= 900 - 120, f"{total} s of step limits leave under 2 min of margin"


def test_every_step_runs_under_timeout():
    with open(SESSION) as fh:
        text = fh.read()
    assert 'timeout -k 5 "$limit"' in text
    body = text[text.index("case $phase in"):]
    runs = [ln for ln in body.splitlines() if ln.strip().startswith(("$PY", "python", "pytest"))]
    assert not runs, f"commands outside `step`: {runs}"


def test_selected_gpu_tests_exist():
    """The session's ``-k`` selection of the cuda agreement tests still selects them."""
    import re

    with open(SESSION) as fh:
        select = re.search(r'test_gpu_agreement\.py \\\s*-k "([^"]+)"', fh.read()).group(1)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only",
                          "-p", "no:cacheprovider", "tests/gpu/test_gpu_agreement.py",
                          "-k", select],
                         capture_output=True, text=True, cwd=ROOT)
    assert "test_cuda_float64_agrees_with_numba_and_scipy[RK45-lorenz]" in out.stdout, \
        out.stdout[-2000:]
    assert "DOP853-lorenz" not in out.stdout
    assert "test_cuda_events_and_dense_output" in out.stdout


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}",
                                                  os.path.join(ROOT, "benchmarks", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scale_writes_its_json_after_every_row(tmp_path, monkeypatch):
    """Stopped after its first size (a time limit), scale.py has written that row."""
    scale = _load("scale")
    real = scale.measure
    calls = []

    def measure(k, args, configs):
        calls.append(k)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(k, args, configs)

    monkeypatch.setattr(scale, "measure", measure)
    path = tmp_path / "scale.json"
    with pytest.raises(KeyboardInterrupt):
        scale.main(["--backend", "numpy", "--sizes", "8,40", "--chunk", "16", "--rounds", "1",
                    "--t1", "0.2", "--n-eval", "5", "--json", str(path)])
    data = json.loads(path.read_text())
    assert data["partial"] is True and [r["k"] for r in data["rows"]] == [8]


@pytest.mark.skipif(shutil.which("ptxas") is None or
                    importlib.util.find_spec("numba_cuda") is None,
                    reason="needs ptxas and numba-cuda")
def test_ptxas_report_runs_in_ci(capsys):
    """The register report needs no GPU: it runs here, not in the device session."""
    from gpuivp.backends import cuda as cbm
    if cbm.simulated():
        pytest.skip("the CUDA simulator is active in this process")
    report = _load("ptxas_report")
    report.main(["--methods", "RK4", "--dtypes", "float32"])
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| RK4 ")]
    assert len(rows) == 1
    regs, stack = rows[0].split("|")[3:5]
    assert int(regs) <= 255 and int(stack) == 0, rows[0]


def test_gpu_benchmark_reads_versions_without_importing(monkeypatch):
    """Versions come from package metadata: jax, torch and the like are never imported."""
    from importlib import metadata

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import gpu

    before = set(sys.modules)
    monkeypatch.setattr(metadata, "version", lambda dist: f"{dist}-v")
    got = gpu.versions()
    assert got["jax"] == "jax-v" and got["torch"] == "torch-v" and got["numba-cuda"]
    assert not {"jax", "torch", "diffrax", "torchdiffeq"} & (set(sys.modules) - before)


def test_gpu_benchmark_launches_the_kernel_as_the_backend_does():
    """``gpu.py``'s kernel timing calls the ``cuda`` kernel itself (its parameters): run
    under the CUDA simulator, in a process of its own."""
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import gpu\n"
            "m, d, rho, kw = gpu.case_problem('RK4-f32', 4)\n"
            "p = gpu.capture_problem(m, d, rho, kw)\n"
            "best, launches, y, nfev, status = gpu.cuda_kernel_time(p, 1)\n"
            "assert list(status) == [0] * 4 and launches == 1, (status, launches)\n"
            "print('ok', int(nfev[0]))\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=600)
    assert out.returncode == 0 and "ok 4001" in out.stdout, out.stderr[-3000:]


def test_smoke_script_runs_under_the_simulator():
    """The device session's smoke script itself works: its ``cuda`` steps pass under the
    CUDA simulator (the linked-kernel and ``cupy`` steps need a GPU and CuPy)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "benchmarks/gpu_smoke.py", "--k", "8"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(("[ok]", "[FAIL]"))]
    needs_gpu = ("linked kernels", "cupy")
    failed = [ln for ln in lines if ln.startswith("[FAIL]") and not any(w in ln for w in needs_gpu)]
    assert len(lines) == 11 and not failed, out.stdout
    assert any("[ 0 -3  0]" in ln for ln in lines) and any("[ 0 -5  0]" in ln for ln in lines)
