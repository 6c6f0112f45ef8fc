/* Gumbel-softmax over groups of architecture logits (PAR, DARTS-style
 * relaxations): w = softmax((z + g) / tau), g_i = -log(-log u_i) with u
 * uniform in (0, 1) from a seeded stream, and its backward. Groups are
 * contiguous runs of logits (a layer's blocks, a layer's operators). */
#ifndef ETNAS_PLUGINS_GUMBEL_H
#define ETNAS_PLUGINS_GUMBEL_H

#include <stdint.h>

#include <etnas/rng.h>

/* w (n) = softmax((z + g) / tau) of one group; g (n, may be NULL: no
 * noise) gets the noise drawn from rng (NULL: none). */
void gumbel_softmax(const float *z, int32_t n, double tau, et_rng *rng, float *g, float *w);

/* dz (n) = d loss / d z from dw = d loss / d w for w = softmax((z + g) / tau):
 * dz_i = w_i (dw_i - sum_j w_j dw_j) / tau. */
void gumbel_softmax_backward(const float *w, const float *dw, int32_t n, double tau, float *dz);

/* Index of the largest logit (the first on ties). */
int32_t gumbel_argmax(const float *z, int32_t n);

/* Temperature of step i of `steps`: start * (end / start)^(i / (steps - 1)). */
double gumbel_temperature(double start, double end, int64_t i, int64_t steps);

#endif
