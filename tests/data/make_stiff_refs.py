"""Reference solutions of tests/test_stiff.py, computed once with scipy's Radau.

Run from the repository root: ``python tests/data/make_stiff_refs.py`` (writes
``tests/data/stiff_refs.npz``). The problems are defined in tests/test_stiff.py.
"""
import os
import sys

import numpy as np
from scipy.integrate import solve_ivp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from test_stiff import HIRES_K, HIRES_T, hires, hires_y0  # noqa: E402
from test_stiff import OREGO_T, OREGO_W, orego, orego_y0  # noqa: E402
from test_stiff import ROBER_K1, ROBER_K3, ROBER_T, VDPOL_EPS, VDPOL_T, rober, rober_y0, vdpol, vdpol_y0  # noqa: E402


def orego_ref():
    ys = []
    for w in OREGO_W:
        r = solve_ivp(orego, (0, OREGO_T), orego_y0(), method="Radau", rtol=1e-13, atol=1e-13,
                      args=(w,))
        assert r.success
        ys.append(r.y[:, -1])
    return np.array(ys).T


def main():
    out = {}
    rob = []
    for k1, k3 in zip(ROBER_K1, ROBER_K3):
        r = solve_ivp(rober, (0, ROBER_T), rober_y0(), method="Radau", rtol=1e-13, atol=1e-22,
                      args=(k1, 3e7, k3))
        assert r.success
        rob.append(r.y[:, -1])
    out["rober"] = np.array(rob).T
    vdp = []
    for eps in VDPOL_EPS:
        r = solve_ivp(vdpol, (0, VDPOL_T), vdpol_y0(), method="Radau", rtol=1e-13, atol=1e-13,
                      args=(eps,))
        assert r.success
        vdp.append(r.y[:, -1])
    out["vdpol"] = np.array(vdp).T
    hir = []
    for k in HIRES_K:
        r = solve_ivp(hires, (0, HIRES_T), hires_y0(), method="Radau", rtol=1e-13, atol=1e-15,
                      args=(k,))
        assert r.success
        hir.append(r.y[:, -1])
    out["hires"] = np.array(hir).T
    out["orego"] = orego_ref()
    np.savez(os.path.join(os.path.dirname(__file__), "stiff_refs.npz"), **out)
    print({k: v.tolist() for k, v in out.items()})


if __name__ == "__main__":
    main()
