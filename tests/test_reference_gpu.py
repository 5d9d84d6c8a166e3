"""The GPU benchmark's hand-written CUDA C reference (``benchmarks/reference/lorenz_gpu.cu``).

Without a GPU: the source compiles for the device (nvcc for sm_80 and sm_90, NVRTC as
CuPy's ``RawModule`` does) with its state in registers and no float64 arithmetic in
the float32 kernels, and its host C++ build (the same source, g++ without FMA
contraction) runs gpuivp's algorithm: the same statuses and ``nfev`` as the ``numba``
backend, trajectory by trajectory, and the same final states (bit for bit on this
machine; asserted to 1e-12 in float64 and 1e-4 in float32). Also the SASS loop
counter and the goal logic of ``benchmarks/gpu.py``.
"""
import os
import shutil
import sys
import warnings

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))
from problems import lorenz  # noqa: E402
from reference import build, sass  # noqa: E402

from gpuivp import solve_ivp  # noqa: E402

NVCC = shutil.which(build.NVCC)
KERNELS = sorted(build.GPU_KERNELS.values())
METHODS = ("RK4", "RK45", "Tsit5")
DTYPES = ("float32", "float64")
TOL = {"float32": 1e-6, "float64": 1e-8}


@pytest.fixture(scope="module")
def host():
    if shutil.which(build.CXX) is None:
        pytest.skip(f"no C++ compiler ({build.CXX})")
    return build.load_gpu_host()


def _solve_both(host, method, dtype, rho, t_span, dt=1e-3, max_steps=build.MAX_STEPS):
    kw = dict(dt=dt) if method == "RK4" else dict(rtol=TOL[dtype], atol=TOL[dtype])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the float32 rtol floor
        res = solve_ivp(lorenz, t_span, np.c_[[1.0, 0.0, 0.0]].astype(dtype), method=method,
                        args=(10.0, rho, 8 / 3), backend="numba", dtype=dtype,
                        max_steps=max_steps, **kw)
    y, status, nfev = host.solve(method, rho, *t_span, dtype=dtype, max_steps=max_steps, **kw)
    return res, y, status, nfev


def _rel(y, ref):
    scale = np.maximum(np.max(np.abs(ref), axis=0), 1e-30)
    return np.max(np.abs(y - ref), axis=0) / scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
def test_host_build_takes_numba_backends_steps(host, method, dtype):
    rho = np.linspace(0.0, 21.0, 12)
    res, y, status, nfev = _solve_both(host, method, dtype, rho, (0.0, 1.0))
    np.testing.assert_array_equal(status, res.status)
    assert np.all(status == 0)
    same_nfev = np.mean(nfev == res.nfev)
    assert same_nfev == 1.0 if dtype == "float64" else same_nfev >= 0.9
    assert np.max(_rel(y, res.y_final)) <= (1e-12 if dtype == "float64" else 1e-4)
    if method == "RK4":
        assert np.all(nfev == 1 + 4 * build.n_fixed_steps(0.0, 1.0, 1e-3))


@pytest.mark.parametrize("t_span", [(0.0, -0.5), (2.0, 2.0), (0.0, 3.0)],
                         ids=["backward", "empty", "longer"])
@pytest.mark.parametrize("method", METHODS)
def test_host_build_matches_numba_on_failures_and_odd_spans(host, method, t_span):
    # inf: f(y0) is not finite (-3); 1e30 and 1e200 overflow later (-3, or -2 on max_steps).
    rho = np.array([0.0, 0.5, 10.0, 28.0, np.inf, 1e30, 1e200])
    res, y, status, nfev = _solve_both(host, method, "float64", rho, t_span, dt=1e-2,
                                       max_steps=2000)
    np.testing.assert_array_equal(status, res.status)
    np.testing.assert_array_equal(nfev, res.nfev)
    np.testing.assert_array_equal(y, res.y_final)  # NaN where both are NaN


def test_effective_rtol_is_gpuivps_floor():
    assert build.effective_rtol(1e-6, np.float32) == np.float32(100 * np.finfo(np.float32).eps)
    assert build.effective_rtol(1e-8, np.float64) == 1e-8
    assert build.n_fixed_steps(0.0, 1.0, 1e-3) == 1000


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_reference_compiles_with_nvcc_with_state_in_registers(arch, tmp_path):
    _, log = build.nvcc_compile(arch, "cubin", out=tmp_path / "k.cubin",
                                extra=("-Xptxas", "-v"))
    res = build.parse_ptxas_log(log)
    assert sorted(res) == KERNELS
    for name, r in res.items():
        assert r["stack"] == 0 and r["spill_stores"] == 0, (name, r)
        assert 0 < r["registers"] <= 128, (name, r)


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
def test_float32_reference_kernels_have_no_float64_arithmetic(tmp_path):
    from gpuivp.backends.cuda import f64_instructions

    path, _ = build.nvcc_compile("sm_90", "ptx", out=tmp_path / "k.ptx")
    ptx = path.read_text()
    bodies = ptx.split(".entry ")[1:]
    assert len(bodies) == len(KERNELS)
    for body in bodies:
        name = body.split("(", 1)[0].strip()
        f64 = f64_instructions(body)
        if name.endswith("_f32"):
            assert f64 == {}, (name, f64)
        else:
            assert f64, name


def test_reference_compiles_with_nvrtc_as_cupy_does():
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        pytest.skip("cuda-bindings (NVRTC) is not installed")
    try:
        err, prog = nvrtc.nvrtcCreateProgram(build.GPU_SOURCE.read_bytes(), b"lorenz_gpu.cu",
                                             0, [], [])
    except Exception as exc:  # the NVRTC library itself is missing
        pytest.skip(f"NVRTC is not loadable: {exc}")
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        pytest.skip(f"NVRTC is not usable: {err}")
    opts = [b"-std=c++17", b"-arch=compute_80"]
    (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, log.decode(errors="replace")
    _, size = nvrtc.nvrtcGetPTXSize(prog)
    ptx = b" " * size
    nvrtc.nvrtcGetPTX(prog, ptx)
    for name in KERNELS:
        assert f".entry {name}(".encode() in ptx


CUOBJDUMP_LISTING = """
        Function : k
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   FADD R2, R2, R3 ;
        /*0020*/                   FFMA R2, R2, R3, R4 ;
        /*0030*/                   FMUL R5, R2, 0.5 ;
        /*0040*/              @!P0 BRA 0x20 ;
        /*0050*/                   FSETP.GT.AND P1, PT, R2, R3, PT ;
        /*0060*/               @P1 BRA 0x10 ;
        /*0070*/                   EXIT ;
        /*0080*/                   BRA 0x80;
        /*0090*/                   NOP;
"""

NVDISASM_LISTING = """
        .section        .text.k,"ax",@progbits
.L_x_0:
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_1:
        /*0010*/                   FADD R2, R2, R3 ;
.L_x_2:
        /*0020*/                   FFMA R2, R2, R3, R4 ;
        /*0030*/                   FMUL R5, R2, 0.5 ;
        /*0040*/              @!P0 BRA `(.L_x_2) ;
        /*0050*/                   FSETP.GT.AND P1, PT, R2, R3, PT ;
        /*0060*/               @P1 BRA `(.L_x_1) ;
        /*0070*/                   EXIT ;
.L_x_3:
        /*0080*/                   BRA `(.L_x_3);
"""


@pytest.mark.parametrize("listing", [CUOBJDUMP_LISTING, NVDISASM_LISTING],
                         ids=["cuobjdump", "nvdisasm"])
def test_sass_step_loop_is_the_largest_innermost_loop(listing):
    funcs = sass.functions(listing)
    assert list(funcs) == ["k"]
    start, end, body = sass.step_loop(funcs["k"])
    # Loops: 0x20-0x40 (inner, 3 instructions), 0x10-0x60 (outer), 0x80-0x80 (the trap).
    assert (start, end) == (0x20, 0x40)
    assert sass.count(body) == (3, 2)
    assert sass.steps_per_iteration(body) == 1


def test_sass_counts_an_unrolled_step_loop_per_step():
    """Two steps per iteration (two step indices converted to float): counts halve."""
    body = ["I2F.S64 R3, R2", "FFMA R4, R3, R5, R6", "@P0 I2F.S64 R7, R2", "FFMA R8, R7, R5, R6",
            "IADD3 R2, P0, R2, 0x2, RZ", "@!P0 BRA 0x10"]
    assert sass.steps_per_iteration(body) == 2
    assert sass.count(body) == (6, 2)


@pytest.mark.skipif(NVCC is None or sass.find_tool("ptxas") is None
                    or not (sass.find_tool("cuobjdump") or sass.find_tool("nvdisasm")),
                    reason="needs nvcc, ptxas and cuobjdump or nvdisasm")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_rk4_step_loop_is_as_short_as_the_hand_written_kernels(arch):
    """The issue bound and the 1.2x goal rest on the step loop's length: gpuivp's RK4 float32
    loop (SASS, per step) has no more FP32 instructions than the CUDA C kernel's and at most 2
    more in all (since the occupancy work its unrolled loop has one FSEL fewer per two steps
    than the reference's: 51.5 FP32 and 59 in all per step on sm_90, against 52 and 60.5)."""
    import gpu

    loops = gpu.step_loops(arch)
    assert "cuda" in loops and "reference" in loops, loops
    cuda, ref = loops["cuda"], loops["reference"]
    assert cuda["fp32"] <= ref["fp32"], (cuda, ref)
    assert cuda["instructions"] <= ref["instructions"] + 2, (cuda, ref)


def test_issue_bound_formula():
    # 46 instructions x 1000 steps x 2^23 on 132 SMs x 128 lanes at 1.98 GHz: ~11.5 ms.
    t = sass.issue_bound_s(46, 1000, 2 ** 23, 132, 1.98e9)
    assert t == pytest.approx(46 * 1000 * 2 ** 23 / (132 * 128 * 1.98e9))
    assert 0.011 < t < 0.012


def test_gpu_benchmark_goals_judge_ratios_at_large_n():
    import gpu

    n = 2 ** 23
    recs = [gpu.Record("cuda", "RK4-f32", n, kernel_ms=40.0),
            gpu.Record("reference", "RK4-f32", n, kernel_ms=30.0),
            gpu.Record("diffrax", "RK4-f32", n, kernel_ms=1000.0),
            gpu.Record("cuda", "RK45-f64", 2 ** 12, kernel_ms=1.0),
            gpu.Record("reference", "RK45-f64", 2 ** 12, kernel_ms=10.0)]
    bound = {"bound_ms": {str(n): 30.0}}
    got = {g: s for g, s, _ in gpu.goals(recs, bound, smoke=False)}
    assert got["RK4-f32: cuda within 1.2x of the CUDA C reference"] == "NOT MET"  # 1.33x
    assert got["RK4-f32: cuda at least 20x faster than Diffrax vmap"] == "met"    # 25x
    assert got["RK45-f64: cuda within 1.2x of the CUDA C reference"] == "not evaluated"
    bound_goal = [s for g, s in got.items() if "issue bound" in g]
    assert bound_goal == ["met"]  # 30 / 40 = 75 %


def test_gpu_benchmark_merge_keeps_one_timed_record_per_row():
    """Split runs repeat the cuda baseline and may stop early: one row each, a timed one."""
    import gpu
    from dataclasses import asdict

    a = [gpu.Record("cuda", "RK4-f32", 8, kernel_ms=2.0), gpu.Record("reference", "RK4-f32", 8,
                                                                     note="skipped")]
    b = [gpu.Record("cuda", "RK4-f32", 8, kernel_ms=3.0),
         gpu.Record("reference", "RK4-f32", 8, kernel_ms=1.5),
         gpu.Record("diffrax", "RK4-f32", 8, kernel_ms=50.0)]
    merged = gpu.merge_records([[asdict(r) for r in a], [asdict(r) for r in b]])
    got = {(r["impl"], r["n"]): r["kernel_ms"] for r in merged}
    assert got == {("cuda", 8): 2.0, ("reference", 8): 1.5, ("diffrax", 8): 50.0}
