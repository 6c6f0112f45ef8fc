/* A plain evaluator of attention graphs: see graph_eval.h. */
#include "graph_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/plugin.h>

int graph_eval(const opgraph *g, unsigned ctx, int32_t len, int32_t dim, const float *q,
               const float *k, const float *v, float *out)
{
    unsigned need = OPGRAPH_CTX_SAME_LEN | OPGRAPH_CTX_SAME_DIM;
    opgraph_shapes sh;
    if ((ctx & need) != need || len < 1 || dim < 1 ||
        opgraph_validate(g, NULL, ctx, &sh, NULL, 0))
        return ET_STATUS_ERR_USAGE;
    int64_t rows[OPGRAPH_MAX_NODES], cols[OPGRAPH_MAX_NODES];
    float *val[OPGRAPH_MAX_NODES] = {0};
    int rc = 0;
    const float scale = 1.0f / sqrtf((float)dim);
    for (int32_t i = 0; i < g->n && !rc; i++) {
        const opgraph_node *nd = &g->node[i];
        int32_t a = nd->arg[0], b = nd->arg[1];
        rows[i] = opgraph_axis_size(sh.rows[i], len, len, dim, dim);
        cols[i] = opgraph_axis_size(sh.cols[i], len, len, dim, dim);
        int64_t R = rows[i], C = cols[i];
        float *x = val[i] = malloc(sizeof *x * (size_t)(R * C));
        if (!x) {
            rc = ET_STATUS_ERR_NOMEM;
            break;
        }
        switch (nd->op) {
        case OPGRAPH_OP_Q: memcpy(x, q, sizeof *x * (size_t)(R * C)); break;
        case OPGRAPH_OP_K: memcpy(x, k, sizeof *x * (size_t)(R * C)); break;
        case OPGRAPH_OP_V: memcpy(x, v, sizeof *x * (size_t)(R * C)); break;
        case OPGRAPH_OP_TRANSPOSE:
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++)
                    x[r * C + c] = val[a][c * R + r];
            break;
        case OPGRAPH_OP_MATMUL: {
            int64_t inner = cols[a];
            int bounded = opgraph_axis_is_ordered(sh.cols[a], ctx);
            int by_row = bounded && opgraph_axis_is_ordered(sh.rows[i], ctx);
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++) {
                    int64_t lim = !bounded ? inner : by_row ? r + 1 : c + 1;
                    if (lim > inner)
                        lim = inner;
                    float s = 0.0f;
                    for (int64_t t = 0; t < lim; t++)
                        s += val[a][r * inner + t] * val[b][t * C + c];
                    x[r * C + c] = s;
                }
            break;
        }
        case OPGRAPH_OP_SOFTMAX: {
            int ordered = opgraph_axis_is_ordered(sh.cols[i], ctx);
            for (int64_t r = 0; r < R; r++) {
                const float *in = val[a] + r * C;
                float *o = x + r * C;
                int64_t lim = ordered && r + 1 < C ? r + 1 : C;
                float mx = -INFINITY;
                for (int64_t c = 0; c < lim; c++)
                    mx = fmaxf(mx, in[c]);
                float s = 0.0f;
                for (int64_t c = 0; c < C; c++) {
                    o[c] = c < lim ? expf(in[c] - mx) : 0.0f;
                    s += o[c];
                }
                for (int64_t c = 0; c < lim; c++)
                    o[c] /= s;
            }
            break;
        }
        case OPGRAPH_OP_ADD:
        case OPGRAPH_OP_MUL:
        case OPGRAPH_OP_MAX:
            for (int64_t e = 0; e < R * C; e++)
                x[e] = opgraph_binary(nd->op, val[a][e], val[b][e]);
            break;
        default:
            for (int64_t e = 0; e < R * C; e++)
                x[e] = opgraph_unary(nd->op, val[a][e], scale);
            break;
        }
    }
    if (!rc)
        memcpy(out, val[g->n - 1], sizeof *out * (size_t)len * (size_t)dim);
    for (int32_t i = 0; i < g->n; i++)
        free(val[i]);
    return rc;
}

int graph_output_finite(const opgraph *g, unsigned ctx, int32_t len, int32_t dim, double scale,
                        et_rng *rng)
{
    if (len < 1 || dim < 1)
        return ET_STATUS_ERR_USAGE;
    size_t m = (size_t)len * (size_t)dim;
    float *buf = malloc(sizeof *buf * 4 * m);
    if (!buf)
        return ET_STATUS_ERR_NOMEM;
    for (size_t i = 0; i < 3 * m; i++)
        buf[i] = (float)(scale * et_rng_normal(rng));
    int rc = graph_eval(g, ctx, len, dim, buf, buf + m, buf + 2 * m, buf + 3 * m);
    if (!rc) {
        rc = 1;
        for (size_t i = 0; i < m && rc; i++)
            rc = isfinite(buf[3 * m + i]) != 0;
    }
    free(buf);
    return rc;
}
