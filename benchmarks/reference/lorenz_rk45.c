/*
 * Hand-written C reference for the CPU benchmark (benchmarks/cpu.py):
 * an ensemble of Lorenz systems integrated with scipy's RK45.
 *
 *     x' = sigma (y - x),   y' = x (rho - z) - y,   z' = x y - beta z
 *
 * One trajectory per value of rho; sigma and beta are shared.
 *
 * The integrator is rk45.h, scipy.integrate.solve_ivp(method='RK45') step for
 * step (see there: same Dormand-Prince coefficients, initial step with its
 * extra evaluation of f, minimum step, clipping of the last step, RMS error
 * norm, step-size controller, FSAL and count of right-hand-side
 * evaluations), inlined here with n = 3 and the Lorenz system, so the
 * compiler sees the same straight-line code as for an integrator written out
 * for this system.  Only the defaults that the benchmark uses are supported:
 * first_step=None, max_step=inf, scalar atol.
 *
 * Statuses: 0 reached t1; -1 the step fell below scipy's minimum
 * 10*|nextafter(t, dir*inf) - t|; -2 RK45_MAX_STEPS (100,000) step attempts
 * (accepted and rejected) were made without reaching t1 (scipy has no such
 * limit).  A non-finite error estimate is a rejection, as in scipy.
 *
 * Build (see build.py): gcc -O3 -fopenmp -fPIC -shared, no fast-math.
 */
#include <stddef.h>

#include "rk45.h"

#define N 3 /* state dimension */

struct lorenz_params {
    double sigma, rho, beta;
};

/* Right-hand side of the Lorenz system (autonomous: t unused). */
static inline void lorenz(double t, const double *y, const void *ctx,
                          double *f)
{
    const struct lorenz_params *p = ctx;
    (void)t;
    f[0] = p->sigma * (y[1] - y[0]);
    f[1] = y[0] * (p->rho - y[2]) - y[1];
    f[2] = y[0] * y[1] - p->beta * y[2];
}

/*
 * Integrate k Lorenz systems, one per rho[i], from y0 = (1, 0, 0) at t0 to
 * t1 with scipy's RK45 at tolerances rtol (floored at 100*eps, as scipy does)
 * and atol.
 *
 * y_final: (3, k) row-major, component-major, trajectory fastest:
 *          y_final[c * k + i] is component c of trajectory i at its last
 *          accepted time (t1 when status[i] == 0).
 * status:  (k,) 0, -1 or -2 (see the top of this file).
 * nfev:    (k,) right-hand-side evaluations, counted as scipy counts them.
 *
 * Returns the number of trajectories whose status is not 0.
 */
int solve_ensemble(int k, const double *rho, double sigma, double beta,
                   double t0, double t1, double rtol, double atol,
                   double *y_final, int *status, long *nfev)
{
    int n_failed = 0;
    rtol = rk45_rtol(rtol); /* common.validate_tol */

#pragma omp parallel for schedule(dynamic, 64) reduction(+ : n_failed)
    for (int i = 0; i < k; ++i) {
        const struct lorenz_params p = {sigma, rho[i], beta};
        double y[N] = {1.0, 0.0, 0.0};
        status[i] = rk45_solve(N, lorenz, &p, y, t0, t1, rtol, atol, 0, NULL,
                               NULL, 0, &nfev[i]);
        for (int c = 0; c < N; ++c)
            y_final[(long)c * k + i] = y[c];
        n_failed += status[i] != 0;
    }
    return n_failed;
}
