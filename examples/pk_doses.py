"""One-compartment pharmacokinetics with a dose every 12 h, over clearance × volume.

    C' = -(CL / V) C;  at t = 0, 12, 24, ... h:  C -> C + D / V   (gpuivp.at)

``gpuivp.at`` gives the doses: at each time the integration restarts from the dosed state.
The trough after a week (just before the 15th dose, t = 168 h) is compared with the exact
value after 14 doses, ``(D/V) e^(-kτ) (1 - e^(-14kτ)) / (1 - e^(-kτ))`` with ``k = CL/V``, and
shown against the steady-state trough ``(D/V) e^(-kτ) / (1 - e^(-kτ))``.

Run::

    python examples/pk_doses.py                      # 10,000 patients (100 x 100) on the best backend
    python examples/pk_doses.py --n 400 --backend numpy --out pk.png
"""
import argparse
import time

import numpy as np

import gpuivp
from gpuivp import solve_ivp
from gpuivp._demo import pyplot

DOSE = 100.0   # mg
TAU = 12.0     # h between doses
WEEK = 168.0   # h


def elimination(t, y, cl, v):
    return (-(cl / v) * y[0],)


def dose(t, y, cl, v):
    return (y[0] + DOSE / v,)


def analytic_trough(cl, v, n_doses):
    r = np.exp(-(cl / v) * TAU)
    return DOSE / v * r * (1 - r ** n_doses) / (1 - r), DOSE / v * r / (1 - r)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of patients (a square grid)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--out", default="pk_doses.png")
    args = parser.parse_args(argv)

    side = max(2, int(round(np.sqrt(args.n))))
    cl, v = (a.ravel() for a in np.meshgrid(np.linspace(1.0, 10.0, side),
                                             np.linspace(20.0, 100.0, side)))
    times = np.arange(0.0, WEEK, TAU)   # 14 doses: 0, 12, ..., 156 h
    start = time.perf_counter()
    res = solve_ivp(elimination, (0.0, WEEK), np.zeros((1, cl.size)), args=(cl, v),
                    events=gpuivp.at(times, dose), backend=args.backend, vectorized=True,
                    rtol=1e-9, atol=1e-12)
    elapsed = time.perf_counter() - start
    trough = res.y_final[0]
    exact, steady = analytic_trough(cl, v, len(times))
    err = np.max(np.abs(trough / exact - 1))
    print(f"{cl.size} patients on backend {res.backend!r}: {elapsed:.2f} s; trough after a "
          f"week within {err:.1e} (relative) of the exact value; {res.message}")

    plt = pyplot()
    if plt is None:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    im = a1.imshow(trough.reshape(side, side), origin="lower", aspect="auto", cmap="magma",
                   extent=(cl.min(), cl.max(), v.min(), v.max()))
    fig.colorbar(im, ax=a1, label="trough after a week (mg/L)")
    a1.set_xlabel("clearance CL (L/h)")
    a1.set_ylabel("volume V (L)")
    a1.set_title(f"One-compartment PK ({cl.size} trajectories, {res.backend})")
    a2.loglog(steady, trough, ".", ms=2, label="gpuivp, after 14 doses")
    a2.loglog(steady, exact, "k,", label="exact after 14 doses")
    lim = [steady.min(), steady.max()]
    a2.loglog(lim, lim, "k:", lw=1, label="steady state")
    a2.set_xlabel("steady-state trough (mg/L)")
    a2.set_ylabel("trough at t = 168 h (mg/L)")
    a2.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
