/* Finite-difference gradient checking for the engine tests: central
 * differences of a scalar loss evaluated in float kernels and summed in
 * double, compared with the analytic gradient as
 *   err = ||g_fd - g|| / max(||g_fd||, floor)
 * over the checked entries (all, or a deterministic subset for big
 * tensors). Tolerances are stated where each check is called. */
#ifndef ETNAS_TESTS_FDCHECK_H
#define ETNAS_TESTS_FDCHECK_H

#include <math.h>
#include <stdint.h>

#include <etnas/rng.h>

typedef double (*fd_loss_fn)(void *ctx);

/* x: the n floats to perturb; grad: analytic d loss / d x; checks at most
 * max_checks entries (spread evenly). h: step. Returns err as above. */
static inline double fd_check(fd_loss_fn loss, void *ctx, float *x, const float *grad, int64_t n,
                              int64_t max_checks, float h)
{
    double num = 0, den = 0;
    int64_t step = n > max_checks ? n / max_checks : 1;
    for (int64_t i = 0; i < n; i += step) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = loss(ctx);
        x[i] = keep - h;
        double lm = loss(ctx);
        x[i] = keep;
        double g = (lp - lm) / (2.0 * (double)h);
        num += (g - grad[i]) * (g - grad[i]);
        den += g * g;
    }
    return sqrt(num) / fmax(sqrt(den), 1e-6);
}

static inline void fd_fill(float *x, int64_t n, et_rng *r, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(et_rng_normal(r) * scale);
}

/* Sum_i w_i * y_i in double: a random linear "loss" on an output. */
static inline double fd_dot(const float *w, const float *y, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)w[i] * y[i];
    return s;
}

#endif
