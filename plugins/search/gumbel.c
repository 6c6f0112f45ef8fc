/* Gumbel-softmax (gumbel.h). */
#include "gumbel.h"

#include <math.h>

void gumbel_softmax(const float *z, int32_t n, double tau, et_rng *rng, float *g, float *w)
{
    double a[64], mx = -INFINITY, sum = 0;
    for (int32_t i = 0; i < n && i < 64; i++) {
        double noise = 0;
        if (rng) {
            double u = et_rng_uniform(rng);
            u = u <= 0 ? 1e-300 : u;
            noise = -log(-log(u) + 1e-300);
        }
        if (g)
            g[i] = (float)noise;
        a[i] = ((double)z[i] + noise) / tau;
        mx = a[i] > mx ? a[i] : mx;
    }
    for (int32_t i = 0; i < n && i < 64; i++) {
        a[i] = exp(a[i] - mx);
        sum += a[i];
    }
    for (int32_t i = 0; i < n && i < 64; i++)
        w[i] = (float)(a[i] / sum);
}

void gumbel_softmax_backward(const float *w, const float *dw, int32_t n, double tau, float *dz)
{
    double dot = 0;
    for (int32_t i = 0; i < n; i++)
        dot += (double)w[i] * dw[i];
    for (int32_t i = 0; i < n; i++)
        dz[i] = (float)((double)w[i] * ((double)dw[i] - dot) / tau);
}

int32_t gumbel_argmax(const float *z, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        best = z[i] > z[best] ? i : best;
    return best;
}

double gumbel_temperature(double start, double end, int64_t i, int64_t steps)
{
    if (steps <= 1)
        return end;
    return start * pow(end / start, (double)i / (double)(steps - 1));
}
