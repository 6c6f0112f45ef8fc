/* Generic checks of attention plugins through their vtable (attn_check.h):
 * a test host, option defaults, strided layouts with poisoned gaps, and the
 * gradient, padding, causality, decoding, thread and reference checks. */
#include "attn_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <etnas/rng.h>

#include "hostimpl.h"
#include "options.h"

/* What output gaps hold: a plugin writing outside its view changes it. */
#define GAP_SENTINEL (-7777.0f)
#define MAX_THREADS 16

/* ------------------------------------------------------------------ host */

static void host_log(void *ctx, int32_t level, const char *fmt, ...)
{
    (void)ctx;
    if (level > ET_LOG_LEVEL_WARN && !getenv("ETNAS_TEST_VERBOSE"))
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static char *host_errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void host_progress(void *ctx, const char *phase, int64_t done, int64_t total)
{
    (void)ctx, (void)phase, (void)done, (void)total;
}

/* ctx carries the thread count: the core's pool split into that many
 * contiguous ranges, the same every run. */
static void host_parallel_for(void *ctx, int64_t n, et_parallel_fn fn, void *arg)
{
    et_parallel_for_parts((int32_t)(intptr_t)ctx, n, fn, arg);
}

void attn_check_host_init(et_host *host, int32_t threads, uint64_t seed)
{
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    *host = (et_host){
        .abi_version = ET_ABI_VERSION,
        .size = sizeof(et_host),
        .ctx = (void *)(intptr_t)threads,
        .seed = seed,
        .threads = threads,
        .log = host_log,
        .errorf = host_errorf,
        .progress = host_progress,
        .parallel_for = host_parallel_for,
    };
}

/* --------------------------------------------------------------- options */

static int parse_value(const et_option_decl *d, const char *text, et_option_value *v,
                       int ranged)
{
    char why[256];
    et_option_decl any = *d;
    if (!ranged)
        any.min = 1, any.max = 0; /* min > max: no range */
    return et_option_parse(&any, text, v, why, sizeof why);
}

/* Applies "key=value,key=value" (edited in place) over the defaults. */
static int apply_overrides(attn_check_op *op, char *text, int ranged, char **err)
{
    for (char *item = text; item && *item;) {
        char *next = strchr(item, ',');
        if (next)
            *next++ = '\0';
        char *eq = strchr(item, '=');
        if (!eq) {
            *err = host_errorf("attn_check: override '%s' is not key=value", item);
            return ET_STATUS_ERR_USAGE;
        }
        *eq = '\0';
        int found = 0;
        for (int i = 0; op->desc->options && op->desc->options[i].key; i++)
            if (!strcmp(op->desc->options[i].key, item)) {
                found = 1;
                if (parse_value(&op->desc->options[i], eq + 1, &op->opts[i], ranged)) {
                    *err = host_errorf("attn_check: bad value '%s' for option %s", eq + 1, item);
                    return ET_STATUS_ERR_USAGE;
                }
            }
        if (!found) {
            *err = host_errorf("attn_check: plugin %s has no option '%s'", op->desc->name, item);
            return ET_STATUS_ERR_USAGE;
        }
        item = next;
    }
    return 0;
}

static int op_open(attn_check_op *op, const et_plugin_descriptor *desc, const char *overrides,
                   int32_t threads, int ranged, char **err)
{
    *op = (attn_check_op){.desc = desc};
    *err = NULL;
    if (desc->abi_version != ET_ABI_VERSION || desc->kind != ET_PLUGIN_KIND_ATTENTION ||
        !desc->vtable) {
        *err = host_errorf("attn_check: %s is not an attention plugin of ABI %d", desc->name,
                           ET_ABI_VERSION);
        return ET_STATUS_ERR_USAGE;
    }
    op->vt = desc->vtable;
    op->host = malloc(sizeof *op->host);
    if (!op->host) {
        *err = host_errorf("attn_check: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    attn_check_host_init(op->host, threads, 0x5eed);
    for (int i = 0; desc->options && desc->options[i].key; i++) {
        if (i + 1 >= ATTN_CHECK_MAX_OPTIONS) {
            *err = host_errorf("attn_check: too many options");
            return ET_STATUS_ERR_USAGE;
        }
        const et_option_decl *d = &desc->options[i];
        if (!d->default_value || parse_value(d, d->default_value, &op->opts[i], 1)) {
            *err = host_errorf("attn_check: option %s has no usable default", d->key);
            return ET_STATUS_ERR_USAGE;
        }
    }
    if (overrides) {
        op->text = host_errorf("%s", overrides);
        if (!op->text)
            return ET_STATUS_ERR_NOMEM;
        int rc = apply_overrides(op, op->text, ranged, err);
        if (rc)
            return rc;
    }
    return op->vt->create(op->host, op->opts, &op->state, err);
}

int attn_check_op_open(attn_check_op *op, const et_plugin_descriptor *desc,
                       const char *overrides, int32_t threads, char **err)
{
    return op_open(op, desc, overrides, threads, 1, err);
}

int attn_check_op_open_unranged(attn_check_op *op, const et_plugin_descriptor *desc,
                                const char *overrides, int32_t threads, char **err)
{
    return op_open(op, desc, overrides, threads, 0, err);
}

void attn_check_op_close(attn_check_op *op)
{
    if (op->vt)
        op->vt->destroy(op->state);
    free(op->text);
    free(op->host);
    *op = (attn_check_op){0};
}

/* --------------------------------------------------------------- layouts */

/* One group of tensors: q|k|v (three) or out (one), in the case's layout.
 * Views hold `fill`, gaps hold `gap`; mask marks view elements. */
typedef struct tset {
    int32_t count, nbuf, B, H, T[3], C[3];
    et_attn_view view[3];
    float *mem[3];
    unsigned char *mask[3];
    int64_t n[3];
    float gap;
} tset;

static float *at(et_attn_view v, int64_t b, int64_t h, int64_t t)
{
    return v.data + b * v.sb + h * v.sh + t * v.st;
}

static void tset_free(tset *s)
{
    for (int i = 0; i < s->nbuf; i++) {
        free(s->mem[i]);
        free(s->mask[i]);
    }
    memset(s, 0, sizeof *s);
}

static int tset_alloc(tset *s, int32_t layout, int32_t count, int32_t B, int32_t H,
                      const int32_t *T, const int32_t *C, float fill, float gap)
{
    memset(s, 0, sizeof *s);
    s->count = count, s->B = B, s->H = H, s->gap = gap;
    for (int i = 0; i < count; i++)
        s->T[i] = T[i], s->C[i] = C[i];
    int packed = layout == ATTN_CHECK_LAYOUT_PACKED && count == 3 && T[0] == T[1] &&
                 T[1] == T[2] && C[0] == C[1] && C[1] == C[2];
    if (packed) {
        /* (B,T,3,H,C) with no gaps, as the engine's fused projection */
        int64_t c = C[0], row = 3 * (int64_t)H * c;
        s->nbuf = 1;
        s->n[0] = (int64_t)B * T[0] * row;
        for (int i = 0; i < 3; i++)
            s->view[i] = (et_attn_view){NULL, T[0] * row, c, row};
    } else {
        s->nbuf = count;
        for (int i = 0; i < count; i++) {
            int64_t c = C[i], t = T[i];
            if (layout == ATTN_CHECK_LAYOUT_BHTC) {
                s->n[i] = (int64_t)B * H * t * c;
                s->view[i] = (et_attn_view){NULL, H * t * c, t * c, c};
            } else {
                /* (B,T,H,C+1): a one-float gap after every row */
                int64_t w = c + 1;
                s->n[i] = (int64_t)B * t * H * w;
                s->view[i] = (et_attn_view){NULL, t * H * w, w, H * w};
            }
        }
    }
    for (int i = 0; i < s->nbuf; i++) {
        int64_t n = s->n[i] > 0 ? s->n[i] : 1;
        s->mem[i] = malloc((size_t)n * sizeof(float));
        s->mask[i] = calloc((size_t)n, 1);
        if (!s->mem[i] || !s->mask[i]) {
            s->nbuf = i + 1;
            tset_free(s);
            return ET_STATUS_ERR_NOMEM;
        }
        for (int64_t j = 0; j < n; j++)
            s->mem[i][j] = gap;
    }
    for (int i = 0; i < count; i++) {
        int bi = packed ? 0 : i;
        s->view[i].data = s->mem[bi] + (packed ? (int64_t)i * H * C[0] : 0);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t t = 0; t < T[i]; t++)
                    for (int64_t c = 0; c < C[i]; c++) {
                        float *x = at(s->view[i], b, h, t) + c;
                        *x = fill;
                        s->mask[bi][x - s->mem[bi]] = 1;
                    }
    }
    return 0;
}

/* Contiguous (B,H,T,C) src into tensor i of the set, or back out. */
static void tset_put(tset *s, int i, const float *src)
{
    int64_t T = s->T[i], C = s->C[i];
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->H; h++)
            for (int64_t t = 0; t < T; t++)
                memcpy(at(s->view[i], b, h, t), src + ((b * s->H + h) * T + t) * C,
                       (size_t)C * sizeof(float));
}

static void tset_get(const tset *s, int i, float *dst)
{
    int64_t T = s->T[i], C = s->C[i];
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->H; h++)
            for (int64_t t = 0; t < T; t++)
                memcpy(dst + ((b * s->H + h) * T + t) * C, at(s->view[i], b, h, t),
                       (size_t)C * sizeof(float));
}

/* 0 when every gap still holds its value (NaN gaps stay NaN). */
static int tset_gaps_ok(const tset *s)
{
    for (int i = 0; i < s->nbuf; i++)
        for (int64_t j = 0; j < s->n[i]; j++)
            if (!s->mask[i][j]) {
                float x = s->mem[i][j];
                if (isnan(s->gap) ? !isnan(x) : x != s->gap)
                    return -1;
            }
    return 0;
}

static float *nan_floats(int64_t n)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; x && i < n; i++)
        x[i] = NAN;
    return x;
}

/* ------------------------------------------------------------------ runs */

/* One forward (and optionally backward) of a shape on contiguous inputs. */
typedef struct run {
    et_attn_shape s;
    int32_t layout;
    const float *q, *k, *v, *dout; /* contiguous; dout NULL: no backward */
    float *out, *dq, *dk, *dv;      /* contiguous results */
} run;

static int fail(attn_check_op *op, int rc, const char *what, char *err)
{
    fprintf(stderr, "attn_check: %s: %s failed (%d): %s\n", op->desc->name, what, rc,
            err ? err : "(no message)");
    free(err);
    return rc ? rc : ET_STATUS_ERR_INTERNAL;
}

static int same_floats(const float *a, const float *b, int64_t n)
{
    return !memcmp(a, b, (size_t)n * sizeof(float));
}

static int run_exec(attn_check_op *op, run *r)
{
    const et_attn_shape *s = &r->s;
    int64_t B = s->batch, H = s->heads, L = s->len_q, S = s->len_k, d = s->dim_qk,
            dv = s->dim_v;
    char *err = NULL;
    int rc = op->vt->prepare(op->state, s, &err);
    if (rc)
        return fail(op, rc, "prepare", err);
    free(err);
    int64_t nsaved = op->vt->saved_floats(op->state, s), nwork = op->vt->work_floats(op->state, s);
    float *saved = nan_floats(nsaved), *work = nan_floats(nwork);
    int32_t Tin[3] = {s->len_q, s->len_k, s->len_k}, Cin[3] = {s->dim_qk, s->dim_qk, s->dim_v};
    int32_t To[1] = {s->len_q}, Co[1] = {s->dim_v};
    tset in = {0}, out = {0}, dout = {0}, grad = {0};
    float *chk = calloc((size_t)(B * H * (L + 2 * S) * (d > dv ? d : dv) + 1), sizeof(float));
    rc = !saved || !work || !chk ? ET_STATUS_ERR_NOMEM : 0;
    if (!rc)
        rc = tset_alloc(&in, r->layout, 3, s->batch, s->heads, Tin, Cin, 0.0f, NAN);
    if (!rc)
        rc = tset_alloc(&out, r->layout, 1, s->batch, s->heads, To, Co, NAN, GAP_SENTINEL);
    if (rc)
        goto done;
    tset_put(&in, 0, r->q);
    tset_put(&in, 1, r->k);
    tset_put(&in, 2, r->v);
    rc = op->vt->forward(op->state, s, in.view[0], in.view[1], in.view[2], out.view[0], saved,
                         work);
    if (rc) {
        rc = fail(op, rc, "forward", NULL);
        goto done;
    }
    tset_get(&out, 0, r->out);
    if (tset_gaps_ok(&out) || tset_gaps_ok(&in)) {
        rc = fail(op, 0, "forward", host_errorf("wrote outside its views"));
        goto done;
    }
    tset_get(&in, 0, chk);
    int inputs_kept = same_floats(chk, r->q, B * H * L * d);
    tset_get(&in, 1, chk);
    inputs_kept = inputs_kept && same_floats(chk, r->k, B * H * S * d);
    tset_get(&in, 2, chk);
    inputs_kept = inputs_kept && same_floats(chk, r->v, B * H * S * dv);
    if (!inputs_kept) {
        rc = fail(op, 0, "forward", host_errorf("changed its inputs"));
        goto done;
    }
    if (!r->dout)
        goto done;
    if ((rc = tset_alloc(&dout, r->layout, 1, s->batch, s->heads, To, Co, 0.0f, NAN)) ||
        (rc = tset_alloc(&grad, r->layout, 3, s->batch, s->heads, Tin, Cin, NAN, GAP_SENTINEL)))
        goto done;
    tset_put(&dout, 0, r->dout);
    for (int64_t i = 0; i < nwork; i++)
        work[i] = NAN;
    rc = op->vt->backward(op->state, s, in.view[0], in.view[1], in.view[2], out.view[0],
                          dout.view[0], saved, grad.view[0], grad.view[1], grad.view[2], work);
    if (rc) {
        rc = fail(op, rc, "backward", NULL);
        goto done;
    }
    if (tset_gaps_ok(&grad) || tset_gaps_ok(&in) || tset_gaps_ok(&out) || tset_gaps_ok(&dout)) {
        rc = fail(op, 0, "backward", host_errorf("wrote outside its views"));
        goto done;
    }
    tset_get(&grad, 0, r->dq);
    tset_get(&grad, 1, r->dk);
    tset_get(&grad, 2, r->dv);
done:
    tset_free(&in);
    tset_free(&out);
    tset_free(&dout);
    tset_free(&grad);
    free(saved);
    free(work);
    free(chk);
    return rc;
}

static et_attn_shape case_shape(const attn_check_case *c)
{
    return (et_attn_shape){c->batch, c->heads, c->len_q, c->len_k,
                           c->dim_qk, c->dim_v, c->mode, c->key_len};
}

static float *normal_floats(int64_t n, et_rng *g, double scale)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; x && i < n; i++)
        x[i] = (float)(et_rng_normal(g) * scale);
    return x;
}

static double case_scale(const attn_check_case *c)
{
    return c->scale > 0 ? c->scale : 1.0;
}

void attn_check_inputs(const attn_check_case *c, float **q, float **k, float **v)
{
    et_rng g = et_rng_from_seed(c->seed);
    int64_t bh = (int64_t)c->batch * c->heads;
    *q = normal_floats(bh * c->len_q * c->dim_qk, &g, case_scale(c));
    *k = normal_floats(bh * c->len_k * c->dim_qk, &g, case_scale(c));
    *v = normal_floats(bh * c->len_k * c->dim_v, &g, case_scale(c));
}

int attn_check_forward(attn_check_op *op, const attn_check_case *c, const float *q,
                       const float *k, const float *v, float *out)
{
    run r = {.s = case_shape(c), .layout = c->layout, .q = q, .k = k, .v = v, .out = out};
    return run_exec(op, &r);
}

/* max|a-b| / max(1, max|ref|) over n values; NaN anywhere gives INFINITY. */
static double scaled_error(const float *a, const double *ref, int64_t n)
{
    double num = 0.0, mx = 1.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (isnan(d))
            return INFINITY;
        num = fmax(num, d);
        mx = fmax(mx, fabs(ref[i]));
    }
    return num / mx;
}

double attn_check_scaled_error(const float *a, const float *ref, int64_t n)
{
    double num = 0.0, mx = 1.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (isnan(d))
            return INFINITY;
        num = fmax(num, d);
        mx = fmax(mx, fabs((double)ref[i]));
    }
    return num / mx;
}

double attn_check_reference(attn_check_op *op, const attn_check_case *c, attn_check_ref_fn ref,
                            void *ctx)
{
    et_attn_shape s = case_shape(c);
    int64_t n = (int64_t)c->batch * c->heads * c->len_q * c->dim_v;
    float *q, *k, *v, *out = malloc((size_t)(n + 1) * sizeof(float));
    double *want = malloc((size_t)(n + 1) * sizeof(double)), e = INFINITY;
    attn_check_inputs(c, &q, &k, &v);
    if (q && k && v && out && want && !attn_check_forward(op, c, q, k, v, out)) {
        ref(ctx, &s, q, k, v, want);
        e = scaled_error(out, want, n);
    }
    free(q), free(k), free(v), free(out), free(want);
    return e;
}

/* ------------------------------------------------------------- gradients */

typedef struct grad_ctx {
    attn_check_op *op;
    run r;
    double *w;
    int64_t nout;
    int failed;
} grad_ctx;

static double grad_loss(grad_ctx *g)
{
    run r = g->r;
    r.dout = NULL;
    if (run_exec(g->op, &r)) {
        g->failed = 1;
        return NAN;
    }
    double s = 0.0;
    for (int64_t i = 0; i < g->nout; i++)
        s += g->w[i] * r.out[i];
    return s;
}

static double grad_one(grad_ctx *g, float *x, const float *an, int64_t n, double h)
{
    double num = 0.0, mx = 0.0;
    for (int64_t i = 0; i < n && !g->failed; i++) {
        float keep = x[i], hi = (float)(keep + h), lo = (float)(keep - h);
        x[i] = hi;
        double lp = grad_loss(g);
        x[i] = lo;
        double lm = grad_loss(g);
        x[i] = keep;
        double fd = (lp - lm) / ((double)hi - (double)lo);
        double d = fabs(fd - an[i]);
        num = isnan(d) ? INFINITY : fmax(num, d);
        mx = fmax(mx, fabs(fd));
    }
    return g->failed ? INFINITY : num / (mx + 1e-6);
}

double attn_check_grad(attn_check_op *op, const attn_check_case *c, double h, double err3[3])
{
    et_attn_shape s = case_shape(c);
    int64_t bh = (int64_t)c->batch * c->heads, nq = bh * c->len_q * c->dim_qk,
            nk = bh * c->len_k * c->dim_qk, nv = bh * c->len_k * c->dim_v,
            no = bh * c->len_q * c->dim_v;
    double step = (h > 0 ? h : 1e-2) * case_scale(c), e[3] = {INFINITY, INFINITY, INFINITY};
    float *q, *k, *v;
    attn_check_inputs(c, &q, &k, &v);
    et_rng rg = et_rng_from_seed(c->seed ^ 0x9a11);
    float *dout = normal_floats(no, &rg, 1.0), *out = nan_floats(no), *dq = nan_floats(nq),
          *dk = nan_floats(nk), *dv = nan_floats(nv);
    double *w = malloc((size_t)(no + 1) * sizeof(double));
    if (q && k && v && dout && out && dq && dk && dv && w) {
        for (int64_t i = 0; i < no; i++)
            w[i] = dout[i];
        grad_ctx g = {op, {s, c->layout, q, k, v, dout, out, dq, dk, dv}, w, no, 0};
        if (!run_exec(op, &g.r)) {
            e[0] = grad_one(&g, q, dq, nq, step);
            e[1] = grad_one(&g, k, dk, nk, step);
            e[2] = grad_one(&g, v, dv, nv, step);
        }
    }
    if (err3)
        memcpy(err3, e, sizeof e);
    free(q), free(k), free(v), free(dout), free(out), free(dq), free(dk), free(dv), free(w);
    return fmax(e[0], fmax(e[1], e[2]));
}

/* --------------------------------------------------------------- padding */

/* Copies (B,H,T,C) src into (B,H,T2,C) dst for t < T; rows t >= keep(b) of the
 * copy and all rows t >= T get fresh values of 5x the scale. */
static void extend(float *dst, const float *src, int64_t B, int64_t H, int64_t T, int64_t T2,
                   int64_t C, const int32_t *keep, et_rng *g, double scale)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T2; t++)
                for (int64_t c = 0; c < C; c++) {
                    float *x = dst + ((b * H + h) * T2 + t) * C + c;
                    if (t < T && (!keep || t < keep[b]))
                        *x = src[((b * H + h) * T + t) * C + c];
                    else
                        *x = (float)(5.0 * scale * et_rng_normal(g));
                }
}

double attn_check_padding(attn_check_op *op, const attn_check_case *c, int32_t extra)
{
    int self = c->mode != ET_ATTN_MODE_CROSS;
    int64_t B = c->batch, H = c->heads, L = c->len_q, S = c->len_k, d = c->dim_qk,
            dv = c->dim_v, L2 = self ? L + extra : L, S2 = S + extra;
    int padded = 0;
    for (int64_t b = 0; c->key_len && b < B; b++)
        padded |= c->key_len[b] < S;
    if (!padded || extra < 0) {
        fprintf(stderr, "attn_check: padding check needs key_len below len_k\n");
        return INFINITY;
    }
    float *q, *k, *v;
    attn_check_inputs(c, &q, &k, &v);
    float *q2 = nan_floats(B * H * L2 * d), *k2 = nan_floats(B * H * S2 * d),
          *v2 = nan_floats(B * H * S2 * dv), *o1 = nan_floats(B * H * L * dv),
          *o2 = nan_floats(B * H * L2 * dv), *o2r = nan_floats(B * H * L * dv);
    double e = INFINITY;
    et_rng g = et_rng_from_seed(c->seed ^ 0xbadd);
    if (q && k && v && q2 && k2 && v2 && o1 && o2 && o2r) {
        extend(q2, q, B, H, L, L2, d, NULL, &g, case_scale(c));
        extend(k2, k, B, H, S, S2, d, c->key_len, &g, case_scale(c));
        extend(v2, v, B, H, S, S2, dv, c->key_len, &g, case_scale(c));
        attn_check_case c2 = *c;
        c2.len_q = (int32_t)L2;
        c2.len_k = (int32_t)S2;
        if (!attn_check_forward(op, c, q, k, v, o1) && !attn_check_forward(op, &c2, q2, k2, v2, o2)) {
            for (int64_t bh = 0; bh < B * H; bh++)
                memcpy(o2r + bh * L * dv, o2 + bh * L2 * dv, (size_t)(L * dv) * sizeof(float));
            e = attn_check_scaled_error(o2r, o1, B * H * L * dv);
        }
    }
    free(q), free(k), free(v), free(q2), free(k2), free(v2), free(o1), free(o2), free(o2r);
    return e;
}

/* ------------------------------------------------------------- causality */

double attn_check_causality(attn_check_op *op, const attn_check_case *c)
{
    if (c->mode != ET_ATTN_MODE_CAUSAL) {
        fprintf(stderr, "attn_check: causality check needs a causal case\n");
        return INFINITY;
    }
    int64_t B = c->batch, H = c->heads, L = c->len_q, d = c->dim_qk, dv = c->dim_v;
    float *q, *k, *v;
    attn_check_inputs(c, &q, &k, &v);
    float *q2 = nan_floats(B * H * L * d), *k2 = nan_floats(B * H * L * d),
          *v2 = nan_floats(B * H * L * dv), *o1 = nan_floats(B * H * L * dv),
          *o2 = nan_floats(B * H * L * dv);
    int32_t *keep = malloc((size_t)B * sizeof(int32_t));
    double e = INFINITY;
    et_rng g = et_rng_from_seed(c->seed ^ 0xca05);
    if (q && k && v && q2 && k2 && v2 && o1 && o2 && keep &&
        !attn_check_forward(op, c, q, k, v, o1)) {
        e = 0.0;
        for (int64_t t = 0; t + 1 < L && isfinite(e); t++) {
            for (int64_t b = 0; b < B; b++)
                keep[b] = (int32_t)(t + 1);
            extend(q2, q, B, H, L, L, d, keep, &g, case_scale(c));
            extend(k2, k, B, H, L, L, d, keep, &g, case_scale(c));
            extend(v2, v, B, H, L, L, dv, keep, &g, case_scale(c));
            if (attn_check_forward(op, c, q2, k2, v2, o2)) {
                e = INFINITY;
                break;
            }
            for (int64_t bh = 0; bh < B * H; bh++) {
                const float *a = o1 + bh * L * dv, *b2 = o2 + bh * L * dv;
                e = fmax(e, attn_check_scaled_error(b2, a, (t + 1) * dv));
            }
        }
    }
    free(q), free(k), free(v), free(q2), free(k2), free(v2), free(o1), free(o2), free(keep);
    return e;
}

/* -------------------------------------------------------------- decoding */

double attn_check_decode(attn_check_op *op, const attn_check_case *c)
{
    if (c->mode != ET_ATTN_MODE_CAUSAL || c->len_q != c->len_k) {
        fprintf(stderr, "attn_check: decode check needs a causal self-attention case\n");
        return INFINITY;
    }
    attn_check_case cf = *c;
    cf.key_len = NULL;
    int64_t B = c->batch, H = c->heads, L = c->len_q, dv = c->dim_v;
    float *q, *k, *v;
    attn_check_inputs(&cf, &q, &k, &v);
    float *ref = nan_floats(B * H * L * dv), *first = nan_floats(B * H * L * dv),
          *row = nan_floats(B * H * dv), *dstate = NULL, *work = NULL;
    double e = INFINITY;
    tset in = {0}, out = {0};
    et_attn_shape sd = {c->batch, c->heads, 1, 1, c->dim_qk, c->dim_v, ET_ATTN_MODE_CAUSAL, NULL};
    int32_t Tin[3] = {c->len_q, c->len_k, c->len_k}, Cin[3] = {c->dim_qk, c->dim_qk, c->dim_v};
    int32_t To[1] = {1}, Co[1] = {c->dim_v};
    if (!q || !k || !v || !ref || !first || !row || attn_check_forward(op, &cf, q, k, v, ref) ||
        tset_alloc(&in, c->layout, 3, c->batch, c->heads, Tin, Cin, 0.0f, NAN) ||
        tset_alloc(&out, c->layout, 1, c->batch, c->heads, To, Co, NAN, GAP_SENTINEL))
        goto done;
    tset_put(&in, 0, q);
    tset_put(&in, 1, k);
    tset_put(&in, 2, v);
    int64_t nstate = op->vt->decode_floats(op->state, &sd, (int32_t)L),
            nwork = op->vt->work_floats(op->state, &sd);
    dstate = nan_floats(nstate);
    work = nan_floats(nwork);
    if (!dstate || !work)
        goto done;
    e = 0.0;
    for (int pass = 0; pass < 2 && isfinite(e); pass++) {
        op->vt->decode_reset(op->state, &sd, (int32_t)L, dstate);
        for (int64_t pos = 0; pos < L; pos++) {
            et_attn_view vq = in.view[0], vk = in.view[1], vv = in.view[2];
            vq.data = at(vq, 0, 0, pos);
            vk.data = at(vk, 0, 0, pos);
            vv.data = at(vv, 0, 0, pos);
            for (int64_t i = 0; i < nwork; i++)
                work[i] = NAN;
            int rc = op->vt->decode_step(op->state, &sd, (int32_t)L, dstate, (int32_t)pos, vq, vk,
                                         vv, out.view[0], work);
            if (rc || tset_gaps_ok(&out)) {
                fail(op, rc, "decode_step", host_errorf("position %lld%s", (long long)pos,
                                                        rc ? "" : ": wrote outside its view"));
                e = INFINITY;
                break;
            }
            tset_get(&out, 0, row);
            for (int64_t bh = 0; bh < B * H; bh++) {
                float *dst = first + (bh * L + pos) * dv;
                e = fmax(e, attn_check_scaled_error(row + bh * dv, ref + (bh * L + pos) * dv, dv));
                if (pass == 0)
                    memcpy(dst, row + bh * dv, (size_t)dv * sizeof(float));
                else if (!same_floats(dst, row + bh * dv, dv))
                    e = INFINITY; /* decode_reset did not reset */
            }
        }
    }
done:
    tset_free(&in);
    tset_free(&out);
    free(q), free(k), free(v), free(ref), free(first), free(row), free(dstate), free(work);
    return e;
}

/* --------------------------------------------------------------- threads */

double attn_check_threads(const et_plugin_descriptor *desc, const char *overrides,
                          const attn_check_case *c, int32_t threads)
{
    attn_check_op ops[2];
    et_attn_shape s = case_shape(c);
    int64_t bh = (int64_t)c->batch * c->heads, nq = bh * c->len_q * c->dim_qk,
            nk = bh * c->len_k * c->dim_qk, nv = bh * c->len_k * c->dim_v,
            no = bh * c->len_q * c->dim_v;
    float *q, *k, *v, *res[2][4] = {{0}};
    attn_check_inputs(c, &q, &k, &v);
    et_rng rg = et_rng_from_seed(c->seed ^ 0x7777);
    float *dout = normal_floats(no, &rg, 1.0);
    double e = INFINITY;
    int ok = q && k && v && dout;
    for (int i = 0; i < 2; i++) {
        char *err = NULL;
        int rc = attn_check_op_open(&ops[i], desc, overrides, i ? threads : 1, &err);
        if (rc) {
            fail(&ops[i], rc, "create", err);
            ok = 0;
            continue;
        }
        res[i][0] = nan_floats(no), res[i][1] = nan_floats(nq);
        res[i][2] = nan_floats(nk), res[i][3] = nan_floats(nv);
        run r = {s, c->layout, q, k, v, dout, res[i][0], res[i][1], res[i][2], res[i][3]};
        ok = ok && res[i][0] && res[i][1] && res[i][2] && res[i][3] && !run_exec(&ops[i], &r);
    }
    if (ok) {
        const int64_t n[4] = {no, nq, nk, nv};
        e = 0.0;
        for (int t = 0; t < 4; t++)
            e = fmax(e, attn_check_scaled_error(res[1][t], res[0][t], n[t]));
    }
    for (int i = 0; i < 2; i++) {
        attn_check_op_close(&ops[i]);
        for (int t = 0; t < 4; t++)
            free(res[i][t]);
    }
    free(q), free(k), free(v), free(dout);
    return e;
}
