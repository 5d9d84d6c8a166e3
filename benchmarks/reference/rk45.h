/*
 * scipy's RK45 for one trajectory of any state size, with scipy's t_eval
 * output: the integrator of the large-systems C reference (large_rk45.c).
 *
 * Transcribed, like lorenz_rk45.c (which is the same integrator written out
 * for the Lorenz system), from scipy/integrate/_ivp/rk.py
 * (RungeKutta._step_impl, rk_step, RK45's tableau, RkDenseOutput),
 * common.py (select_initial_step, norm) and base.py (OdeSolver.step) and
 * ivp.py (solve_ivp's t_eval loop): same Dormand-Prince coefficients, same
 * initial step (with its extra evaluation of f), minimum step
 * 10*spacing(t), clipping of the last step to t1, RMS error norm of
 * err / (atol + max(|y|, |y_new|) rtol), controller min(10, 0.9 err^-1/5)
 * with no growth after a rejection, FSAL, nfev count, and the t_eval points
 * of each step interpolated with RK45's quartic dense output
 * y_old + h (K^T P) (x, x^2, x^3, x^4), x = (t - t_old) / h.  Only
 * first_step=None, max_step=inf and a scalar atol are supported.
 *
 * Usage: define the right-hand side as
 *     static inline void rhs(double t, const double *y, const void *ctx,
 *                            double *f)
 * and call rk45_solve() with a compile-time constant n from a function of
 * your own: rk45_solve is always inlined, so n and rhs become constants
 * (loops of known length, rhs inlined).  n must not exceed RK45_NMAX.
 *
 * Statuses: 0 reached t1; -1 the step fell below scipy's minimum; -2
 * RK45_MAX_STEPS step attempts (accepted and rejected) were made without
 * reaching t1 (scipy has no such limit).  A non-finite error estimate is a
 * rejection, as in scipy.
 */
#ifndef GPUIVP_REFERENCE_RK45_H
#define GPUIVP_REFERENCE_RK45_H

#include <float.h>
#include <math.h>

#define RK45_NMAX 64
#define RK45_MAX_STEPS 100000L

typedef void (*rk45_rhs)(double t, const double *y, const void *ctx, double *f);

/* scipy/integrate/_ivp/rk.py: module constants and RK45's tableau. */
static const double RK45_SAFETY = 0.9;
static const double RK45_MIN_FACTOR = 0.2;
static const double RK45_MAX_FACTOR = 10.0;
/* error_exponent = -1 / (error_estimator_order + 1), estimator order 4;
 * select_initial_step's exponent 1 / (order + 1) with the same order. */
static const double RK45_ERROR_EXPONENT = -1.0 / 5.0;
static const double RK45_INITIAL_STEP_EXPONENT = 1.0 / 5.0;

static const double RK45_C2 = 1.0 / 5.0, RK45_C3 = 3.0 / 10.0,
                    RK45_C4 = 4.0 / 5.0, RK45_C5 = 8.0 / 9.0;

static const double RK45_A21 = 1.0 / 5.0;
static const double RK45_A31 = 3.0 / 40.0, RK45_A32 = 9.0 / 40.0;
static const double RK45_A41 = 44.0 / 45.0, RK45_A42 = -56.0 / 15.0,
                    RK45_A43 = 32.0 / 9.0;
static const double RK45_A51 = 19372.0 / 6561.0, RK45_A52 = -25360.0 / 2187.0,
                    RK45_A53 = 64448.0 / 6561.0, RK45_A54 = -212.0 / 729.0;
static const double RK45_A61 = 9017.0 / 3168.0, RK45_A62 = -355.0 / 33.0,
                    RK45_A63 = 46732.0 / 5247.0, RK45_A64 = 49.0 / 176.0,
                    RK45_A65 = -5103.0 / 18656.0;

/* B2 = 0 and E2 = 0 are skipped: for finite stages no bit changes. */
static const double RK45_B1 = 35.0 / 384.0, RK45_B3 = 500.0 / 1113.0,
                    RK45_B4 = 125.0 / 192.0, RK45_B5 = -2187.0 / 6784.0,
                    RK45_B6 = 11.0 / 84.0;

static const double RK45_E1 = -71.0 / 57600.0, RK45_E3 = 71.0 / 16695.0,
                    RK45_E4 = -71.0 / 1920.0, RK45_E5 = 17253.0 / 339200.0,
                    RK45_E6 = -22.0 / 525.0, RK45_E7 = 1.0 / 40.0;

/* RK45.P, the dense output's (7, 4) matrix; its row 2 is zero (skipped). */
static const double RK45_P[7][4] = {
    {1.0, -8048581381.0 / 2820520608.0, 8663915743.0 / 2820520608.0,
     -12715105075.0 / 11282082432.0},
    {0.0, 0.0, 0.0, 0.0},
    {0.0, 131558114200.0 / 32700410799.0, -68118460800.0 / 10900136933.0,
     87487479700.0 / 32700410799.0},
    {0.0, -1754552775.0 / 470086768.0, 14199869525.0 / 1410260304.0,
     -10690763975.0 / 1880347072.0},
    {0.0, 127303824393.0 / 49829197408.0, -318862633887.0 / 49829197408.0,
     701980252875.0 / 199316789632.0},
    {0.0, -282668133.0 / 205662961.0, 2019193451.0 / 616988883.0,
     -1453857185.0 / 822651844.0},
    {0.0, 40617522.0 / 29380423.0, -110615467.0 / 29380423.0,
     69997945.0 / 29380423.0}};

/* Python's max(a, b) and min(a, b): the first argument unless the second is
 * strictly greater (smaller).  This matters for NaN: max(0.2, nan) == 0.2. */
static inline double rk45_py_max(double a, double b) { return b > a ? b : a; }
static inline double rk45_py_min(double a, double b) { return b < a ? b : a; }
/* np.maximum(a, b): NaN if either is NaN. */
static inline double rk45_np_maximum(double a, double b)
{
    return (a >= b || a != a) ? a : b;
}

/* scipy's common.norm: np.linalg.norm(x) / x.size ** 0.5. */
static inline __attribute__((always_inline)) double
rk45_rms_norm(int n, const double *x)
{
    double s = 0.0;
    for (int i = 0; i < n; ++i)
        s += x[i] * x[i];
    return sqrt(s) / sqrt((double)n);
}

/* scipy's rtol floor (common.validate_tol). */
static inline double rk45_rtol(double rtol)
{
    return rk45_py_max(rtol, 100 * DBL_EPSILON);
}

/* scipy's common.select_initial_step for a nonzero interval, max_step=inf.
 * Evaluates f once more (the caller counts it). */
static inline __attribute__((always_inline)) double
rk45_initial_step(int n, rk45_rhs rhs, const void *ctx, double t0,
                  const double *y0, double t_bound, const double *f0,
                  double direction, double rtol, double atol)
{
    const double interval_length = fabs(t_bound - t0);
    double scale[RK45_NMAX], x[RK45_NMAX], y1[RK45_NMAX], f1[RK45_NMAX];

    for (int i = 0; i < n; ++i)
        scale[i] = atol + fabs(y0[i]) * rtol;
    for (int i = 0; i < n; ++i)
        x[i] = y0[i] / scale[i];
    const double d0 = rk45_rms_norm(n, x);
    for (int i = 0; i < n; ++i)
        x[i] = f0[i] / scale[i];
    const double d1 = rk45_rms_norm(n, x);

    double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    h0 = rk45_py_min(h0, interval_length);

    for (int i = 0; i < n; ++i)
        y1[i] = y0[i] + h0 * direction * f0[i];
    rhs(t0 + h0 * direction, y1, ctx, f1);

    for (int i = 0; i < n; ++i)
        x[i] = (f1[i] - f0[i]) / scale[i];
    const double d2 = rk45_rms_norm(n, x) / h0;

    double h1;
    if (d1 <= 1e-15 && d2 <= 1e-15)
        h1 = rk45_py_max(1e-6, h0 * 1e-3);
    else
        h1 = pow(0.01 / rk45_py_max(d1, d2), RK45_INITIAL_STEP_EXPONENT);

    return rk45_py_min(rk45_py_min(100 * h0, h1), interval_length);
}

/* The t_eval points of the accepted step (t_old, t]: solve_ivp's
 * searchsorted(t_eval, t, side='right') (side='left' of the reversed array
 * backwards), then RkDenseOutput(t_old, t, y_old, Q = K^T P) at each.
 * y_eval[i * eval_stride + e] receives component i at t_eval[e]; returns
 * the index of the next point. */
static inline __attribute__((always_inline)) int
rk45_output(int n, double (*K)[RK45_NMAX], const double *y_old, double t_old,
            double t, double direction, int e, int n_eval,
            const double *t_eval, double *y_eval, long eval_stride)
{
    if (e >= n_eval || direction * (t_eval[e] - t) > 0)
        return e;
    const double h = t - t_old;
    double Q[RK45_NMAX][4];
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < 4; ++j) /* K.T.dot(P), P's zero row skipped */
            Q[i][j] = K[0][i] * RK45_P[0][j] + K[2][i] * RK45_P[2][j] +
                      K[3][i] * RK45_P[3][j] + K[4][i] * RK45_P[4][j] +
                      K[5][i] * RK45_P[5][j] + K[6][i] * RK45_P[6][j];
    for (; e < n_eval && direction * (t_eval[e] - t) <= 0; ++e) {
        const double x = (t_eval[e] - t_old) / h;
        const double p1 = x, p2 = p1 * x, p3 = p2 * x, p4 = p3 * x;
        for (int i = 0; i < n; ++i)
            y_eval[i * eval_stride + e] =
                h * (Q[i][0] * p1 + Q[i][1] * p2 + Q[i][2] * p3 +
                     Q[i][3] * p4) + y_old[i];
    }
    return e;
}

/*
 * One trajectory from (t0, y) to t1, y updated in place.  rtol must already
 * be floored (rk45_rtol).  With n_eval > 0, t_eval (sorted in the direction
 * of integration, within [t0, t1]) is written to y_eval as described at
 * rk45_output.  Returns the status; *nfev is set.
 */
static inline __attribute__((always_inline)) int
rk45_solve(int n, rk45_rhs rhs, const void *ctx, double *y, double t0,
           double t1, double rtol, double atol, int n_eval,
           const double *t_eval, double *y_eval, long eval_stride, long *nfev)
{
    /* OdeSolver.__init__ */
    const double direction = (t1 != t0) ? (t1 > t0 ? 1.0 : -1.0) : 1.0;
    /* K[0] is f at the step's start (FSAL), K[6] f at its end. */
    double K[7][RK45_NMAX], ys[RK45_NMAX], y_new[RK45_NMAX], x[RK45_NMAX];
    rhs(t0, y, ctx, K[0]);
    *nfev = 1;
    int e = 0;

    /* OdeSolver.step: nothing to do for an empty interval (and
     * select_initial_step returns 0 without evaluating f). */
    if (t0 == t1) {
        for (; e < n_eval; ++e) /* solve_ivp's t_eval at t0 == t1 is y0 */
            for (int i = 0; i < n; ++i)
                y_eval[i * eval_stride + e] = y[i];
        return 0;
    }

    double h_abs = rk45_initial_step(n, rhs, ctx, t0, y, t1, K[0], direction,
                                     rtol, atol);
    *nfev += 1;

    double t = t0;
    long attempts = 0;

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
            if (attempts >= RK45_MAX_STEPS)
                return -2;
            ++attempts;

            double h = h_abs * direction;
            t_new = t + h;
            if (direction * (t_new - t1) > 0)
                t_new = t1;
            h = t_new - t;
            h_abs = fabs(h);

            /* rk_step: dy = (K[:s]^T a[:s]) * h; K[s] = f(t + c h, y + dy) */
            for (int i = 0; i < n; ++i)
                ys[i] = y[i] + (K[0][i] * RK45_A21) * h;
            rhs(t + RK45_C2 * h, ys, ctx, K[1]);
            for (int i = 0; i < n; ++i)
                ys[i] = y[i] + (K[0][i] * RK45_A31 + K[1][i] * RK45_A32) * h;
            rhs(t + RK45_C3 * h, ys, ctx, K[2]);
            for (int i = 0; i < n; ++i)
                ys[i] = y[i] + (K[0][i] * RK45_A41 + K[1][i] * RK45_A42 +
                                K[2][i] * RK45_A43) * h;
            rhs(t + RK45_C4 * h, ys, ctx, K[3]);
            for (int i = 0; i < n; ++i)
                ys[i] = y[i] + (K[0][i] * RK45_A51 + K[1][i] * RK45_A52 +
                                K[2][i] * RK45_A53 + K[3][i] * RK45_A54) * h;
            rhs(t + RK45_C5 * h, ys, ctx, K[4]);
            for (int i = 0; i < n; ++i)
                ys[i] = y[i] + (K[0][i] * RK45_A61 + K[1][i] * RK45_A62 +
                                K[2][i] * RK45_A63 + K[3][i] * RK45_A64 +
                                K[4][i] * RK45_A65) * h;
            rhs(t + h, ys, ctx, K[5]);
            /* y_new = y + h * (K[:-1]^T B); f_new = f(t + h, y_new) */
            for (int i = 0; i < n; ++i)
                y_new[i] = y[i] + h * (K[0][i] * RK45_B1 + K[2][i] * RK45_B3 +
                                       K[3][i] * RK45_B4 + K[4][i] * RK45_B5 +
                                       K[5][i] * RK45_B6);
            rhs(t_new, y_new, ctx, K[6]);
            *nfev += 6;

            /* error_norm = norm((K^T E) * h / scale),
             * scale = atol + max(|y|, |y_new|) * rtol */
            for (int i = 0; i < n; ++i) {
                const double err =
                    (K[0][i] * RK45_E1 + K[2][i] * RK45_E3 +
                     K[3][i] * RK45_E4 + K[4][i] * RK45_E5 +
                     K[5][i] * RK45_E6 + K[6][i] * RK45_E7) * h;
                const double scale =
                    atol + rk45_np_maximum(fabs(y[i]), fabs(y_new[i])) * rtol;
                x[i] = err / scale;
            }
            const double error_norm = rk45_rms_norm(n, x);

            if (error_norm < 1) {
                double factor;
                if (error_norm == 0)
                    factor = RK45_MAX_FACTOR;
                else
                    factor = rk45_py_min(RK45_MAX_FACTOR,
                                         RK45_SAFETY *
                                             pow(error_norm, RK45_ERROR_EXPONENT));
                if (step_rejected)
                    factor = rk45_py_min(1, factor);
                h_abs *= factor;
                break;
            }
            h_abs *= rk45_py_max(RK45_MIN_FACTOR,
                                 RK45_SAFETY * pow(error_norm, RK45_ERROR_EXPONENT));
            step_rejected = 1;
        }

        /* accept: t_eval output from this step, then FSAL */
        e = rk45_output(n, K, y, t, t_new, direction, e, n_eval, t_eval,
                        y_eval, eval_stride);
        t = t_new;
        for (int i = 0; i < n; ++i) {
            y[i] = y_new[i];
            K[0][i] = K[6][i];
        }

        /* OdeSolver.step */
        if (direction * (t - t1) >= 0)
            return 0;
    }
}

#endif /* GPUIVP_REFERENCE_RK45_H */
