/*
 * Hand-written C reference for the CPU benchmark (benchmarks/cpu.py):
 * an ensemble of Lorenz systems integrated with scipy's RK45.
 *
 *     x' = sigma (y - x),   y' = x (rho - z) - y,   z' = x y - beta z
 *
 * One trajectory per value of rho; sigma and beta are shared.
 *
 * The integrator is scipy.integrate.solve_ivp(method='RK45') step for step,
 * transcribed from scipy/integrate/_ivp/rk.py (RungeKutta._step_impl, rk_step,
 * RK45's tableau), common.py (select_initial_step, norm, validate_tol) and
 * base.py (OdeSolver.step): same Dormand-Prince coefficients, same initial
 * step (with its extra evaluation of f), same minimum step, same clipping of
 * the last step, same RMS error norm, same step-size controller, FSAL, and the
 * same count of right-hand-side evaluations.  Only the defaults that the
 * benchmark uses are supported: first_step=None, max_step=inf, scalar atol.
 *
 * The two structurally zero weights (B[1] and E[1]) are skipped; for finite
 * stages this changes no bit of the result.
 *
 * Statuses: 0 reached t1; -1 the step fell below scipy's minimum
 * 10*|nextafter(t, dir*inf) - t|; -2 LORENZ_RK45_MAX_STEPS step attempts
 * (accepted and rejected) were made without reaching t1 (scipy has no such
 * limit).  A non-finite error estimate is a rejection, as in scipy.
 *
 * Build (see build.py): gcc -O3 -fopenmp -fPIC -shared, no fast-math.
 */
#include <float.h>
#include <math.h>

#define N 3 /* state dimension */
#define LORENZ_RK45_MAX_STEPS 100000L

/* scipy/integrate/_ivp/rk.py: module constants and RK45's tableau. */
static const double SAFETY = 0.9;
static const double MIN_FACTOR = 0.2;
static const double MAX_FACTOR = 10.0;
/* error_exponent = -1 / (error_estimator_order + 1), estimator order 4 */
static const double ERROR_EXPONENT = -1.0 / 5.0;
/* exponent of select_initial_step: 1 / (order + 1), with order 4 there too */
static const double INITIAL_STEP_EXPONENT = 1.0 / 5.0;

/* C = (0, 1/5, 3/10, 4/5, 8/9, 1): unused, the Lorenz system is autonomous. */

static const double A21 = 1.0 / 5.0;
static const double A31 = 3.0 / 40.0, A32 = 9.0 / 40.0;
static const double A41 = 44.0 / 45.0, A42 = -56.0 / 15.0, A43 = 32.0 / 9.0;
static const double A51 = 19372.0 / 6561.0, A52 = -25360.0 / 2187.0,
                    A53 = 64448.0 / 6561.0, A54 = -212.0 / 729.0;
static const double A61 = 9017.0 / 3168.0, A62 = -355.0 / 33.0,
                    A63 = 46732.0 / 5247.0, A64 = 49.0 / 176.0,
                    A65 = -5103.0 / 18656.0;

static const double B1 = 35.0 / 384.0, /* B2 = 0 */ B3 = 500.0 / 1113.0,
                    B4 = 125.0 / 192.0, B5 = -2187.0 / 6784.0, B6 = 11.0 / 84.0;

static const double E1 = -71.0 / 57600.0, /* E2 = 0 */ E3 = 71.0 / 16695.0,
                    E4 = -71.0 / 1920.0, E5 = 17253.0 / 339200.0,
                    E6 = -22.0 / 525.0, E7 = 1.0 / 40.0;

/* Python's max(a, b) and min(a, b): the first argument unless the second is
 * strictly greater (smaller).  This matters for NaN: max(0.2, nan) == 0.2. */
static inline double py_max(double a, double b) { return b > a ? b : a; }
static inline double py_min(double a, double b) { return b < a ? b : a; }
/* np.maximum(a, b): NaN if either is NaN. */
static inline double np_maximum(double a, double b)
{
    return (a >= b || a != a) ? a : b;
}

/* Right-hand side of the Lorenz system. */
static inline void lorenz(const double *y, double sigma, double rho,
                          double beta, double *f)
{
    f[0] = sigma * (y[1] - y[0]);
    f[1] = y[0] * (rho - y[2]) - y[1];
    f[2] = y[0] * y[1] - beta * y[2];
}

/* scipy's common.norm: the RMS norm, np.linalg.norm(x) / x.size ** 0.5. */
static inline double rms_norm(const double *x)
{
    double s = 0.0;
    for (int i = 0; i < N; ++i)
        s += x[i] * x[i];
    return sqrt(s) / sqrt((double)N);
}

/* scipy's common.select_initial_step for a nonzero interval, max_step=inf.
 * Evaluates f once more (the caller counts it). */
static double select_initial_step(double t0, const double *y0, double t_bound,
                                  const double *f0, double direction,
                                  double rtol, double atol, double sigma,
                                  double rho, double beta)
{
    const double interval_length = fabs(t_bound - t0);
    double scale[N], x[N], y1[N], f1[N];

    for (int i = 0; i < N; ++i)
        scale[i] = atol + fabs(y0[i]) * rtol;

    for (int i = 0; i < N; ++i)
        x[i] = y0[i] / scale[i];
    const double d0 = rms_norm(x);
    for (int i = 0; i < N; ++i)
        x[i] = f0[i] / scale[i];
    const double d1 = rms_norm(x);

    double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    h0 = py_min(h0, interval_length);

    for (int i = 0; i < N; ++i)
        y1[i] = y0[i] + h0 * direction * f0[i];
    lorenz(y1, sigma, rho, beta, f1); /* at t0 + h0 * direction: autonomous */

    for (int i = 0; i < N; ++i)
        x[i] = (f1[i] - f0[i]) / scale[i];
    const double d2 = rms_norm(x) / h0;

    double h1;
    if (d1 <= 1e-15 && d2 <= 1e-15)
        h1 = py_max(1e-6, h0 * 1e-3);
    else
        h1 = pow(0.01 / py_max(d1, d2), INITIAL_STEP_EXPONENT);

    return py_min(py_min(100 * h0, h1), interval_length);
}

/* One trajectory, y0 -> y (in place).  Returns the status; *nfev is set. */
static int solve_one(double *y, double sigma, double rho, double beta,
                     double t0, double t1, double rtol, double atol,
                     long *nfev)
{
    /* OdeSolver.__init__ */
    const double direction = (t1 != t0) ? (t1 > t0 ? 1.0 : -1.0) : 1.0;
    double f[N];
    lorenz(y, sigma, rho, beta, f);
    *nfev = 1;

    /* OdeSolver.step: nothing to do for an empty interval (and
     * select_initial_step returns 0 without evaluating f). */
    if (t0 == t1)
        return 0;

    double h_abs = select_initial_step(t0, y, t1, f, direction, rtol, atol,
                                       sigma, rho, beta);
    *nfev += 1;

    double t = t0;
    long attempts = 0;
    double K2[N], K3[N], K4[N], K5[N], K6[N], K7[N], ys[N], y_new[N];

    for (;;) {
        /* RungeKutta._step_impl */
        const double min_step =
            10.0 * fabs(nextafter(t, direction * INFINITY) - t);
        if (h_abs < min_step) /* (max_step is inf) */
            h_abs = min_step;

        int step_rejected = 0;
        double t_new;
        for (;;) {
            if (h_abs < min_step)
                return -1;
            if (attempts >= LORENZ_RK45_MAX_STEPS)
                return -2;
            ++attempts;

            double h = h_abs * direction;
            t_new = t + h;
            if (direction * (t_new - t1) > 0)
                t_new = t1;
            h = t_new - t;
            h_abs = fabs(h);

            /* rk_step: dy = (K[:s]^T a[:s]) * h; K[s] = f(t + c h, y + dy).
             * The stage times t + C[s] h are not needed: autonomous. */
            const double *K1 = f;
            for (int i = 0; i < N; ++i)
                ys[i] = y[i] + (K1[i] * A21) * h;
            lorenz(ys, sigma, rho, beta, K2);
            for (int i = 0; i < N; ++i)
                ys[i] = y[i] + (K1[i] * A31 + K2[i] * A32) * h;
            lorenz(ys, sigma, rho, beta, K3);
            for (int i = 0; i < N; ++i)
                ys[i] = y[i] + (K1[i] * A41 + K2[i] * A42 + K3[i] * A43) * h;
            lorenz(ys, sigma, rho, beta, K4);
            for (int i = 0; i < N; ++i)
                ys[i] = y[i] + (K1[i] * A51 + K2[i] * A52 + K3[i] * A53 +
                                K4[i] * A54) * h;
            lorenz(ys, sigma, rho, beta, K5);
            for (int i = 0; i < N; ++i)
                ys[i] = y[i] + (K1[i] * A61 + K2[i] * A62 + K3[i] * A63 +
                                K4[i] * A64 + K5[i] * A65) * h;
            lorenz(ys, sigma, rho, beta, K6);
            /* y_new = y + h * (K[:-1]^T B); f_new = f(t + h, y_new) */
            for (int i = 0; i < N; ++i)
                y_new[i] = y[i] + h * (K1[i] * B1 + K3[i] * B3 + K4[i] * B4 +
                                       K5[i] * B5 + K6[i] * B6);
            lorenz(y_new, sigma, rho, beta, K7);
            *nfev += 6;

            /* error_norm = norm((K^T E) * h / scale),
             * scale = atol + max(|y|, |y_new|) * rtol */
            double x[N];
            for (int i = 0; i < N; ++i) {
                const double err = (K1[i] * E1 + K3[i] * E3 + K4[i] * E4 +
                                    K5[i] * E5 + K6[i] * E6 + K7[i] * E7) * h;
                const double scale =
                    atol + np_maximum(fabs(y[i]), fabs(y_new[i])) * rtol;
                x[i] = err / scale;
            }
            const double error_norm = rms_norm(x);

            if (error_norm < 1) {
                double factor;
                if (error_norm == 0)
                    factor = MAX_FACTOR;
                else
                    factor = py_min(MAX_FACTOR,
                                    SAFETY * pow(error_norm, ERROR_EXPONENT));
                if (step_rejected)
                    factor = py_min(1, factor);
                h_abs *= factor;
                break;
            }
            h_abs *= py_max(MIN_FACTOR,
                            SAFETY * pow(error_norm, ERROR_EXPONENT));
            step_rejected = 1;
        }

        /* accept: FSAL, f_new becomes f */
        t = t_new;
        for (int i = 0; i < N; ++i) {
            y[i] = y_new[i];
            f[i] = K7[i];
        }

        /* OdeSolver.step */
        if (direction * (t - t1) >= 0)
            return 0;
    }
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
    rtol = py_max(rtol, 100 * DBL_EPSILON); /* common.validate_tol */

#pragma omp parallel for schedule(dynamic, 64) reduction(+ : n_failed)
    for (int i = 0; i < k; ++i) {
        double y[N] = {1.0, 0.0, 0.0};
        status[i] = solve_one(y, sigma, rho[i], beta, t0, t1, rtol, atol,
                              &nfev[i]);
        for (int c = 0; c < N; ++c)
            y_final[(long)c * k + i] = y[c];
        n_failed += status[i] != 0;
    }
    return n_failed;
}
