/* The engine's layer kernels: forward/backward pairs on raw float arrays,
 * llm.c style. Shapes are in the comments; row strides ("ld") let a kernel
 * work on a top-left slice of a larger (supernet) weight without copying.
 * Backward functions ACCUMULATE into parameter gradients (dW, db, dgamma,
 * ...) and into input gradients (dinp), so shared inputs and soft choices
 * sum naturally; callers zero them once per step. */
#ifndef ETNAS_CORE_LAYERS_H
#define ETNAS_CORE_LAYERS_H

#include <stdint.h>

/* out (N,OC) ld ldo = inp (N,C) ld ldi . W[:OC,:C]^T (ld ldw) + bias[:OC]
 * (bias may be NULL). Through cblas_sgemm. */
void et_linear_forward(float *out, int64_t ldo, const float *inp, int64_t ldi, const float *w,
                       int64_t ldw, const float *bias, int64_t n, int64_t c, int64_t oc);
/* dinp (N,C) += dout (N,OC) . W; dW (OC,C) += dout^T . inp; dbias += colsum(dout).
 * Any of dinp, dw, dbias may be NULL to skip it. */
void et_linear_backward(float *dinp, int64_t lddi, float *dw, int64_t lddw, float *dbias,
                        const float *dout, int64_t lddo, const float *inp, int64_t ldi,
                        const float *w, int64_t ldw, int64_t n, int64_t c, int64_t oc);
/* The same two with plain loops: the reference the tests hold them to. */
void et_linear_forward_naive(float *out, int64_t ldo, const float *inp, int64_t ldi,
                             const float *w, int64_t ldw, const float *bias, int64_t n, int64_t c,
                             int64_t oc);
void et_linear_backward_naive(float *dinp, int64_t lddi, float *dw, int64_t lddw, float *dbias,
                              const float *dout, int64_t lddo, const float *inp, int64_t ldi,
                              const float *w, int64_t ldw, int64_t n, int64_t c, int64_t oc);

/* out (N,C) = (inp - mean) * rstd * gamma + beta; saves mean (N), rstd (N). */
void et_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int64_t n, int64_t c);
/* dinp (N,C) += ...; dgamma (C) += ...; dbeta (C) += ... */
void et_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean,
                           const float *rstd, int64_t n, int64_t c);

/* e^x for float x, written so the compiler can vectorise loops over it
 * (range reduction by ln 2 and a degree-6 polynomial); relative error below
 * 3e-7 on [-87, 88], 0 below, +inf above. */
float et_expf(float x);

/* Activations, elementwise over count values: out = f(inp);
 * backward dinp += f'(inp) * dout. kind: et_activation. */
void et_activation_forward(int kind, float *out, const float *inp, int64_t count);
void et_activation_backward(int kind, float *dinp, const float *inp, const float *dout,
                            int64_t count);

/* Inverted dropout with a mask regenerated from (seed, stream) instead of
 * stored: x (count) *= keep/(1-p) in place. Backward applies the same mask. */
void et_dropout_forward(float *x, int64_t count, float p, uint64_t seed, uint64_t stream);
void et_dropout_backward(float *dx, int64_t count, float p, uint64_t seed, uint64_t stream);

/* Softmax cross-entropy with label smoothing eps over V classes.
 * logits (N,V) ld ldl, targets (N) with -1 = ignore. Returns the summed loss
 * over counted rows and writes dlogits (N,V) = d(sum loss)/dlogits * scale
 * (rows with target -1 get 0). dlogits may alias logits. */
double et_cross_entropy(float *dlogits, const float *logits, int64_t ldl, const int32_t *targets,
                        int64_t n, int64_t v, float eps, float scale, int64_t *counted);

/* Depthwise convolution along time, each example apart: channel c of
 * out[b, t] = sum_{j<K} w[j, c] * inp[b, t - j + off, c], off = 0 when
 * causal (taps t, t-1, ..., t-K+1) else K/2 (centred); positions outside
 * 0..len[b]-1 (len NULL: T) read 0, so padding never leaks in.
 * inp, out (B,T,C) with row stride ldx; w (K,C) with row stride ldw. Plain
 * loops: the kernel is its own reference. Backward accumulates dinp and dw. */
void et_dwconv_forward(float *out, const float *inp, int64_t ldx, const float *w, int64_t ldw,
                       const int32_t *len, int64_t b, int64_t t, int64_t c, int32_t k, int causal);
void et_dwconv_backward(float *dinp, float *dw, int64_t lddw, const float *dout,
                        const float *inp, int64_t ldx, const float *w, int64_t ldw,
                        const int32_t *len, int64_t b, int64_t t, int64_t c, int32_t k,
                        int causal);

/* Mean over T rows per sequence: out (B,C) = mean_t inp (B,T,C) for t < len[b]
 * (len NULL = all T). Backward: dinp += dout / len. */
void et_meanpool_forward(float *out, const float *inp, const int32_t *len, int64_t b, int64_t t,
                         int64_t c);
void et_meanpool_backward(float *dinp, const float *dout, const int32_t *len, int64_t b,
                          int64_t t, int64_t c);

#endif
