/* Beam search over et_model_decode_* (beam.h). Per step, each live
 * sentence ranks its beam x V continuations, takes the best 2 x beam:
 * an eos (or any token at the length limit) finishes a hypothesis, the
 * others fill the next beam. Histories move with their hypotheses. */
#include "beam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct cand {
    float score;
    int32_t row, token;
} cand;

typedef struct layout {
    float *score;      /* (rows) summed log-probability of each live hypothesis */
    int32_t *tokens;   /* (rows) next input */
    int32_t *from;     /* (rows) reorder map */
    int32_t *hist, *hist2; /* (rows, L) tokens so far */
    float *best;       /* (B) best finished normalised score */
    int32_t *best_len; /* (B) */
    int32_t *best_tok; /* (B, L) */
    int32_t *finished; /* (B) finished hypotheses */
    int32_t *limit;    /* (B) length limit */
    cand *c;           /* (2 * beam) candidates of one sentence */
    float *next_score; /* (rows) */
    int32_t *next_tok; /* (rows) */
} layout;

static int64_t plan(layout *l, char *base, int64_t rows, int64_t B, int64_t L, int64_t beam)
{
    int64_t o = 0;
#define PLACE(field, count)                                                                   \
    do {                                                                                      \
        l->field = base ? (void *)(base + o) : NULL;                                          \
        o += ((int64_t)sizeof(*l->field) * (count) + 63) & ~(int64_t)63;                     \
    } while (0)
    PLACE(score, rows);
    PLACE(tokens, rows);
    PLACE(from, rows);
    PLACE(hist, rows * L);
    PLACE(hist2, rows * L);
    PLACE(best, B);
    PLACE(best_len, B);
    PLACE(best_tok, B * L);
    PLACE(finished, B);
    PLACE(limit, B);
    PLACE(c, 2 * beam);
    PLACE(next_score, rows);
    PLACE(next_tok, rows);
#undef PLACE
    return o;
}

/* Keep the n best of k candidates (partial selection sort, n small). */
static void top_n(cand *keep, int32_t n, const float *lp, int64_t V, float base, int32_t row,
                  int32_t *have)
{
    for (int64_t v = 0; v < V; v++) {
        float s = base + lp[v];
        if (*have == n && s <= keep[n - 1].score)
            continue;
        int32_t i = *have < n ? (*have)++ : n - 1;
        while (i > 0 && keep[i - 1].score < s) {
            keep[i] = keep[i - 1];
            i--;
        }
        keep[i] = (cand){s, row, (int32_t)v};
    }
}

int et_beam_search(et_beam *bs, et_model *m, const et_batch *src, const et_beam_config *cfg,
                   int32_t *out, int32_t out_stride, int32_t *out_len, char **err)
{
    int64_t B = src->size, K = cfg->beam, rows = B * K;
    if (K < 1 || cfg->max_len < 1)
        return et_fail(err, ET_STATUS_ERR_USAGE, "beam search: beam %d, max_len %d", cfg->beam,
                       cfg->max_len);
    int32_t L = 1;
    layout lay;
    int64_t need = plan(&lay, NULL, rows, B, cfg->max_len, K);
    if (need > bs->cap) {
        void *nm = realloc(bs->mem, (size_t)need);
        if (!nm)
            return et_fail(err, ET_STATUS_ERR_NOMEM, "beam search: out of memory");
        bs->mem = nm;
        bs->cap = need;
    }
    plan(&lay, bs->mem, rows, B, cfg->max_len, K);
    for (int64_t b = 0; b < B; b++) {
        double n = src->src_lens ? src->src_lens[b] : src->src_len;
        double lim = floor(cfg->max_len_a * n) + cfg->max_len_b;
        lay.limit[b] = lim < 1 ? 1 : lim > cfg->max_len ? cfg->max_len : (int32_t)lim;
        L = lay.limit[b] > L ? lay.limit[b] : L;
        lay.best[b] = -INFINITY;
        lay.best_len[b] = 0;
        lay.finished[b] = 0;
    }
    int rc = et_model_decode_begin(m, src, cfg->beam, L, err);
    if (rc)
        return rc;
    for (int64_t i = 0; i < rows; i++) {
        lay.tokens[i] = cfg->bos;
        lay.score[i] = i % K ? -INFINITY : 0.0f; /* the first step expands beam 0 only */
    }
    for (int32_t t = 0; t < L; t++) {
        const float *lp;
        if ((rc = et_model_decode_step(m, lay.tokens, t, &lp, err)))
            return rc;
        int live = 0;
        for (int64_t b = 0; b < B; b++) {
            int64_t r0 = b * K;
            if (lay.finished[b] >= K || t >= lay.limit[b]) {
                for (int64_t k = 0; k < K; k++) {
                    lay.from[r0 + k] = (int32_t)(r0 + k);
                    lay.next_tok[r0 + k] = cfg->eos;
                    lay.next_score[r0 + k] = -INFINITY;
                }
                continue;
            }
            int32_t have = 0, n = (int32_t)(2 * K);
            for (int64_t k = 0; k < K; k++)
                if (isfinite(lay.score[r0 + k]))
                    top_n(lay.c, n, lp + (r0 + k) * cfg->vocab, cfg->vocab, lay.score[r0 + k],
                          (int32_t)(r0 + k), &have);
            int last = t + 1 >= lay.limit[b];
            int64_t filled = 0;
            for (int32_t i = 0; i < have && filled < K; i++) {
                const cand *c = &lay.c[i];
                if (c->token == cfg->eos || last) {
                    if (lay.finished[b] >= K)
                        continue;
                    float norm = c->score / powf((float)(t + 1), cfg->lenpen);
                    lay.finished[b]++;
                    if (norm > lay.best[b]) {
                        lay.best[b] = norm;
                        int32_t len = c->token == cfg->eos ? t : t + 1;
                        lay.best_len[b] = len;
                        int32_t *dst = lay.best_tok + b * cfg->max_len;
                        memcpy(dst, lay.hist + (int64_t)c->row * cfg->max_len,
                               sizeof *dst * (size_t)t);
                        if (c->token != cfg->eos)
                            dst[t] = c->token;
                    }
                    continue;
                }
                lay.from[r0 + filled] = c->row;
                lay.next_tok[r0 + filled] = c->token;
                lay.next_score[r0 + filled] = c->score;
                filled++;
            }
            for (; filled < K; filled++) {
                lay.from[r0 + filled] = (int32_t)r0;
                lay.next_tok[r0 + filled] = cfg->eos;
                lay.next_score[r0 + filled] = -INFINITY;
            }
            live |= lay.finished[b] < K && t + 1 < lay.limit[b];
        }
        for (int64_t i = 0; i < rows; i++) {
            memcpy(lay.hist2 + i * cfg->max_len, lay.hist + (int64_t)lay.from[i] * cfg->max_len,
                   sizeof(int32_t) * (size_t)t);
            lay.hist2[i * cfg->max_len + t] = lay.next_tok[i];
            lay.tokens[i] = lay.next_tok[i];
            lay.score[i] = lay.next_score[i];
        }
        int32_t *h = lay.hist;
        lay.hist = lay.hist2;
        lay.hist2 = h;
        if (!live)
            break;
        et_model_decode_reorder(m, lay.from);
    }
    for (int64_t b = 0; b < B; b++) {
        int32_t n = lay.best_len[b] < out_stride ? lay.best_len[b] : out_stride;
        memcpy(out + b * out_stride, lay.best_tok + b * cfg->max_len, sizeof *out * (size_t)n);
        out_len[b] = n;
    }
    return 0;
}

void et_beam_free(et_beam *bs)
{
    free(bs->mem);
    bs->mem = NULL;
    bs->cap = 0;
}
