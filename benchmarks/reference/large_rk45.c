/*
 * Hand-written C reference for the large-systems benchmark
 * (benchmarks/large.py): ensembles of Lorenz-96 (n = 40) and Kuramoto
 * (N = 50) systems integrated with scipy's RK45 (rk45.h), one parameter per
 * trajectory, final state and optionally scipy's t_eval output.
 *
 *   Lorenz-96:  y_i' = (y_{i+1} - y_{i-2}) y_{i-1} - y_i + F   (cyclic i)
 *   Kuramoto:   th_i' = w_i + (Kc / N) sum_j sin(th_j - th_i)
 *
 * The right-hand sides do the operations of the benchmark's Python
 * functions (benchmarks/reference/large_problem.py) in the same order, save
 * the Kuramoto sum, which is taken left to right (NumPy's sum is pairwise):
 * the O(N^2) double loop with one sin per pair, as the Python function does.
 *
 * Build (see build.py): gcc -O3 -fopenmp -fPIC -shared, no fast-math.
 */
#include <math.h>

#include "rk45.h"

#define L96_N 40
#define KURAMOTO_N 50

struct l96 {
    double F;
};

static inline void l96_rhs(double t, const double *y, const void *ctx,
                           double *f)
{
    const double F = ((const struct l96 *)ctx)->F;
    (void)t;
    /* the cyclic ends, then the interior without index arithmetic */
    f[0] = (y[1] - y[L96_N - 2]) * y[L96_N - 1] - y[0] + F;
    f[1] = (y[2] - y[L96_N - 1]) * y[0] - y[1] + F;
    for (int i = 2; i < L96_N - 1; ++i)
        f[i] = (y[i + 1] - y[i - 2]) * y[i - 1] - y[i] + F;
    f[L96_N - 1] = (y[0] - y[L96_N - 3]) * y[L96_N - 2] - y[L96_N - 1] + F;
}

struct kuramoto {
    double coupling; /* Kc / N */
    const double *omega;
};

static inline void kuramoto_rhs(double t, const double *th, const void *ctx,
                                double *f)
{
    const struct kuramoto *p = ctx;
    (void)t;
    for (int i = 0; i < KURAMOTO_N; ++i) {
        double s = 0.0;
        for (int j = 0; j < KURAMOTO_N; ++j)
            s += sin(th[j] - th[i]);
        f[i] = p->omega[i] + p->coupling * s;
    }
}

/*
 * Common argument list of the two entry points:
 *
 * The macro's last argument declares ctx, the right-hand side's parameters.
 *
 * k:        trajectories; param[i] is trajectory i's parameter (F or Kc).
 * y0:       (n,) initial state, shared.
 * t0, t1, rtol, atol: as scipy's solve_ivp (rtol floored at 100 eps).
 * n_eval, t_eval: scipy's t_eval (n_eval = 0: final state only).
 * y_final:  (n, k), component-major: y_final[c * k + i].
 * y_eval:   (n, k, n_eval): y_eval[(c * k + i) * n_eval + e], NaN after a
 *           failure (unused when n_eval = 0).
 * status:   (k,) 0, -1 or -2 (rk45.h); nfev: (k,) as scipy counts.
 *
 * Returns the number of trajectories whose status is not 0.
 */
#define SOLVE_ENSEMBLE(N, RHS, ...)                                            \
    int n_failed = 0;                                                          \
    rtol = rk45_rtol(rtol);                                                    \
    _Pragma("omp parallel for schedule(dynamic, 8) reduction(+ : n_failed)")   \
    for (int i = 0; i < k; ++i) {                                              \
        __VA_ARGS__;                                                           \
        double y[N];                                                           \
        for (int c = 0; c < N; ++c)                                            \
            y[c] = y0[c];                                                      \
        double *out = y_eval + (long)i * n_eval;                               \
        for (int c = 0; c < N; ++c)                                            \
            for (int e = 0; e < n_eval; ++e)                                   \
                out[(long)c * k * n_eval + e] = NAN;                           \
        status[i] = rk45_solve(N, RHS, &ctx, y, t0, t1, rtol, atol, n_eval,    \
                               t_eval, out, (long)k * n_eval, &nfev[i]);       \
        for (int c = 0; c < N; ++c)                                            \
            y_final[(long)c * k + i] = y[c];                                   \
        n_failed += status[i] != 0;                                            \
    }                                                                          \
    return n_failed;

int solve_l96(int k, const double *param, const double *shared,
              const double *y0, double t0, double t1, double rtol,
              double atol, int n_eval, const double *t_eval, double *y_final,
              double *y_eval, int *status, long *nfev)
{
    (void)shared;
    SOLVE_ENSEMBLE(L96_N, l96_rhs, struct l96 ctx = {param[i]})
}

/* shared: (N,) the natural frequencies omega. */
int solve_kuramoto(int k, const double *param, const double *shared,
                   const double *y0, double t0, double t1, double rtol,
                   double atol, int n_eval, const double *t_eval,
                   double *y_final, double *y_eval, int *status, long *nfev)
{
    SOLVE_ENSEMBLE(KURAMOTO_N, kuramoto_rhs,
                   struct kuramoto ctx = {param[i] / KURAMOTO_N, shared})
}
