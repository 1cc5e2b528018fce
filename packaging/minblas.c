/*
 * minblas: the CBLAS routines NumPy's core calls, in plain C, to stand in for the
 * 25 MB OpenBLAS that NumPy's Linux wheels ship (packaging/slim.py, "mini BLAS").
 *
 * NumPy calls BLAS for dot, vdot, inner, matmul and the like on float and complex
 * arrays (axpy, dot, dotc/dotu, gemv, gemm, syrk); this app does that only on small
 * arrays (an audio level, np.dot of one frame), where reference loops are as good.
 * Everything else OpenBLAS exports (LAPACK: numpy.linalg) becomes a function that
 * says so and aborts: nothing in the app calls it, and a wrong answer would be worse
 * than a clear stop. packaging/test_minblas.py checks the results against NumPy's own.
 *
 * Built by slim.py with -DPREFIX=... -DSUFFIX=... -DBLASINT=... taken from the symbol
 * names of the library it replaces (NumPy 2: scipy_cblas_dgemm64_, 64-bit integers).
 */
#include <complex.h>
#include <stddef.h>
#include <stdint.h>

#ifndef BLASINT
#define BLASINT int64_t
#endif
#define CAT_(a, b, c) a##b##c
#define CAT(a, b, c) CAT_(a, b, c)
#define NAME(x) CAT(PREFIX, x, SUFFIX)
#define EXPORT __attribute__((visibility("default")))

typedef BLASINT blasint;
enum { RowMajor = 101, ColMajor = 102 };
enum { NoTrans = 111, Trans = 112, ConjTrans = 113, ConjNoTrans = 114 };
enum { Upper = 121, Lower = 122 };

/* Element k of a vector with stride inc (negative: from the end, as BLAS says). */
#define AT(x, n, inc, k) ((x)[((inc) >= 0 ? (k) : ((n) - 1 - (k))) * ((inc) >= 0 ? (inc) : -(inc))])

static inline int is_trans(int op) { return op == Trans || op == ConjTrans; }
static inline int is_conj(int op) { return op == ConjTrans || op == ConjNoTrans; }

/* Row-major is column-major of the transpose: flip the operation. */
static inline int flip(int op) {
    switch (op) {
    case NoTrans: return Trans;
    case Trans: return NoTrans;
    case ConjTrans: return ConjNoTrans;
    default: return ConjTrans;
    }
}

#define REAL_CONJ(v) (v)
#define CPLX_CONJ(v) conj(v)

/* One set of routines per type: T the type, S its scalar argument form. */
#define ROUTINES(P, T, CONJ)                                                              \
    static void P##axpy_(blasint n, T alpha, const T *x, blasint incx, T *y, blasint incy) { \
        for (blasint k = 0; k < n; k++) AT(y, n, incy, k) += alpha * AT(x, n, incx, k);    \
    }                                                                                      \
    static T P##dot_(blasint n, const T *x, blasint incx, const T *y, blasint incy,        \
                     int conj_x) {                                                         \
        T sum = 0;                                                                         \
        for (blasint k = 0; k < n; k++) {                                                  \
            T a = AT(x, n, incx, k);                                                       \
            sum += (conj_x ? CONJ(a) : a) * AT(y, n, incy, k);                             \
        }                                                                                  \
        return sum;                                                                        \
    }                                                                                      \
    /* Column-major: op(A) is m x k. */                                                    \
    static inline T P##el_(const T *a, blasint lda, int op, blasint i, blasint j) {       \
        T v = is_trans(op) ? a[j + i * lda] : a[i + j * lda];                              \
        return is_conj(op) ? CONJ(v) : v;                                                  \
    }                                                                                      \
    static void P##gemm_(int ta, int tb, blasint m, blasint n, blasint k, T alpha,         \
                         const T *a, blasint lda, const T *b, blasint ldb, T beta, T *c,   \
                         blasint ldc) {                                                    \
        for (blasint j = 0; j < n; j++)                                                    \
            for (blasint i = 0; i < m; i++) {                                              \
                T sum = 0;                                                                 \
                for (blasint l = 0; l < k; l++)                                            \
                    sum += P##el_(a, lda, ta, i, l) * P##el_(b, ldb, tb, l, j);            \
                T *out = &c[i + j * ldc];                                                  \
                *out = alpha * sum + (beta == (T)0 ? (T)0 : beta * *out);                  \
            }                                                                              \
    }                                                                                      \
    static void P##gemv_(int ta, blasint m, blasint n, T alpha, const T *a, blasint lda,   \
                         const T *x, blasint incx, T beta, T *y, blasint incy) {           \
        blasint rows = is_trans(ta) ? n : m, cols = is_trans(ta) ? m : n;                  \
        for (blasint i = 0; i < rows; i++) {                                               \
            T sum = 0;                                                                     \
            for (blasint j = 0; j < cols; j++)                                             \
                sum += P##el_(a, lda, ta, i, j) * AT(x, cols, incx, j);                    \
            T *out = &AT(y, rows, incy, i);                                                \
            *out = alpha * sum + (beta == (T)0 ? (T)0 : beta * *out);                      \
        }                                                                                  \
    }                                                                                      \
    /* C (n x n, one triangle) = alpha op(A) op(A)^T + beta C; op(A) is n x k. */          \
    static void P##syrk_(int uplo, int tr, blasint n, blasint k, T alpha, const T *a,      \
                         blasint lda, T beta, T *c, blasint ldc) {                         \
        int op = tr == NoTrans ? NoTrans : Trans;                                          \
        for (blasint j = 0; j < n; j++)                                                    \
            for (blasint i = (uplo == Upper ? 0 : j); i < (uplo == Upper ? j + 1 : n); i++) { \
                T sum = 0;                                                                 \
                for (blasint l = 0; l < k; l++)                                            \
                    sum += P##el_(a, lda, op, i, l) * P##el_(a, lda, op, j, l);            \
                T *out = &c[i + j * ldc];                                                  \
                *out = alpha * sum + (beta == (T)0 ? (T)0 : beta * *out);                  \
            }                                                                              \
    }

ROUTINES(s, float, REAL_CONJ)
ROUTINES(d, double, REAL_CONJ)
ROUTINES(c, float complex, CPLX_CONJ)
ROUTINES(z, double complex, CPLX_CONJ)

/* The CBLAS entry points, row- or column-major. */
#define GEMM(P, T, S, GET)                                                                 \
    EXPORT void NAME(cblas_##P##gemm)(int order, int ta, int tb, blasint m, blasint n,     \
                                      blasint k, S alpha, const T *a, blasint lda,          \
                                      const T *b, blasint ldb, S beta, T *c, blasint ldc) { \
        if (order == RowMajor)                                                             \
            P##gemm_(tb, ta, n, m, k, GET(alpha), b, ldb, a, lda, GET(beta), c, ldc);      \
        else                                                                               \
            P##gemm_(ta, tb, m, n, k, GET(alpha), a, lda, b, ldb, GET(beta), c, ldc);      \
    }
#define GEMV(P, T, S, GET)                                                                 \
    EXPORT void NAME(cblas_##P##gemv)(int order, int ta, blasint m, blasint n, S alpha,    \
                                      const T *a, blasint lda, const T *x, blasint incx,   \
                                      S beta, T *y, blasint incy) {                        \
        if (order == RowMajor)                                                             \
            P##gemv_(flip(ta), n, m, GET(alpha), a, lda, x, incx, GET(beta), y, incy);     \
        else                                                                               \
            P##gemv_(ta, m, n, GET(alpha), a, lda, x, incx, GET(beta), y, incy);           \
    }
#define SYRK(P, T, S, GET)                                                                 \
    EXPORT void NAME(cblas_##P##syrk)(int order, int uplo, int tr, blasint n, blasint k,   \
                                      S alpha, const T *a, blasint lda, S beta, T *c,      \
                                      blasint ldc) {                                       \
        if (order == RowMajor)                                                             \
            P##syrk_(uplo == Upper ? Lower : Upper, tr == NoTrans ? Trans : NoTrans, n, k,  \
                     GET(alpha), a, lda, GET(beta), c, ldc);                               \
        else                                                                               \
            P##syrk_(uplo, tr, n, k, GET(alpha), a, lda, GET(beta), c, ldc);               \
    }
#define AXPY(P, T, S, GET)                                                                 \
    EXPORT void NAME(cblas_##P##axpy)(blasint n, S alpha, const T *x, blasint incx, T *y,  \
                                      blasint incy) {                                      \
        P##axpy_(n, GET(alpha), x, incx, y, incy);                                         \
    }

#define VALUE(v) (v)
#define FLOAT_PTR(v) (*(const float complex *)(v))
#define DOUBLE_PTR(v) (*(const double complex *)(v))

GEMM(s, float, float, VALUE)
GEMM(d, double, double, VALUE)
GEMM(c, float complex, const void *, FLOAT_PTR)
GEMM(z, double complex, const void *, DOUBLE_PTR)
GEMV(s, float, float, VALUE)
GEMV(d, double, double, VALUE)
GEMV(c, float complex, const void *, FLOAT_PTR)
GEMV(z, double complex, const void *, DOUBLE_PTR)
SYRK(s, float, float, VALUE)
SYRK(d, double, double, VALUE)
SYRK(c, float complex, const void *, FLOAT_PTR)
SYRK(z, double complex, const void *, DOUBLE_PTR)
AXPY(s, float, float, VALUE)
AXPY(d, double, double, VALUE)
AXPY(c, float complex, const void *, FLOAT_PTR)
AXPY(z, double complex, const void *, DOUBLE_PTR)

EXPORT float NAME(cblas_sdot)(blasint n, const float *x, blasint incx, const float *y,
                              blasint incy) {
    return sdot_(n, x, incx, y, incy, 0);
}
EXPORT double NAME(cblas_ddot)(blasint n, const double *x, blasint incx, const double *y,
                               blasint incy) {
    return ddot_(n, x, incx, y, incy, 0);
}
#define DOT_SUB(P, T, NAME_, CONJ_X)                                                       \
    EXPORT void NAME(NAME_)(blasint n, const void *x, blasint incx, const void *y,         \
                            blasint incy, void *ret) {                                     \
        *(T *)ret = P##dot_(n, (const T *)x, incx, (const T *)y, incy, CONJ_X);            \
    }
DOT_SUB(c, float complex, cblas_cdotu_sub, 0)
DOT_SUB(c, float complex, cblas_cdotc_sub, 1)
DOT_SUB(z, double complex, cblas_zdotu_sub, 0)
DOT_SUB(z, double complex, cblas_zdotc_sub, 1)
