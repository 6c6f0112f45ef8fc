/* AdamW over the bound slices of a model's parameters, learning-rate
 * schedules, and clipping by global gradient norm. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int et_optim_create(et_optim *o, const et_optim_config *cfg, int64_t n, char **err)
{
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->n = n;
    o->m = calloc((size_t)n, sizeof *o->m);
    o->v = calloc((size_t)n, sizeof *o->v);
    o->t = calloc((size_t)n, sizeof *o->t);
    if (!o->m || !o->v || !o->t) {
        et_optim_destroy(o);
        return et_fail(err, ET_STATUS_ERR_NOMEM, "optimizer: out of memory for %lld parameters",
                       (long long)n);
    }
    return 0;
}

void et_optim_destroy(et_optim *o)
{
    free(o->m);
    free(o->v);
    free(o->t);
    memset(o, 0, sizeof *o);
}

/* One cycle as torch's OneCycleLR (two phases, cosine annealing): update k
 * sits at fraction pct of its phase; phase 1 spans updates 0 .. W - 1 (W =
 * warmup_steps), phase 2 the rest up to total_steps - 1. Returns the phase's
 * start-to-end fraction already cosine-shaped: 0 at its start, 1 at its end. */
static double onecycle_at(const et_optim_config *c, int64_t step, int *phase)
{
    double k = (double)step, w1 = (double)c->warmup_steps - 1.0;
    double last = (double)c->total_steps - 1.0, pct;
    if (c->warmup_steps > 1 && k <= w1) {
        *phase = 1;
        pct = k / w1;
    } else {
        /* from the end of phase 1; without warm-up (W = 0) that is update
         * -1, as torch's pct_start = 0, so update 0 already sits 1 / total
         * into the annealing (torch divides by zero at W = 1; here it is W = 0) */
        double from = c->warmup_steps > 1 ? w1 : -1.0;
        *phase = 2;
        pct = last > from ? (k - from) / (last - from) : 1.0;
    }
    if (pct > 1.0)
        pct = 1.0;
    return 0.5 * (1.0 - cos(M_PI * pct));
}

double et_optim_beta1(const et_optim_config *c, int64_t step)
{
    if (c->schedule != ET_SCHEDULE_ONECYCLE)
        return c->beta1;
    int phase;
    double f = onecycle_at(c, step, &phase);
    return phase == 1 ? c->beta1 + (c->beta1_min - c->beta1) * f
                      : c->beta1_min + (c->beta1 - c->beta1_min) * f;
}

double et_optim_lr(const et_optim_config *c, int64_t step)
{
    if (c->schedule == ET_SCHEDULE_ONECYCLE) {
        int phase;
        double f = onecycle_at(c, step, &phase);
        double first = c->lr / c->div, last = first / c->final_div;
        return phase == 1 ? first + (c->lr - first) * f : c->lr + (last - c->lr) * f;
    }
    double s = (double)step + 1.0;
    if (c->warmup_steps > 0 && s <= (double)c->warmup_steps)
        return c->lr * s / (double)c->warmup_steps;
    switch (c->schedule) {
    case ET_SCHEDULE_INVERSE_SQRT:
        return c->lr * sqrt((double)(c->warmup_steps > 0 ? c->warmup_steps : 1) / s);
    case ET_SCHEDULE_CONSTANT:
        return c->lr;
    default: {
        double span = (double)(c->total_steps - c->warmup_steps);
        double done = span > 0 ? (s - (double)c->warmup_steps) / span : 1.0;
        if (done > 1.0)
            done = 1.0;
        return c->min_lr + 0.5 * (c->lr - c->min_lr) * (1.0 + cos(M_PI * done));
    }
    }
}

static double norm_slices(et_model *m, const int32_t *rows, const int32_t *cols)
{
    int32_t nt;
    const et_tensor *t = et_model_tensors(m, &nt);
    const float *g = et_model_grads(m, NULL);
    double s = 0;
    for (int32_t i = 0; i < nt; i++)
        for (int32_t r = 0; r < (rows ? rows[i] : t[i].bound_rows); r++) {
            const float *row = g + t[i].offset + (int64_t)r * t[i].cols;
            for (int32_t c = 0; c < (cols ? cols[i] : t[i].bound_cols); c++)
                s += (double)row[c] * row[c];
        }
    return sqrt(s);
}

double et_optim_grad_norm(et_model *m)
{
    return norm_slices(m, NULL, NULL);
}

double et_optim_step(et_optim *o, et_model *m)
{
    return et_optim_step_slices(o, m, NULL, NULL);
}

double et_optim_step_slices(et_optim *o, et_model *m, const int32_t *rows, const int32_t *cols)
{
    const et_optim_config *c = &o->cfg;
    double norm = norm_slices(m, rows, cols);
    double clip = c->clip_norm > 0 && norm > c->clip_norm ? c->clip_norm / norm : 1.0;
    double lr = et_optim_lr(c, o->step), beta1 = et_optim_beta1(c, o->step);
    float b1 = (float)beta1, b2 = (float)c->beta2;
    int32_t nt;
    const et_tensor *t = et_model_tensors(m, &nt);
    float *p = et_model_params(m, NULL), *g = et_model_grads(m, NULL);
    /* bias corrections depend on each parameter's own count; neighbours
     * almost always share it, so recompute only when it changes */
    int64_t last_t = -1;
    double corr1 = 1, corr2 = 1;
    for (int32_t i = 0; i < nt; i++) {
        float decay = t[i].decay || c->decay_all ? (float)(lr * c->weight_decay) : 0.0f;
        int32_t nr = rows ? rows[i] : t[i].bound_rows, nc = cols ? cols[i] : t[i].bound_cols;
        for (int32_t r = 0; r < nr; r++) {
            int64_t base = t[i].offset + (int64_t)r * t[i].cols;
            for (int32_t k = 0; k < nc; k++) {
                int64_t j = base + k;
                float gj = (float)(g[j] * clip);
                int64_t tj = ++o->t[j];
                o->m[j] = b1 * o->m[j] + (1.0f - b1) * gj;
                o->v[j] = b2 * o->v[j] + (1.0f - b2) * gj * gj;
                if (tj != last_t) {
                    corr1 = 1.0 - pow(beta1, (double)tj); /* the current beta1, as torch */
                    corr2 = 1.0 - pow(c->beta2, (double)tj);
                    last_t = tj;
                }
                double mh = o->m[j] / corr1;
                double vh = o->v[j] / corr2;
                p[j] -= decay * p[j] + (float)(lr * mh / (sqrt(vh) + c->eps));
            }
        }
    }
    o->step++;
    return norm;
}
