/* A plain evaluator of attention graphs (opgraph.h) for the checks OP-NAS
 * makes before training a graph (spec/search.md): one head of
 * self-attention, L = S = len and d = dv = dim, no padding, the causal
 * order applied where the graph's context says so (the rules of opgraph.h).
 * Naive loops in float, as the engine computes; not a training path. */
#ifndef ETNAS_PLUGINS_GRAPH_EVAL_H
#define ETNAS_PLUGINS_GRAPH_EVAL_H

#include <stdint.h>

#include <etnas/rng.h>

#include "opgraph.h"

/* out (len, dim) from q, k, v (len, dim each, row-major) for a graph valid
 * under ctx (which must hold OPGRAPH_CTX_SAME_LEN and OPGRAPH_CTX_SAME_DIM).
 * Returns 0, or a negative et_status for an invalid graph or no memory. */
int graph_eval(const opgraph *g, unsigned ctx, int32_t len, int32_t dim, const float *q,
               const float *k, const float *v, float *out);

/* Evaluate on Q, K, V drawn from N(0, scale^2) with rng: 1 when every
 * output is finite, 0 when one is not, or a negative et_status. */
int graph_output_finite(const opgraph *g, unsigned ctx, int32_t len, int32_t dim, double scale,
                        et_rng *rng);

#endif
