/*
 * Hand-written CUDA C reference for the GPU benchmark (benchmarks/gpu.py, issue 3):
 * an ensemble of Lorenz systems, one thread per trajectory,
 *
 *     x' = sigma (y - x),   y' = x (rho - z) - y,   z' = x y - beta z,
 *
 * rho per trajectory, sigma and beta shared, final state only.  Three methods,
 * each the same algorithm as gpuivp's per-trajectory engine
 * (gpuivp/engines/per_trajectory.py) with the operations in the same order:
 *
 *   lorenz_rk4_{f32,f64}    classical RK4 at a fixed step dt: n_steps =
 *                           ceil(|t1 - t0| / dt - 1e-12) (computed by the caller),
 *                           t_i = t0 + i dt direction, the last step ending exactly
 *                           at t1; nfev = 1 + 4 n_steps; a non-finite state fails (-3)
 *                           (tested once at the end, and if it fails step by step
 *                           again from the start, as gpuivp does for the final state).
 *   lorenz_rk45_{f32,f64}   scipy's RK45 (Dormand-Prince 5(4), scipy's tableau).
 *   lorenz_tsit5_{f32,f64}  Tsitouras 5(4), coefficients as in gpuivp/methods/tsit5.py.
 *
 * The adaptive methods share scipy's controller (scipy/integrate/_ivp/rk.py and
 * common.py; the C version in lorenz_rk45.c): select_initial_step (one extra
 * evaluation), RMS error norm of err / (atol + max(|y|, |y_new|) rtol), accept iff
 * err < 1, factor min(10, 0.9 err^(-1/5)) (10 for err == 0), no growth after a
 * rejection within a step, max(0.2, 0.9 err^(-1/5)) on rejection (0.2 if that is NaN),
 * min_step = 10 |nextafter(t, dir inf) - t|, the last step clipped to t1, FSAL.
 * max_step is infinite and first_step is chosen, as in the benchmark.  rtol is used
 * as given: the caller floors it at 100 eps(T), as gpuivp does (build.py's
 * effective_rtol).  Statuses as gpuivp's: 0 reached t1, -1 step below the minimum
 * (finite error), -2 max_steps step attempts, -3 not finite.
 *
 * Templated on T = float or double; every constant is a T (a double literal
 * converted at compile time, exactly as gpuivp's dtype.type(value)), so float builds
 * contain no double arithmetic.  State layout is trajectory index fastest:
 * y0[j*k + i], y[j*k + i] for component j of trajectory i.
 *
 * The same file compiles three ways:
 *   - nvcc (-cubin / -ptx) or NVRTC (cupy.RawModule): extern "C" __global__ kernels,
 *     a grid-stride loop over trajectories;
 *   - plain host C++ (g++ -O2 -ffp-contract=off, see build.py): the kernels become
 *     extern "C" host functions looping over the trajectories, called through ctypes
 *     (tests/test_reference_gpu.py checks them against gpuivp's numba backend).
 * No fast-math anywhere.  On the GPU nvcc's default -fmad=true contracts a*b + c into
 * fused multiply-adds, as NVVM does for gpuivp's numba.cuda kernels (their default
 * too), so both GPU kernels compute alike; the host build turns contraction off, as
 * numba's CPU code has none.
 */

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
/* ---- device build ---------------------------------------------------------------- */
#define LG_HD __device__ __forceinline__
#define LG_UNROLL _Pragma("unroll")
#define LG_FOR_EACH_TRAJECTORY(i, k)                                                   \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (k);     \
         i += (long long)gridDim.x * blockDim.x)
#define LG_RESTRICT __restrict__
#else
/* ---- host build: the kernels are plain functions over all trajectories ----------- */
#include <math.h>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define LG_HD inline
#define LG_UNROLL
#define LG_FOR_EACH_TRAJECTORY(i, k) for (long long i = 0; i < (k); ++i)
#define LG_RESTRICT __restrict__
#endif

namespace lg {

/* ---- math, overloaded per precision (NVRTC has no <cmath>) ----------------------- */
LG_HD float lg_sqrt(float x) { return sqrtf(x); }
LG_HD double lg_sqrt(double x) { return sqrt(x); }
LG_HD float lg_pow(float x, float y) { return powf(x, y); }
LG_HD double lg_pow(double x, double y) { return pow(x, y); }
LG_HD float lg_abs(float x) { return fabsf(x); }
LG_HD double lg_abs(double x) { return fabs(x); }
LG_HD float lg_nextafter(float x, float y) { return nextafterf(x, y); }
LG_HD double lg_nextafter(double x, double y) { return nextafter(x, y); }

template <typename T> struct Limits;
template <> struct Limits<float> {
    LG_HD static float max() { return 3.4028234663852886e+38f; }
    LG_HD static float inf() { return max() * 2.0f; } /* overflows to +inf (IEEE) */
};
template <> struct Limits<double> {
    LG_HD static double max() { return 1.7976931348623157e+308; }
    LG_HD static double inf() { return max() * 2.0; }
};
/* NaN and +-inf fail the comparison. */
template <typename T> LG_HD bool lg_isfinite(T x) { return lg_abs(x) <= Limits<T>::max(); }

/* ---- the right-hand side ----------------------------------------------------------- */
template <typename T> struct Lorenz {
    T sigma, rho, beta;
    LG_HD void operator()(const T y[3], T f[3]) const
    {
        f[0] = sigma * (y[1] - y[0]);
        f[1] = y[0] * (rho - y[2]) - y[1];
        f[2] = y[0] * y[1] - beta * y[2];
    }
};

#define LG_EACH(j) LG_UNROLL for (int j = 0; j < 3; ++j)

/* ---- constants of the controller (per_trajectory.py's typed constants) ------------- */
constexpr double SAFETY = 0.9;
constexpr double MIN_FACTOR = 0.2;
constexpr double MAX_FACTOR = 10.0;
constexpr double ERROR_EXPONENT = -1.0 / 5.0; /* -1 / (error order 4 + 1) */
constexpr double INV_ORDER = 1.0 / 5.0;       /* select_initial_step: 1 / (4 + 1) */
constexpr double SQRTN = 1.7320508075688772;  /* sqrt(3) = 3 ** 0.5 */

/* ---- classical RK4 ---------------------------------------------------------------- */
namespace rk4 {
constexpr double A10 = 0.5, A21 = 0.5, A32 = 1.0;
constexpr double B0 = 1.0 / 6.0, B1 = 1.0 / 3.0, B2 = 1.0 / 3.0, B3 = 1.0 / 6.0;
} // namespace rk4

/* ---- scipy's RK45 (Dormand-Prince), scipy/integrate/_ivp/rk.py --------------------- */
namespace rk45 {
constexpr double A10 = 1.0 / 5.0;
constexpr double A20 = 3.0 / 40.0, A21 = 9.0 / 40.0;
constexpr double A30 = 44.0 / 45.0, A31 = -56.0 / 15.0, A32 = 32.0 / 9.0;
constexpr double A40 = 19372.0 / 6561.0, A41 = -25360.0 / 2187.0, A42 = 64448.0 / 6561.0,
                 A43 = -212.0 / 729.0;
constexpr double A50 = 9017.0 / 3168.0, A51 = -355.0 / 33.0, A52 = 46732.0 / 5247.0,
                 A53 = 49.0 / 176.0, A54 = -5103.0 / 18656.0;
/* B1 = 0 and E1 = 0 are skipped, as gpuivp's generated code skips zero weights. */
constexpr double B0 = 35.0 / 384.0, B2 = 500.0 / 1113.0, B3 = 125.0 / 192.0,
                 B4 = -2187.0 / 6784.0, B5 = 11.0 / 84.0;
constexpr double E0 = -71.0 / 57600.0, E2 = 71.0 / 16695.0, E3 = -71.0 / 1920.0,
                 E4 = 17253.0 / 339200.0, E5 = -22.0 / 525.0, E6 = 1.0 / 40.0;
} // namespace rk45

/* ---- Tsitouras 5(4), gpuivp/methods/tsit5.py (the same decimal strings) ----------- */
namespace tsit5 {
constexpr double A10 = 0.161;
constexpr double A20 = -0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943,
                 A21 = 0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569;
constexpr double A30 = 2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289,
                 A31 = -6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366,
                 A32 = 4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077;
constexpr double A40 = 5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791,
                 A41 = -11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589,
                 A42 = 7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753,
                 A43 = -0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635;
constexpr double A50 = 5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748,
                 A51 = -12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452,
                 A52 = 8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986,
                 A53 = -0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835,
                 A54 = -0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206;
/* The solution weights b: the last row of A (FSAL). */
constexpr double B0 = 0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396,
                 B1 = 0.01,
                 B2 = 0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
                 B3 = 1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
                 B4 = -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
                 B5 = 2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841;
/* The embedded 4th-order weights b_hat; the error weights are e = (b, 0) - b_hat in
 * double, as tsit5.py computes them, then converted to T. */
constexpr double H0 = 0.09468075576583945807478876255758922856117527357724631226139574065785592789071067303271,
                 H1 = 0.009183565540343253096776363936645313759813746240984095238905939532922955247253608687270,
                 H2 = 0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813,
                 H3 = 1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761,
                 H4 = -2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702,
                 H5 = 1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089,
                 H6 = 1.0 / 66;
constexpr double E0 = B0 - H0, E1 = B1 - H1, E2 = B2 - H2, E3 = B3 - H3, E4 = B4 - H4,
                 E5 = B5 - H5, E6 = 0.0 - H6;
} // namespace tsit5

/* One step of each adaptive pair from (y, K0 = f(y)) with step h: y_new, f(y_new)
 * (the next step's K0) and the error combination sum_s E_s K_s (times h by the caller). */
struct RK45 {
    template <typename T>
    LG_HD static void step(const Lorenz<T>& fun, const T y[3], const T K0[3], T h, T yn[3],
                           T K6[3], T ec[3])
    {
        using namespace rk45;
        T ys[3], K1[3], K2[3], K3[3], K4[3], K5[3];
        LG_EACH(j) ys[j] = y[j] + (T(A10) * K0[j]) * h;
        fun(ys, K1);
        LG_EACH(j) ys[j] = y[j] + (T(A20) * K0[j] + T(A21) * K1[j]) * h;
        fun(ys, K2);
        LG_EACH(j) ys[j] = y[j] + (T(A30) * K0[j] + T(A31) * K1[j] + T(A32) * K2[j]) * h;
        fun(ys, K3);
        LG_EACH(j) ys[j] = y[j] + (T(A40) * K0[j] + T(A41) * K1[j] + T(A42) * K2[j] +
                                   T(A43) * K3[j]) * h;
        fun(ys, K4);
        LG_EACH(j) ys[j] = y[j] + (T(A50) * K0[j] + T(A51) * K1[j] + T(A52) * K2[j] +
                                   T(A53) * K3[j] + T(A54) * K4[j]) * h;
        fun(ys, K5);
        LG_EACH(j) yn[j] = y[j] + h * (T(B0) * K0[j] + T(B2) * K2[j] + T(B3) * K3[j] +
                                       T(B4) * K4[j] + T(B5) * K5[j]);
        fun(yn, K6);
        LG_EACH(j) ec[j] = T(E0) * K0[j] + T(E2) * K2[j] + T(E3) * K3[j] + T(E4) * K4[j] +
                           T(E5) * K5[j] + T(E6) * K6[j];
    }
};

struct Tsit5 {
    template <typename T>
    LG_HD static void step(const Lorenz<T>& fun, const T y[3], const T K0[3], T h, T yn[3],
                           T K6[3], T ec[3])
    {
        using namespace tsit5;
        T ys[3], K1[3], K2[3], K3[3], K4[3], K5[3];
        LG_EACH(j) ys[j] = y[j] + (T(A10) * K0[j]) * h;
        fun(ys, K1);
        LG_EACH(j) ys[j] = y[j] + (T(A20) * K0[j] + T(A21) * K1[j]) * h;
        fun(ys, K2);
        LG_EACH(j) ys[j] = y[j] + (T(A30) * K0[j] + T(A31) * K1[j] + T(A32) * K2[j]) * h;
        fun(ys, K3);
        LG_EACH(j) ys[j] = y[j] + (T(A40) * K0[j] + T(A41) * K1[j] + T(A42) * K2[j] +
                                   T(A43) * K3[j]) * h;
        fun(ys, K4);
        LG_EACH(j) ys[j] = y[j] + (T(A50) * K0[j] + T(A51) * K1[j] + T(A52) * K2[j] +
                                   T(A53) * K3[j] + T(A54) * K4[j]) * h;
        fun(ys, K5);
        LG_EACH(j) yn[j] = y[j] + h * (T(B0) * K0[j] + T(B1) * K1[j] + T(B2) * K2[j] +
                                       T(B3) * K3[j] + T(B4) * K4[j] + T(B5) * K5[j]);
        fun(yn, K6);
        LG_EACH(j) ec[j] = T(E0) * K0[j] + T(E1) * K1[j] + T(E2) * K2[j] + T(E3) * K3[j] +
                           T(E4) * K4[j] + T(E5) * K5[j] + T(E6) * K6[j];
    }
};

constexpr int N_STAGES_ADAPTIVE = 6; /* new evaluations per step attempt (FSAL) */

/* ---- fixed-step RK4, one trajectory ---------------------------------------------- */
/* 0 x is 0 for a finite x and NaN otherwise: one test for the three components. */
template <typename T> LG_HD bool finite3(const T v[3])
{
    return lg_isfinite(T(0.0) * v[0] + T(0.0) * v[1] + T(0.0) * v[2]);
}

/* One step from (t, y, f = f(t, y)) to t_new: yn, and f(t_new, yn) into f. */
template <typename T>
LG_HD void rk4_step(const Lorenz<T>& fun, const T y[3], T f[3], T t, T t_new, T yn[3])
{
    using namespace rk4;
    const T h = t_new - t;
    /* A one-term stage as y + (c h) K: one fused multiply-add (A10 == A21, A32 == 1). */
    const T ha = T(A10) * h;
    T ys[3], K1[3], K2[3], K3[3];
    LG_EACH(j) ys[j] = y[j] + ha * f[j];
    fun(ys, K1);
    LG_EACH(j) ys[j] = y[j] + ha * K1[j];
    fun(ys, K2);
    LG_EACH(j) ys[j] = y[j] + h * K2[j];
    fun(ys, K3);
    LG_EACH(j) yn[j] = y[j] + h * (T(B0) * f[j] + T(B1) * K1[j] + T(B2) * K2[j] +
                                   T(B3) * K3[j]);
    fun(yn, f); /* K4 = f(t_new, y_new): the next step's K0 */
}

template <typename T>
LG_HD int rk4_one(const Lorenz<T>& fun, T y[3], T t0, T t1, T dt, long long n_fixed,
                  long long max_steps, long long* nfev_out)
{
    const T direction = t1 >= t0 ? T(1.0) : T(-1.0);
    T f[3];
    fun(y, f);
    long long nfev = 1;
    int status = 0;
    if (!(lg_isfinite(f[0]) && lg_isfinite(f[1]) && lg_isfinite(f[2]))) {
        *nfev_out = nfev;
        return -3;
    }
    if (t0 == t1) {
        *nfev_out = nfev;
        return 0;
    }
    const T dt_dir = dt * direction;
    const long long stop = n_fixed < max_steps ? n_fixed : max_steps;
    /* The end of step nacc: t_i = t0 + i dt direction, the last one exactly t1. */
    auto t_end = [=](long long nacc) {
        return nacc + 1 >= n_fixed ? t1 : t0 + T(nacc + 1) * dt_dir;
    };
    /* No finiteness test per step: a non-finite component stays non-finite (y + h K
     * is inf or NaN when y is), so the end state tells. If it is not finite, run
     * again from the start with the test, to stop at the step that failed. */
    const T y_start[3] = {y[0], y[1], y[2]}, f_start[3] = {f[0], f[1], f[2]};
    T t = t0, yn[3];
    long long nacc = 0;
    for (; nacc < stop; ++nacc) {
        const T t_new = t_end(nacc);
        rk4_step(fun, y, f, t, t_new, yn);
        LG_EACH(j) y[j] = yn[j];
        t = t_new;
    }
    if (!finite3(y)) {
        LG_EACH(j) y[j] = y_start[j];
        LG_EACH(j) f[j] = f_start[j];
        t = t0;
        for (nacc = 0; nacc < stop; ++nacc) {
            const T t_new = t_end(nacc);
            rk4_step(fun, y, f, t, t_new, yn);
            if (!finite3(yn)) {
                nfev += 4;
                status = -3;
                break;
            }
            LG_EACH(j) y[j] = yn[j];
            t = t_new;
        }
    }
    if (status == 0 && nacc < n_fixed)
        status = -2;
    nfev += 4 * nacc;
    *nfev_out = nfev;
    return status;
}

/* ---- scipy's select_initial_step (max_step = inf; one evaluation of f) ------------ */
template <typename T>
LG_HD T initial_step(const Lorenz<T>& fun, const T y[3], const T f[3], T t0, T t1,
                     T direction, T rtol, T atol)
{
    T sc[3], y1[3], f1[3];
    LG_EACH(j) sc[j] = atol + lg_abs(y[j]) * rtol;
    const T d0 = lg_sqrt((y[0] / sc[0]) * (y[0] / sc[0]) + (y[1] / sc[1]) * (y[1] / sc[1]) +
                         (y[2] / sc[2]) * (y[2] / sc[2])) / T(SQRTN);
    const T d1 = lg_sqrt((f[0] / sc[0]) * (f[0] / sc[0]) + (f[1] / sc[1]) * (f[1] / sc[1]) +
                         (f[2] / sc[2]) * (f[2] / sc[2])) / T(SQRTN);
    T h0 = (d0 < T(1e-5) || d1 < T(1e-5)) ? T(1e-6) : T(0.01) * d0 / d1;
    const T interval = lg_abs(t1 - t0);
    if (interval < h0)
        h0 = interval;
    LG_EACH(j) y1[j] = y[j] + h0 * direction * f[j];
    fun(y1, f1); /* at t0 + h0 direction: the system is autonomous */
    T df[3];
    LG_EACH(j) df[j] = (f1[j] - f[j]) / sc[j];
    const T d2 = lg_sqrt(df[0] * df[0] + df[1] * df[1] + df[2] * df[2]) / T(SQRTN) / h0;
    T h1;
    if (d1 <= T(1e-15) && d2 <= T(1e-15)) {
        h1 = h0 * T(1e-3);
        if (h1 < T(1e-6))
            h1 = T(1e-6);
    } else {
        const T dm = d2 > d1 ? d2 : d1;
        h1 = lg_pow(T(0.01) / dm, T(INV_ORDER));
    }
    T h_abs = T(100.0) * h0;
    if (h1 < h_abs)
        h_abs = h1;
    if (interval < h_abs)
        h_abs = interval;
    return h_abs;
}

/* ---- an adaptive pair with scipy's controller, one trajectory --------------------- */
template <typename M, typename T>
LG_HD int adaptive_one(const Lorenz<T>& fun, T y[3], T t0, T t1, T rtol, T atol,
                       long long max_steps, long long* nfev_out)
{
    const T direction = t1 >= t0 ? T(1.0) : T(-1.0);
    T f[3];
    fun(y, f);
    long long nfev = 1;
    if (!(lg_isfinite(f[0]) && lg_isfinite(f[1]) && lg_isfinite(f[2]))) {
        *nfev_out = nfev;
        return -3;
    }
    if (t0 == t1) {
        *nfev_out = nfev;
        return 0;
    }
    T h_abs = initial_step(fun, y, f, t0, t1, direction, rtol, atol);
    nfev += 1;

    T t = t0;
    T err = T(0.0);
    long long attempts = 0;
    bool rejected = false; /* gpuivp's status REJECTED: within a step, after a rejection */
    int status = 1;        /* running */
    while (status == 1) {
        const T min_step = T(10.0) * lg_abs(lg_nextafter(t, direction * Limits<T>::inf()) - t);
        if (!rejected && h_abs < min_step)
            h_abs = min_step;
        if (h_abs < min_step) {
            status = lg_isfinite(err) ? -1 : -3;
            break;
        }
        if (attempts >= max_steps) {
            status = -2;
            break;
        }
        ++attempts;
        T h = h_abs * direction;
        T t_new = t + h;
        if (direction * (t_new - t1) > T(0.0))
            t_new = t1;
        h = t_new - t;
        h_abs = lg_abs(h);

        T yn[3], fn[3], ec[3];
        M::step(fun, y, f, h, yn, fn, ec);
        nfev += N_STAGES_ADAPTIVE;

        T ee[3];
        LG_EACH(j)
        {
            const T a = lg_abs(y[j]);
            const T b = lg_abs(yn[j]);
            const T sc = atol + (a > b ? a : b) * rtol;
            ee[j] = ec[j] * h / sc;
        }
        err = lg_sqrt(ee[0] * ee[0] + ee[1] * ee[1] + ee[2] * ee[2]) / T(SQRTN);

        if (err < T(1.0)) {
            T factor;
            if (err == T(0.0)) {
                factor = T(MAX_FACTOR);
            } else {
                factor = T(SAFETY) * lg_pow(err, T(ERROR_EXPONENT));
                if (factor > T(MAX_FACTOR))
                    factor = T(MAX_FACTOR);
            }
            if (rejected && factor > T(1.0))
                factor = T(1.0);
            h_abs = h_abs * factor;
            rejected = false;
            LG_EACH(j)
            {
                y[j] = yn[j];
                f[j] = fn[j];
            }
            t = t_new;
            if (direction * (t - t1) >= T(0.0))
                status = 0;
        } else {
            T factor = T(SAFETY) * lg_pow(err, T(ERROR_EXPONENT));
            if (!(factor > T(MIN_FACTOR))) /* NaN too */
                factor = T(MIN_FACTOR);
            h_abs = h_abs * factor;
            rejected = true;
        }
    }
    *nfev_out = nfev;
    return status;
}

} // namespace lg

/* ---- entry points: kernels on the device, host functions (ctypes) in a host build --
 *
 * k trajectories; y0 and y are (3, k) with trajectory index fastest; rho (k,).
 * Outputs per trajectory: y (final state), nfev, status.
 */
#define LG_RK4_ENTRY(NAME, T)                                                              \
    extern "C" __global__ void NAME(long long k, const T* LG_RESTRICT y0,                  \
                                    const T* LG_RESTRICT rho, T sigma, T beta, T t0, T t1, \
                                    T dt, long long n_fixed, long long max_steps,          \
                                    T* LG_RESTRICT y, long long* LG_RESTRICT nfev,         \
                                    int* LG_RESTRICT status)                               \
    {                                                                                      \
        LG_FOR_EACH_TRAJECTORY(i, k)                                                       \
        {                                                                                  \
            const lg::Lorenz<T> fun = {sigma, rho[i], beta};                               \
            T yi[3] = {y0[i], y0[k + i], y0[2 * k + i]};                                   \
            long long nf;                                                                  \
            status[i] = lg::rk4_one<T>(fun, yi, t0, t1, dt, n_fixed, max_steps, &nf);      \
            nfev[i] = nf;                                                                  \
            y[i] = yi[0];                                                                  \
            y[k + i] = yi[1];                                                              \
            y[2 * k + i] = yi[2];                                                          \
        }                                                                                  \
    }

#define LG_ADAPTIVE_ENTRY(NAME, M, T)                                                      \
    extern "C" __global__ void NAME(long long k, const T* LG_RESTRICT y0,                  \
                                    const T* LG_RESTRICT rho, T sigma, T beta, T t0, T t1, \
                                    T rtol, T atol, long long max_steps,                   \
                                    T* LG_RESTRICT y, long long* LG_RESTRICT nfev,         \
                                    int* LG_RESTRICT status)                               \
    {                                                                                      \
        LG_FOR_EACH_TRAJECTORY(i, k)                                                       \
        {                                                                                  \
            const lg::Lorenz<T> fun = {sigma, rho[i], beta};                               \
            T yi[3] = {y0[i], y0[k + i], y0[2 * k + i]};                                   \
            long long nf;                                                                  \
            status[i] = lg::adaptive_one<M, T>(fun, yi, t0, t1, rtol, atol, max_steps, &nf); \
            nfev[i] = nf;                                                                  \
            y[i] = yi[0];                                                                  \
            y[k + i] = yi[1];                                                              \
            y[2 * k + i] = yi[2];                                                          \
        }                                                                                  \
    }

LG_RK4_ENTRY(lorenz_rk4_f32, float)
LG_RK4_ENTRY(lorenz_rk4_f64, double)
LG_ADAPTIVE_ENTRY(lorenz_rk45_f32, lg::RK45, float)
LG_ADAPTIVE_ENTRY(lorenz_rk45_f64, lg::RK45, double)
LG_ADAPTIVE_ENTRY(lorenz_tsit5_f32, lg::Tsit5, float)
LG_ADAPTIVE_ENTRY(lorenz_tsit5_f64, lg::Tsit5, double)
