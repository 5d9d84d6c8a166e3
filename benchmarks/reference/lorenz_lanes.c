/*
 * C lane reference for the lane-engine benchmark (benchmarks/lanes.py): the
 * Lorenz ensemble of lorenz_rk45.c with the same algorithm (rk45.h: scipy's
 * RK45 step for step, the same operations in the same order), run W = 16
 * trajectories at a time in lanes, as gpuivp's numba lane engine runs them.
 *
 * Every per-trajectory quantity is an array of W lanes; a step attempt is a
 * sequence of loops over the lanes without data-dependent branches (both
 * outcomes computed, one chosen with ?:, which GCC turns into blends), the
 * controller's pow called per lane (libm, as the scalar reference), and
 * nextafter(t, +-inf) as integer arithmetic on the bits.  A lane whose
 * trajectory has finished writes its results and takes the next trajectory
 * of its block (refill).  Results, statuses and nfev are the scalar
 * reference's, bit for bit.
 *
 * Statuses as lorenz_rk45.c: 0 reached t1; -1 step below the minimum; -2
 * RK45_MAX_STEPS step attempts.
 *
 * Build (see build.py): gcc -O3 -fopenmp -fPIC -shared, no fast-math.
 */
#include <stdint.h>
#include <string.h>

#include "rk45.h"

#define N 3   /* state dimension */
#define W 16  /* lanes */
#define BLOCK 1024 /* trajectories per OpenMP work item, refilled lanes each */

struct lanes {
    double t[W], h[W], rej[W], live[W], att[W], nfev[W], status[W];
    double rho[W], y[N][W], k[7][N][W], yn[N][W], hs[W], tn[W], go[W], en[W];
    long idx[W];
};

static inline void lorenz(double sigma, double rho, double beta, double y0,
                          double y1, double y2, double *f0, double *f1,
                          double *f2)
{
    *f0 = sigma * (y1 - y0);
    *f1 = y0 * (rho - y2) - y1;
    *f2 = y0 * y1 - beta * y2;
}

static void lorenz_rhs(double t, const double *y, const void *ctx, double *f)
{
    const double *p = ctx; /* sigma, rho, beta */
    (void)t;
    lorenz(p[0], p[1], p[2], y[0], y[1], y[2], &f[0], &f[1], &f[2]);
}

/* nextafter(t, direction * inf) without a call. */
static inline double next_toward(double t, double direction)
{
    int64_t b;
    memcpy(&b, &t, sizeof b);
    b += ((t > 0) == (direction > 0)) ? 1 : -1;
    double r;
    memcpy(&r, &b, sizeof r);
    return t == 0 ? direction * 4.9406564584124654e-324 : r;
}

/* Lane l takes trajectory i: f(t0, y0) and the initial step (scalar code, as
 * rk45_solve).  Returns whether it runs (else it has finished at t0). */
static int take(struct lanes *s, int l, long i, const double *rho, double sigma,
                double beta, double t0, double t1, double rtol, double atol,
                double direction)
{
    const double p[3] = {sigma, rho[i], beta};
    double y[N] = {1.0, 0.0, 0.0}, f[N];
    lorenz_rhs(t0, y, p, f);
    s->idx[l] = i;
    s->rho[l] = rho[i];
    s->nfev[l] = 1;
    s->t[l] = t0;
    s->status[l] = 0;
    s->att[l] = 0;
    s->rej[l] = 0;
    for (int c = 0; c < N; ++c) {
        s->y[c][l] = y[c];
        s->k[0][c][l] = f[c];
    }
    if (t0 == t1) {
        s->live[l] = 0;
        return 0;
    }
    s->h[l] = rk45_initial_step(N, lorenz_rhs, p, t0, y, t1, f, direction, rtol,
                                atol);
    s->nfev[l] = 2;
    s->live[l] = 1;
    return 1;
}

static void put(const struct lanes *s, int l, long k, double *y_final,
                int *status, long *nfev)
{
    const long i = s->idx[l];
    for (int c = 0; c < N; ++c)
        y_final[(long)c * k + i] = s->y[c][l];
    status[i] = (int)s->status[l];
    nfev[i] = (long)s->nfev[l];
}

/* One step attempt of every lane (rk45_solve's loop body, masked). */
static void attempt(struct lanes *restrict s, double sigma, double beta,
                    double t1, double rtol, double atol, double direction)
{
    for (int l = 0; l < W; ++l) {
        const double t = s->t[l];
        double h_abs = s->h[l];
        const int rej = s->rej[l] != 0, live = s->live[l] != 0;
        const double min_step = 10.0 * fabs(next_toward(t, direction) - t);
        h_abs = (!rej && h_abs < min_step) ? min_step : h_abs;
        const int fail_step = h_abs < min_step;
        const int fail_max = !fail_step && s->att[l] >= RK45_MAX_STEPS;
        const int go = live && !fail_step && !fail_max;
        s->status[l] = (live && !go) ? (fail_step ? -1.0 : -2.0) : s->status[l];
        s->live[l] = go ? 1.0 : 0.0;
        double h = h_abs * direction;
        double t_new = t + h;
        t_new = (direction * (t_new - t1) > 0) ? t1 : t_new;
        s->hs[l] = t_new - t;
        s->tn[l] = t_new;
        s->go[l] = go;
    }
#define Y(c) s->y[c][l]
#define K(m, c) s->k[m][c][l]
#define STAGE(m, cexpr, e0, e1, e2)                                          \
    for (int l = 0; l < W; ++l) {                                            \
        const double h = s->hs[l], t = s->t[l];                             \
        (void)t;                                                             \
        lorenz(sigma, s->rho[l], beta, Y(0) + (e0) * h, Y(1) + (e1) * h,    \
               Y(2) + (e2) * h, &K(m, 0), &K(m, 1), &K(m, 2));              \
    }
    STAGE(1, RK45_C2, K(0, 0) * RK45_A21, K(0, 1) * RK45_A21,
          K(0, 2) * RK45_A21)
#define A3(c) (K(0, c) * RK45_A31 + K(1, c) * RK45_A32)
    STAGE(2, RK45_C3, A3(0), A3(1), A3(2))
#define A4(c) (K(0, c) * RK45_A41 + K(1, c) * RK45_A42 + K(2, c) * RK45_A43)
    STAGE(3, RK45_C4, A4(0), A4(1), A4(2))
#define A5(c)                                                                \
    (K(0, c) * RK45_A51 + K(1, c) * RK45_A52 + K(2, c) * RK45_A53 +          \
     K(3, c) * RK45_A54)
    STAGE(4, RK45_C5, A5(0), A5(1), A5(2))
#define A6(c)                                                                \
    (K(0, c) * RK45_A61 + K(1, c) * RK45_A62 + K(2, c) * RK45_A63 +          \
     K(3, c) * RK45_A64 + K(4, c) * RK45_A65)
    STAGE(5, 1.0, A6(0), A6(1), A6(2))
    for (int l = 0; l < W; ++l) {
        const double h = s->hs[l];
        double x[N];
        for (int c = 0; c < N; ++c)
            s->yn[c][l] = Y(c) + h * (K(0, c) * RK45_B1 + K(2, c) * RK45_B3 +
                                      K(3, c) * RK45_B4 + K(4, c) * RK45_B5 +
                                      K(5, c) * RK45_B6);
        lorenz(sigma, s->rho[l], beta, s->yn[0][l], s->yn[1][l], s->yn[2][l],
               &K(6, 0), &K(6, 1), &K(6, 2));
        for (int c = 0; c < N; ++c) {
            const double err = (K(0, c) * RK45_E1 + K(2, c) * RK45_E3 +
                                K(3, c) * RK45_E4 + K(4, c) * RK45_E5 +
                                K(5, c) * RK45_E6 + K(6, c) * RK45_E7) * h;
            const double a = fabs(Y(c)), b = fabs(s->yn[c][l]);
            x[c] = err / (atol + ((a >= b || a != a) ? a : b) * rtol);
        }
        double sum = 0.0;
        for (int c = 0; c < N; ++c)
            sum += x[c] * x[c];
        s->en[l] = sqrt(sum) / sqrt((double)N);
    }
    double pw[W];
    for (int l = 0; l < W; ++l) /* libm's pow per lane, as the scalar reference */
        pw[l] = RK45_SAFETY * pow(s->en[l], RK45_ERROR_EXPONENT);
    for (int l = 0; l < W; ++l) {
        const int go = s->go[l] != 0;
        const double err = s->en[l], p = pw[l], h_abs = fabs(s->hs[l]);
        const int acc = err < 1;
        double fa = (err == 0) ? RK45_MAX_FACTOR
                               : (p < RK45_MAX_FACTOR ? p : RK45_MAX_FACTOR);
        fa = (s->rej[l] != 0 && !(fa < 1)) ? 1 : fa;
        const double fr = (p > RK45_MIN_FACTOR) ? p : RK45_MIN_FACTOR;
        const int a = go && acc;
        const double t_new = s->tn[l];
        s->h[l] = go ? h_abs * (acc ? fa : fr) : s->h[l];
        s->rej[l] = go ? (acc ? 0.0 : 1.0) : s->rej[l];
        s->t[l] = a ? t_new : s->t[l];
        for (int c = 0; c < N; ++c) {
            Y(c) = a ? s->yn[c][l] : Y(c);
            K(0, c) = a ? K(6, c) : K(0, c);
        }
        s->nfev[l] += go ? 6 : 0;
        s->att[l] += go ? 1 : 0;
        s->live[l] = (go && !(a && direction * (t_new - t1) >= 0)) ? 1.0 : 0.0;
    }
#undef Y
#undef K
}

/* Trajectories a <= i < b through W refilled lanes. */
static void run_block(long a, long b, long k, const double *rho, double sigma,
                      double beta, double t0, double t1, double rtol,
                      double atol, double *y_final, int *status, long *nfev)
{
    const double direction = (t1 != t0) ? (t1 > t0 ? 1.0 : -1.0) : 1.0;
    struct lanes s;
    memset(&s, 0, sizeof s);
    for (int l = 0; l < W; ++l)
        s.idx[l] = -1;
    long next = a;
    for (;;) {
        int n_live = 0, src = -1;
        for (int l = 0; l < W; ++l) {
            if (s.live[l] == 0 && s.idx[l] >= 0) {
                put(&s, l, k, y_final, status, nfev);
                s.idx[l] = -1;
            }
            while (s.live[l] == 0 && next < b) {
                if (take(&s, l, next++, rho, sigma, beta, t0, t1, rtol, atol,
                         direction))
                    break;
                put(&s, l, k, y_final, status, nfev);
                s.idx[l] = -1;
            }
            if (s.live[l] != 0) {
                ++n_live;
                src = l;
            }
        }
        if (n_live == 0)
            return;
        for (int l = 0; l < W; ++l) /* idle lanes: a copy of a live one, masked */
            if (s.idx[l] < 0) {
                s.t[l] = s.t[src];
                s.h[l] = s.h[src];
                s.rho[l] = s.rho[src];
                for (int c = 0; c < N; ++c) {
                    s.y[c][l] = s.y[c][src];
                    s.k[0][c][l] = s.k[0][c][src];
                }
            }
        int now = n_live;
        while (now == n_live) {
            attempt(&s, sigma, beta, t1, rtol, atol, direction);
            now = 0;
            for (int l = 0; l < W; ++l)
                now += s.live[l] != 0;
        }
    }
}

/* The signature and outputs of lorenz_rk45.c's solve_ensemble. */
int solve_ensemble(int k, const double *rho, double sigma, double beta,
                   double t0, double t1, double rtol, double atol,
                   double *y_final, int *status, long *nfev)
{
    rtol = rk45_rtol(rtol);
    const long n_blocks = ((long)k + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(dynamic, 1)
    for (long blk = 0; blk < n_blocks; ++blk) {
        const long a = blk * BLOCK, b = a + BLOCK < k ? a + BLOCK : k;
        run_block(a, b, k, rho, sigma, beta, t0, t1, rtol, atol, y_final,
                  status, nfev);
    }
    int n_failed = 0;
    for (int i = 0; i < k; ++i)
        n_failed += status[i] != 0;
    return n_failed;
}
