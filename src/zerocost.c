/* Zero-cost proxies (zerocost.h). */
#include "zerocost.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const kind_names[ET_ZC_KINDS] = {"grad_norm", "snip", "synflow", "jacob_cov"};

int et_zc_kind_parse(const char *name)
{
    for (int k = 0; k < ET_ZC_KINDS; k++)
        if (!strcmp(name, kind_names[k]))
            return k;
    return -1;
}

const char *et_zc_kind_name(int kind)
{
    return kind >= 0 && kind < ET_ZC_KINDS ? kind_names[kind] : "?";
}

void et_sym_eigenvalues(double *a, int32_t n, double *ev)
{
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int32_t p = 0; p < n; p++)
            for (int32_t q = p + 1; q < n; q++)
                off += a[p * n + q] * a[p * n + q];
        if (off < 1e-22)
            break;
        for (int32_t p = 0; p < n; p++)
            for (int32_t q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (fabs(apq) < 1e-300)
                    continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int32_t k = 0; k < n; k++) { /* columns p, q */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int32_t k = 0; k < n; k++) { /* rows p, q */
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
    }
    for (int32_t i = 0; i < n; i++)
        ev[i] = a[i * n + i];
}

/* Sum over the bound slices of weight matrices of f(w, g). */
static double over_weights(et_model *m, int kind)
{
    int32_t nt;
    const et_tensor *t = et_model_tensors(m, &nt);
    const float *p = et_model_params(m, NULL), *g = et_model_grads(m, NULL);
    double total = 0;
    for (int32_t i = 0; i < nt; i++) {
        if (!t[i].decay || !t[i].bound_rows)
            continue;
        double sq = 0, sum = 0;
        for (int32_t r = 0; r < t[i].bound_rows; r++)
            for (int32_t c = 0; c < t[i].bound_cols; c++) {
                int64_t o = t[i].offset + (int64_t)r * t[i].cols + c;
                double w = p[o], d = g[o];
                sq += d * d;
                sum += kind == ET_ZC_SNIP ? fabs(w * d) : w * d;
            }
        total += kind == ET_ZC_GRAD_NORM ? sqrt(sq) : sum;
    }
    return total;
}

static int jacob_cov(et_model *m, int64_t B, double *score, char **err)
{
    int64_t per;
    const float *j = et_model_input_grad(m, &per);
    if (!j || per < 1 || B < 2)
        return et_fail(err, ET_STATUS_ERR_USAGE, "jacob_cov: needs input gradients of >= 2 "
                                                 "examples");
    double *c = malloc(sizeof *c * (size_t)(B * B)), *ev = malloc(sizeof *ev * (size_t)B);
    double *mean = malloc(sizeof *mean * (size_t)B), *norm = malloc(sizeof *norm * (size_t)B);
    if (!c || !ev || !mean || !norm) {
        free(c);
        free(ev);
        free(mean);
        free(norm);
        return et_fail(err, ET_STATUS_ERR_NOMEM, "jacob_cov: out of memory");
    }
    for (int64_t a = 0; a < B; a++) {
        double s = 0;
        for (int64_t k = 0; k < per; k++)
            s += j[a * per + k];
        mean[a] = s / (double)per;
    }
    for (int64_t a = 0; a < B; a++)
        for (int64_t b = a; b < B; b++) {
            double s = 0;
            for (int64_t k = 0; k < per; k++)
                s += (j[a * per + k] - mean[a]) * (j[b * per + k] - mean[b]);
            c[a * B + b] = c[b * B + a] = s;
        }
    for (int64_t a = 0; a < B; a++)
        norm[a] = sqrt(c[a * B + a]) > 0 ? sqrt(c[a * B + a]) : 1.0;
    for (int64_t a = 0; a < B; a++)
        for (int64_t b = 0; b < B; b++)
            c[a * B + b] /= norm[a] * norm[b];
    et_sym_eigenvalues(c, (int32_t)B, ev);
    const double k = 1e-5;
    double s = 0;
    for (int64_t i = 0; i < B; i++) {
        double l = ev[i] > 0 ? ev[i] : 0;
        s += log(l + k) + 1 / (l + k);
    }
    *score = -s;
    free(c);
    free(ev);
    free(mean);
    free(norm);
    return 0;
}

int et_zerocost(et_model *m, const et_arch *arch, const et_batch *b, int kind, uint64_t seed,
                double *score, char **err)
{
    if (kind < 0 || kind >= ET_ZC_KINDS)
        return et_fail(err, ET_STATUS_ERR_USAGE, "zero-cost: unknown score %d", kind);
    et_model_init(m, seed);
    et_model_want_input_grad(m, kind == ET_ZC_JACOB_COV);
    int rc = et_model_bind_lengths(m, arch, b->size, b->src_len > 0 ? b->src_len : 1,
                                   b->tgt_len > 0 ? b->tgt_len : 1, err);
    if (rc)
        return rc;
    et_batch x = *b;
    float *ones = NULL;
    if (kind == ET_ZC_SYNFLOW) {
        int64_t n;
        float *p = et_model_params(m, &n);
        for (int64_t i = 0; i < n; i++)
            p[i] = fabsf(p[i]);
        if (b->src_vec) { /* vector inputs become all ones; tokens stay */
            int64_t count = (int64_t)b->size * b->src_len * et_model_input_dim(m);
            if (!(ones = malloc(sizeof *ones * (size_t)(count ? count : 1))))
                return et_fail(err, ET_STATUS_ERR_NOMEM, "zero-cost: out of memory");
            for (int64_t i = 0; i < count; i++)
                ones[i] = 1.0f;
            x.src_vec = ones;
        }
    }
    et_model_zero_grads(m);
    double loss;
    rc = et_model_forward(m, &x, 0, seed, 0, &loss, NULL, err);
    if (!rc && (kind == ET_ZC_SYNFLOW || kind == ET_ZC_JACOB_COV))
        rc = et_model_backward_outputs(m, NULL, err);
    else if (!rc)
        rc = et_model_backward(m, 1.0f / (float)(et_model_units(m) ? et_model_units(m) : 1), err);
    if (!rc && kind == ET_ZC_JACOB_COV)
        rc = jacob_cov(m, b->size, score, err);
    else if (!rc)
        *score = over_weights(m, kind);
    if (!rc && !isfinite(*score))
        rc = et_fail(err, ET_STATUS_ERR_NUMERIC, "zero-cost: %s is not finite",
                     et_zc_kind_name(kind));
    et_model_zero_grads(m);
    et_model_want_input_grad(m, 0);
    free(ones);
    return rc;
}

double et_zerocost_lts(const et_model *m)
{
    int32_t nt;
    const et_tensor *t = et_model_tensors(m, &nt);
    const et_space *sp = et_model_space(m);
    int dec_only = sp->kind != ET_MODEL_KIND_ENCODER;
    double n = 0;
    for (int32_t i = 0; i < nt; i++) {
        const char *name = t[i].name;
        const char *dot = strrchr(name, '.');
        const char *last = dot ? dot + 1 : name;
        if (!strcmp(last, "tok") || !strcmp(last, "pos") || !strcmp(last, "cls") ||
            !strncmp(name, "embed.", 6) || !strncmp(name, "head.", 5))
            continue;
        if (dec_only && strncmp(name, "dec.", 4) != 0)
            continue;
        n += (double)t[i].bound_rows * t[i].bound_cols;
    }
    return n / 1e6;
}
