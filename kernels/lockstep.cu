// gpuivp: the fused stepper kernels of the `cupy` backend (gpuivp/engines/fused.py).
//
// The lockstep engine keeps every trajectory's state in (n, k) arrays, trajectory
// index fastest, and calls the user's vectorized `fun` on all k columns at once.
// Everything between two `fun` calls runs here, one thread per trajectory, so a step
// costs a handful of launches and no host synchronisation:
//
//   gpuivp_prepare  the step size of each column (scipy's clamps, fixed-step times),
//                   the minimum-step and max_steps failures;
//   gpuivp_stage    one stage input  y + h * sum_s coef[s] K[s]  and its time;
//   gpuivp_control  error norm, controller, accept/reject, counters;
//   gpuivp_commit   interpolation onto the t_eval points the step passed, then the
//                   accepted step becomes the state.
//
// The arithmetic is the numpy engine's (gpuivp/engines/lockstep.py) operation by
// operation, so both take the same steps; the cupy backend compiles with
// --fmad=false to keep it that way.
//
// Templated on the float type T and NK, the number of stage rows K holds
// (stages + 1 + the interpolant's extra stages). Integer state (status, counters,
// t_eval index) is int64, the numpy engine's; masks are int32. The host prepends
// the status codes (GPUIVP_RUNNING, ...) from gpuivp/_status.py and the step-size
// controller's constants (GPUIVP_SAFETY, ...) from gpuivp/methods/_controller.py.
//
// The method is data, never a name: the host passes the tableau's coefficient rows
// (stage inputs, error weights, interpolant matrix P and its y_new - y_old weights dy)
// as arrays, and two flags that are fields of the tableau: `combined` (Hairer's
// two-estimate error norm) and `alternating` (the interpolant's nested form).
//
// The file also builds as host C++ (GPUIVP_HOST, a loop over "threads"):
// tests/host_kernels.py runs these very kernels on the CPU against the numpy engine.

#ifdef GPUIVP_HOST
#include <math.h>
#include <limits>
#define __global__
#define __device__
#define __forceinline__ inline
struct gpuivp_uint3 { unsigned x, y, z; };
static gpuivp_uint3 threadIdx, blockIdx, blockDim;
template <typename T> inline T gx_inf() { return std::numeric_limits<T>::infinity(); }
#else
template <typename T> __device__ __forceinline__ T gx_inf();
template <> __device__ __forceinline__ float gx_inf<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double gx_inf<double>() {
    return __longlong_as_double(0x7ff0000000000000LL);
}
#endif

// Math by type, through the C names (the same on the host and in CUDA).
__device__ __forceinline__ float gx_fabs(float a) { return fabsf(a); }
__device__ __forceinline__ double gx_fabs(double a) { return fabs(a); }
__device__ __forceinline__ float gx_sqrt(float a) { return sqrtf(a); }
__device__ __forceinline__ double gx_sqrt(double a) { return sqrt(a); }
__device__ __forceinline__ float gx_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double gx_pow(double a, double b) { return pow(a, b); }
__device__ __forceinline__ float gx_nextafter(float a, float b) { return nextafterf(a, b); }
__device__ __forceinline__ double gx_nextafter(double a, double b) { return nextafter(a, b); }
// NumPy's maximum and minimum: NaN if either argument is NaN.
template <typename T> __device__ __forceinline__ T gx_max(T a, T b) {
    return (a != a || b != b) ? a + b : (a > b ? a : b);
}
template <typename T> __device__ __forceinline__ T gx_min(T a, T b) {
    return (a != a || b != b) ? a + b : (a < b ? a : b);
}
template <typename T> __device__ __forceinline__ bool gx_isfinite(T a) {
    return a - a == T(0);
}

typedef long long i64;

#define GPUIVP_THREAD_INDEX ((i64)blockIdx.x * blockDim.x + threadIdx.x)

// Sum of coef[s] * K[s][j] over the nonzero coefficients, in order of s (the numpy
// engine's `lincomb`). K is (NK, n, k); `at` is j * k + i.
template <typename T, int NK>
__device__ __forceinline__ T lincomb(const T* coef, int m, const T* K, i64 nk, i64 at) {
    T acc = T(0);
#pragma unroll
    for (int s = 0; s < NK; ++s) {
        if (s < m && coef[s] != T(0)) acc += coef[s] * K[s * nk + at];
    }
    return acc;
}

// The step size of each column, or live = 0 for a column that does not step.
template <typename T>
__global__ void gpuivp_prepare(i64 k, int fixed, T d, T t0, T t1, T dt, T max_step,
                               i64 max_steps, i64 n_fixed, const T* t, T* h_abs,
                               const T* err, i64* status, const i64* nacc, const i64* nrej,
                               T* h, T* t_new, int* live) {
    i64 i = GPUIVP_THREAD_INDEX;
    if (i >= k) return;
    T ti = t[i];
    h[i] = T(0);
    t_new[i] = ti;
    live[i] = 0;
    i64 st = status[i];
    if (st < GPUIVP_RUNNING) return;
    T tn;
    if (fixed) {
        i64 na = nacc[i];
        if (na >= max_steps) { status[i] = GPUIVP_FAIL_MAXSTEPS; return; }
        tn = (na + 1 >= n_fixed) ? t1 : t0 + T(na + 1) * dt * d;
    } else {
        T ha = h_abs[i];
        T min_step = T(GPUIVP_MIN_STEP_SPACINGS) * gx_fabs(gx_nextafter(ti, d * gx_inf<T>()) - ti);
        if (st == GPUIVP_RUNNING) {
            if (ha > max_step) ha = max_step;
            else if (ha < min_step) ha = min_step;
        }
        h_abs[i] = ha;
        if (ha < min_step) {
            status[i] = gx_isfinite(err[i]) ? GPUIVP_FAIL_STEP : GPUIVP_FAIL_NONFINITE;
            return;
        }
        if (nacc[i] + nrej[i] >= max_steps) { status[i] = GPUIVP_FAIL_MAXSTEPS; return; }
        tn = ti + ha * d;
        if (d * (tn - t1) > T(0)) tn = t1;
    }
    h[i] = tn - ti;
    t_new[i] = tn;
    live[i] = 1;
}

// One stage input: out_y = y + (sum_s coef[s] K[s]) * h and out_t = t + c * h.
template <typename T, int NK>
__global__ void gpuivp_stage(i64 n, i64 k, int m, const T* coef, const T* K, const T* y,
                             const T* h, const T* t, T c, T* out_y, T* out_t) {
    i64 i = GPUIVP_THREAD_INDEX;
    if (i >= k) return;
    T hi = h[i];
    i64 nk = n * k;
    for (i64 j = 0; j < n; ++j) {
        i64 at = j * k + i;
        out_y[at] = y[at] + lincomb<T, NK>(coef, m, K, nk, at) * hi;
    }
    out_t[i] = t[i] + c * hi;
}

// Error norm, controller, accept/reject of the live columns; accept[i] = 1 for an
// accepted step. Fixed steps accept every finite y_new.
// combined = 0: err = ||(sum_s e[s] K[s]) h / scale||_rms (e has NK entries);
// combined = 1: Hairer's combined norm (scipy's DOP853) of the estimate e[0:NK] and
// the lower-order one e[NK:2NK] (the tableau's e_low).
template <typename T, int NK>
__global__ void gpuivp_control(i64 n, i64 k, int fixed, int combined, int n_stages,
                               const T* e, const T* atol, T rtol, T expo, T rn, T nf,
                               const T* K, const T* y, const T* y_new, const T* h,
                               const int* live, i64* status, T* err, T* h_abs, i64* nrej,
                               i64* nfev, int* accept) {
    i64 i = GPUIVP_THREAD_INDEX;
    if (i >= k) return;
    accept[i] = 0;
    if (!live[i]) return;
    nfev[i] += n_stages;
    i64 nk = n * k;
    if (fixed) {
        bool ok = true;
        for (i64 j = 0; j < n; ++j) ok = ok && gx_isfinite(y_new[j * k + i]);
        if (ok) accept[i] = 1;
        else status[i] = GPUIVP_FAIL_NONFINITE;
        return;
    }
    T hi = h[i];
    T en;
    if (combined) {
        T s5 = T(0), s3 = T(0);
        for (i64 j = 0; j < n; ++j) {
            i64 at = j * k + i;
            T scale = atol[j] + gx_max(gx_fabs(y[at]), gx_fabs(y_new[at])) * rtol;
            T e5 = lincomb<T, NK>(e, NK, K, nk, at) / scale;
            T e3 = lincomb<T, NK>(e + NK, NK, K, nk, at) / scale;
            if (j == 0) { s5 = e5 * e5; s3 = e3 * e3; }
            else { s5 += e5 * e5; s3 += e3 * e3; }
        }
        // scipy squares the norms (np.linalg.norm(err5)**2), not the sums of squares.
        T r5 = gx_sqrt(s5), r3 = gx_sqrt(s3);
        s5 = r5 * r5;
        s3 = r3 * r3;
        en = (s5 == T(0) && s3 == T(0)) ? T(0)
             : gx_fabs(hi) * s5 / gx_sqrt((s5 + T(0.01) * s3) * nf);
    } else {
        T s = T(0);
        for (i64 j = 0; j < n; ++j) {
            i64 at = j * k + i;
            T scale = atol[j] + gx_max(gx_fabs(y[at]), gx_fabs(y_new[at])) * rtol;
            T ej = lincomb<T, NK>(e, NK, K, nk, at) * hi / scale;
            if (j == 0) s = ej * ej;
            else s += ej * ej;
        }
        en = gx_sqrt(s) / rn;
    }
    T ha = gx_fabs(hi);
    T factor;
    if (en < T(1)) {
        T grow = en == T(0) ? T(GPUIVP_MAX_FACTOR)
                 : gx_min(T(GPUIVP_MAX_FACTOR), T(GPUIVP_SAFETY) * gx_pow(en, expo));
        if (status[i] == GPUIVP_REJECTED) grow = gx_min(T(1), grow);
        factor = grow;
        status[i] = GPUIVP_RUNNING;
        accept[i] = 1;
    } else {
        T shrink = T(GPUIVP_SAFETY) * gx_pow(en, expo);
        factor = shrink > T(GPUIVP_MIN_FACTOR) ? shrink : T(GPUIVP_MIN_FACTOR);  // NaN: min, as scipy
        status[i] = GPUIVP_REJECTED;
        nrej[i] += 1;
    }
    err[i] = en;
    h_abs[i] = ha * factor;
}

// Stage sum of interpolant row q of component `at`: sum_s P[s, q] K[s] over the
// nonzero P[s, q] in order of s (P is (NK, n_rows)); `any` says whether there was one.
template <typename T, int NK>
__device__ __forceinline__ T interp_row(const T* P, int n_rows, int q, const T* K, i64 nk,
                                        i64 at, bool& any) {
    T row = T(0);
    any = false;
#pragma unroll
    for (int s = 0; s < NK; ++s) {
        T cf = P[s * n_rows + q];
        if (cf != T(0)) { row += cf * K[s * nk + at]; any = true; }
    }
    return row;
}

// The step's interpolant at x = (te - t) / h for component `at` (the tableau's
// Interpolant.rows and .evaluate): the power form y + h sum_q R_q x^(q+1) with
// R_q = sum_s P[s, q] K[s], or the alternating form (scipy's DOP853) with rows
// R_q = dy[q] (y_new - y) + h sum_s P[s, q] K[s], nested with factors x, 1 - x, ...
template <typename T, int NK>
__device__ __forceinline__ T interpolate(int alternating, int n_rows, const T* P,
                                         const T* dy, const T* K, i64 nk, i64 at, T yo,
                                         T yn, T hi, T x) {
    bool any;
    if (alternating) {
        T f0 = yn - yo;
        T acc = T(0);
        for (int r = n_rows - 1, q = 0; r >= 0; --r, ++q) {
            T sum = interp_row<T, NK>(P, n_rows, r, K, nk, at, any);
            T w = dy[r];
            T row = !any ? w * f0 : (w == T(0) ? hi * sum : hi * sum + w * f0);
            acc = (acc + row) * ((q % 2 == 0) ? x : T(1) - x);
        }
        return acc + yo;
    }
    T acc = T(0), xq = x;
    for (int q = 0; q < n_rows; ++q) {
        acc += interp_row<T, NK>(P, n_rows, q, K, nk, at, any) * xq;
        xq = xq * x;
    }
    return hi * acc + yo;
}

// Accepted columns: every t_eval point up to t_new from the interpolant (DOP853
// counts its extra stages there), then y = y_new, f = K[n_stages], t = t_new.
template <typename T, int NK>
__global__ void gpuivp_commit(i64 n, i64 k, int fixed, int alternating, int n_stages,
                              int n_extra, int n_rows, const T* P, const T* dy, i64 n_eval, const T* t_eval, T d, T t1,
                              i64 n_fixed, const T* K, T* y, const T* y_new, T* f, T* t,
                              const T* t_new, const T* h, const int* accept, i64* ie,
                              T* out_eval, i64* nacc, i64* status, i64* nfev) {
    i64 i = GPUIVP_THREAD_INDEX;
    if (i >= k || !accept[i]) return;
    i64 nk = n * k;
    T ti = t[i], tn = t_new[i], hi = h[i];
    i64 p = ie[i];
    if (p < n_eval && d * t_eval[p] <= d * tn && n_extra) nfev[i] += n_extra;
    for (; p < n_eval && d * t_eval[p] <= d * tn; ++p) {
        T x = (t_eval[p] - ti) / hi;
        for (i64 j = 0; j < n; ++j) {
            i64 at = j * k + i;
            out_eval[p * nk + at] = interpolate<T, NK>(alternating, n_rows, P, dy, K, nk, at,
                                                       y[at], y_new[at], hi, x);
        }
    }
    ie[i] = p;
    for (i64 j = 0; j < n; ++j) {
        i64 at = j * k + i;
        y[at] = y_new[at];
        f[at] = K[n_stages * nk + at];
    }
    t[i] = tn;
    i64 na = nacc[i] + 1;
    nacc[i] = na;
    if (fixed ? na >= n_fixed : d * (tn - t1) >= T(0)) status[i] = 0;
}
