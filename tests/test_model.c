/* The supernet engine (encoder classifier): whole-model gradients by finite
 * differences for both norm placements, every block type and activation,
 * padding; subnet equivalence with a standalone model; determinism.
 * Gradient tolerance: relative L2 error <= 2e-2 per tensor (float kernels,
 * h = 1e-2, losses summed in double); equivalence: 1e-5 relative. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_ref.h"
#include "fdcheck.h"
#include "hostimpl.h"
#include "inifile.h"
#include "model.h"
#include "space.h"
#include "testutil.h"


static const et_attn_impl ref_impl[2] = {{&attn_ref_vtable, NULL}, {&attn_ref_vtable, NULL}};

enum { B = 3, LEN = 4, IN = 6, C = 3 };

typedef struct fixture {
    et_model *m;
    et_batch batch;
    float x[B * LEN * IN];
    int32_t labels[B], lens[B];
} fixture;

static et_model *make(const et_space *s, int32_t pooling, uint64_t seed)
{
    static et_host host;
    et_space sp = *s;
    sp.pooling = pooling;
    et_host_init(&host, seed, 1, s);
    et_model_config cfg = {.input_dim = IN, .max_len = LEN, .num_classes = C, .max_batch = B,
                           .label_smoothing = 0.1f, .enc_attention = ref_impl};
    et_model *m;
    char *err = NULL;
    cr_assert_eq(et_model_create(&sp, &cfg, &host, &m, &err), 0, "%s", err);
    et_model_init(m, seed);
    return m;
}

static void fill_batch(fixture *f, uint64_t seed, int padded)
{
    et_rng r = et_rng_from_seed(seed);
    fd_fill(f->x, B * LEN * IN, &r, 1);
    for (int i = 0; i < B; i++) {
        f->labels[i] = (int32_t)et_rng_below(&r, C);
        f->lens[i] = padded ? LEN - i : LEN;
    }
    memset(&f->batch, 0, sizeof f->batch);
    f->batch.size = B;
    f->batch.src_len = LEN;
    f->batch.src_vec = f->x;
    f->batch.labels = f->labels;
    f->batch.src_lens = padded ? f->lens : NULL;
}

static double loss_of(void *p)
{
    fixture *f = p;
    double loss;
    char *err = NULL;
    cr_assert_eq(et_model_forward(f->m, &f->batch, 1, 7, 0, &loss, NULL, &err), 0, "%s", err);
    return loss;
}

static void check_gradients(const char *space_text, const char *arch_text, int32_t pooling,
                            int padded)
{
    et_space s = tu_space(space_text);
    fixture f;
    f.m = make(&s, pooling, 11);
    fill_batch(&f, 12, padded);
    et_arch a;
    char *err = NULL;
    cr_assert_eq(et_arch_parse(&s, arch_text, &a, &err), 0, "%s", err);
    cr_assert_eq(et_model_bind(f.m, &a, B, LEN, &err), 0, "%s", err);
    /* random, non-trivial parameters everywhere (norm gains too) */
    int64_t n;
    float *p = et_model_params(f.m, &n);
    et_rng r = et_rng_from_seed(13);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(0.4 * et_rng_normal(&r));
    et_model_zero_grads(f.m);
    loss_of(&f);
    cr_assert_eq(et_model_backward(f.m, 1.0f, &err), 0, "%s", err);
    float *g = et_model_grads(f.m, NULL);
    int32_t nt;
    const et_tensor *t = et_model_tensors(f.m, &nt);
    int checked = 0;
    for (int32_t i = 0; i < nt; i++) {
        if (!t[i].bound_rows)
            continue;
        /* FD over the bound slice only: copy it out as a dense vector */
        int64_t cnt = (int64_t)t[i].bound_rows * t[i].bound_cols;
        float *grad = malloc(sizeof(float) * (size_t)cnt);
        float *xs[4096];
        int64_t k = 0;
        for (int32_t rr = 0; rr < t[i].bound_rows; rr++)
            for (int32_t cc = 0; cc < t[i].bound_cols; cc++, k++) {
                int64_t off = t[i].offset + (int64_t)rr * t[i].cols + cc;
                grad[k] = g[off];
                if (k < 4096)
                    xs[k] = p + off;
            }
        /* perturb up to 24 entries spread over the slice */
        int64_t step = cnt > 24 ? cnt / 24 : 1;
        double num = 0, den = 0;
        for (int64_t j = 0; j < cnt && j < 4096; j += step) {
            float keep = *xs[j];
            *xs[j] = keep + 1e-2f;
            double lp = loss_of(&f);
            *xs[j] = keep - 1e-2f;
            double lm = loss_of(&f);
            *xs[j] = keep;
            double fd = (lp - lm) / 2e-2;
            num += (fd - grad[j]) * (fd - grad[j]);
            den += fd * fd;
        }
        double rel = sqrt(num) / fmax(sqrt(den), 1e-4);
        cr_assert_lt(rel, 2e-2, "%s: tensor %s relative error %g (|g| %g)", arch_text, t[i].name,
                     rel, sqrt(den));
        checked++;
        free(grad);
    }
    cr_assert_gt(checked, 4);
    /* the gradient of the input-independent parts outside the slice stays 0 */
    for (int32_t i = 0; i < nt; i++)
        for (int32_t rr = 0; rr < t[i].rows; rr++)
            for (int32_t cc = 0; cc < t[i].cols; cc++)
                if (rr >= t[i].bound_rows || cc >= t[i].bound_cols)
                    cr_assert_eq(g[t[i].offset + (int64_t)rr * t[i].cols + cc], 0.0f,
                                 "gradient outside the bound slice of %s", t[i].name);
    et_model_destroy(f.m);
}

#define SPACE(norm) \
    "encoder_embed_dim = 8, 12\nencoder_layers = 1..3\nencoder_ffn_dim = 12, 16\nencoder_heads = 2, 3\n" \
    "encoder_attention = softmax, other\nencoder_block = standard, attention-only, ffn-only, identity\n" \
    "encoder_activation = relu, gelu, squared_relu, gelu_erf\nhead_dim = 4\nnorm = " norm "\n"

#define LAYER(ffn, heads, block, act) \
    "[ffn=" #ffn ",heads=" #heads ",attn=softmax,block=" block ",act=" act "]"

Test(model, gradients_pre_norm_all_blocks)
{
    check_gradients(SPACE("pre"),
                    "enc(E=8,L=3)" LAYER(12, 2, "standard", "gelu") LAYER(16, 3, "attention-only", "relu")
                        LAYER(12, 2, "ffn-only", "squared_relu"),
                    ET_POOLING_CLS, 0);
}

Test(model, gradients_post_norm_all_blocks)
{
    check_gradients(SPACE("post"),
                    "enc(E=12,L=3)" LAYER(16, 3, "standard", "squared_relu") LAYER(12, 2, "identity", "gelu")
                        LAYER(12, 2, "ffn-only", "relu"),
                    ET_POOLING_CLS, 0);
}

Test(model, gradients_mean_pooling_with_padding)
{
    check_gradients(SPACE("pre"),
                    "enc(E=8,L=2)" LAYER(12, 2, "standard", "gelu") LAYER(16, 2, "standard", "gelu_erf"),
                    ET_POOLING_MEAN, 1);
    check_gradients(SPACE("post"),
                    "enc(E=8,L=2)" LAYER(12, 2, "standard", "relu") LAYER(16, 3, "attention-only", "gelu"),
                    ET_POOLING_CLS, 1);
}

/* A supernet's subnet equals a standalone model of that arch whose weights
 * are the supernet's slices: same loss, same gradients on the slices. */
Test(model, subnet_equals_standalone)
{
    et_space big = tu_space(SPACE("pre"));
    const char *arch_text = "enc(E=8,L=2)" LAYER(12, 2, "standard", "gelu") LAYER(16, 3, "ffn-only", "relu");
    et_space one = tu_space("encoder_embed_dim = 8\nencoder_layers = 2\nencoder_ffn_dim = 12, 16\n"
                        "encoder_heads = 2, 3\nencoder_attention = softmax, other\n"
                        "encoder_block = standard, ffn-only\nencoder_activation = gelu, relu\n"
                        "head_dim = 4\nnorm = pre\n");
    fixture fb, fs;
    fb.m = make(&big, ET_POOLING_CLS, 21);
    fs.m = make(&one, ET_POOLING_CLS, 22);
    fill_batch(&fb, 23, 0);
    fill_batch(&fs, 23, 0);
    et_arch ab, as;
    char *err = NULL;
    cr_assert_eq(et_arch_parse(&big, arch_text, &ab, &err), 0, "%s", err);
    cr_assert_eq(et_arch_parse(&one, arch_text, &as, &err), 0, "%s", err);
    cr_assert_eq(et_model_bind(fb.m, &ab, B, LEN, &err), 0, "%s", err);
    cr_assert_eq(et_model_bind(fs.m, &as, B, LEN, &err), 0, "%s", err);
    int32_t nb, ns;
    const et_tensor *tb = et_model_tensors(fb.m, &nb), *ts = et_model_tensors(fs.m, &ns);
    cr_assert_eq(nb - 3 * 12, ns - 2 * 12, "the standalone model has fewer layers only");
    float *pb = et_model_params(fb.m, NULL), *ps = et_model_params(fs.m, NULL);
    /* copy slices by tensor name and position (layers in order) */
    /* the standalone tensors are the supernet's minus the third layer's */
    for (int32_t i = 0, j = 0; i < nb && j < ns; i++) {
        if (strcmp(tb[i].name, ts[j].name))
            continue;
        if (!tb[i].bound_rows) {
            j++;
            continue;
        }
        cr_assert_eq(tb[i].bound_rows, ts[j].bound_rows, "%s", tb[i].name);
        cr_assert_eq(tb[i].bound_cols, ts[j].bound_cols, "%s", tb[i].name);
        for (int32_t r = 0; r < tb[i].bound_rows; r++)
            memcpy(ps + ts[j].offset + (int64_t)r * ts[j].cols, pb + tb[i].offset + (int64_t)r * tb[i].cols,
                   sizeof(float) * (size_t)tb[i].bound_cols);
        j++;
    }
    et_model_zero_grads(fb.m);
    et_model_zero_grads(fs.m);
    double lb = loss_of(&fb), ls = loss_of(&fs);
    cr_assert_float_eq(lb, ls, 1e-5 * fabs(ls), "loss %g vs %g", lb, ls);
    cr_assert_eq(et_model_backward(fb.m, 1.0f, &err), 0, "%s", err);
    cr_assert_eq(et_model_backward(fs.m, 1.0f, &err), 0, "%s", err);
    float *gb = et_model_grads(fb.m, NULL), *gs = et_model_grads(fs.m, NULL);
    int compared = 0;
    for (int32_t i = 0, j = 0; i < nb && j < ns; i++) {
        if (strcmp(tb[i].name, ts[j].name))
            continue;
        if (!tb[i].bound_rows) {
            j++;
            continue;
        }
        for (int32_t r = 0; r < tb[i].bound_rows; r++)
            for (int32_t c = 0; c < tb[i].bound_cols; c++) {
                float x = gb[tb[i].offset + (int64_t)r * tb[i].cols + c];
                float y = gs[ts[j].offset + (int64_t)r * ts[j].cols + c];
                cr_assert_float_eq(x, y, 1e-6 + 1e-5 * fabsf(y), "%s[%d,%d]: %g vs %g", tb[i].name, r, c, x, y);
                compared++;
            }
        j++;
    }
    cr_assert_gt(compared, 500);
    et_model_destroy(fb.m);
    et_model_destroy(fs.m);
}

Test(model, forward_is_deterministic_and_dropout_is_seeded)
{
    et_space s = tu_space(SPACE("pre"));
    fixture f;
    f.m = make(&s, ET_POOLING_CLS, 31);
    fill_batch(&f, 32, 0);
    et_arch a;
    char *err = NULL;
    et_arch_largest(&s, &a);
    cr_assert_eq(et_model_bind(f.m, &a, B, LEN, &err), 0, "%s", err);
    double l1, l2, l3;
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 1, 5, &l1, NULL, &err), 0);
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 1, 5, &l2, NULL, &err), 0);
    cr_assert_eq(l1, l2);
    et_model_destroy(f.m);
    /* with dropout: same (seed, step) same loss, another step another loss */
    static et_host host;
    et_host_init(&host, 31, 1, &s);
    et_model_config cfg = {.input_dim = IN, .max_len = LEN, .num_classes = C, .max_batch = B,
                           .dropout = 0.3f, .label_smoothing = 0.1f, .enc_attention = ref_impl};
    cr_assert_eq(et_model_create(&s, &cfg, &host, &f.m, &err), 0, "%s", err);
    et_model_init(f.m, 31);
    cr_assert_eq(et_model_bind(f.m, &a, B, LEN, &err), 0, "%s", err);
    cr_assert_eq(et_model_forward(f.m, &f.batch, 1, 1, 5, &l1, NULL, &err), 0);
    cr_assert_eq(et_model_forward(f.m, &f.batch, 1, 1, 5, &l2, NULL, &err), 0);
    cr_assert_eq(et_model_forward(f.m, &f.batch, 1, 1, 6, &l3, NULL, &err), 0);
    cr_assert_eq(l1, l2);
    cr_assert_neq(l1, l3);
    et_model_destroy(f.m);
}

Test(model, bind_refuses_bad_input)
{
    et_space s = tu_space(SPACE("pre"));
    et_model *m = make(&s, ET_POOLING_CLS, 41);
    et_arch a;
    char *err = NULL;
    et_arch_largest(&s, &a);
    cr_assert_neq(et_model_bind(m, &a, B + 1, LEN, &err), 0);
    cr_assert_str_eq(err, "model: batch 4 x length 4 is outside 1..3 x 1..4");
    a.enc.layer[0].ffn_dim = 13;
    cr_assert_neq(et_model_bind(m, &a, B, LEN, &err), 0);
    cr_assert_str_eq(err, "model: encoder layer 0: ffn_dim 13 is not one of the space's choices (12, 16)");
    free(err);
    et_model_destroy(m);
}

/* The largest |v| and the mean square of n values. */
static void value_stats(const float *v, int64_t n, double *maxabs, double *ms)
{
    *maxabs = 0;
    *ms = 0;
    for (int64_t i = 0; i < n; i++) {
        *maxabs = fmax(*maxabs, fabs(v[i]));
        *ms += (double)v[i] * v[i] / (double)n;
    }
}

/* A model of SPACE("pre") sizes over space s, drawn by cfg's init options
 * with seed (one at a time: the host is shared). */
static et_model *drawn(et_space *s, et_model_config cfg, int seed)
{
    static et_host host;
    et_host_init(&host, seed, 1, s);
    cfg.input_dim = IN;
    cfg.max_len = LEN;
    cfg.num_classes = C;
    cfg.max_batch = B;
    cfg.enc_attention = ref_impl;
    et_model *m;
    char *err = NULL;
    cr_assert_eq(et_model_create(s, &cfg, &host, &m, &err), 0, "%s", err);
    et_model_init(m, (uint64_t)seed);
    return m;
}

/* pos_init_std draws the learned positions and the class token from
 * N(0, std^2) cut at 2 std; everything else keeps N(0, 0.02^2); 0 means 0.02. */
Test(model, pos_init_std_scales_positions_and_class_token)
{
    et_space s = tu_space(SPACE("pre"));
    for (int with = 0; with < 2; with++) {
        et_model *m = drawn(&s, (et_model_config){.pos_init_std = with ? 1.0 : 0.0}, 5);
        int32_t nt, seen = 0;
        const et_tensor *ts = et_model_tensors(m, &nt);
        const float *p = et_model_params(m, NULL);
        for (int32_t t = 0; t < nt; t++) {
            const et_tensor *x = &ts[t];
            int64_t n = (int64_t)x->rows * x->cols;
            double maxabs, ms;
            value_stats(p + x->offset, n, &maxabs, &ms);
            const char *kind = strrchr(x->name, '.') ? strrchr(x->name, '.') + 1 : x->name;
            if (!strcmp(kind, "gamma")) /* ones */
                continue;
            int pos = !strcmp(x->name, "pos") || !strcmp(x->name, "cls");
            seen += pos;
            double sd = pos && with ? 1.0 : 0.02;
            cr_expect_leq(maxabs, 2 * sd + 1e-6, "%s: max %g", x->name, maxabs);
            if (pos) /* a normal cut at 2 std keeps 0.774 of the variance */
                cr_expect(ms > 0.3 * sd * sd && ms < 1.5 * sd * sd, "%s: mean square %g", x->name, ms);
        }
        cr_expect_eq(seen, 2, "pos and cls tensors");
        et_model_destroy(m);
    }
}

/* init = torch: each weight and bias U(-a, a) with a = 1/sqrt(fan_in) of its
 * layer (nn.Linear; a bias takes its weight's fan-in), the attention's QKV
 * Xavier-uniform and the attention biases 0 (nn.MultiheadAttention); norms
 * as before (positions, the class token and cross-attention: test_seq2seq).
 * Checked by bound and by mean square (a^2 / 3 for U(-a, a)). */
Test(model, torch_init_follows_the_layer_defaults)
{
    et_space s = tu_space(SPACE("pre"));
    et_model *m = drawn(&s, (et_model_config){.init = ET_INIT_TORCH}, 6);
    int32_t nt, uniform = 0, zero = 0;
    const et_tensor *ts = et_model_tensors(m, &nt);
    const float *p = et_model_params(m, NULL);
    for (int32_t t = 0; t < nt; t++) {
        const et_tensor *x = &ts[t];
        int64_t n = (int64_t)x->rows * x->cols;
        double maxabs, ms;
        value_stats(p + x->offset, n, &maxabs, &ms);
        const char *name = x->name, *kind = strrchr(name, '.') ? strrchr(name, '.') + 1 : name;
        const et_tensor *w = x; /* a bias's weight */
        if (!strcmp(kind, "bias"))
            for (int32_t k = 0; k < nt; k++)
                if (!strncmp(ts[k].name, name, strlen(name) - 4) &&
                    !strcmp(ts[k].name + strlen(name) - 4, "weight"))
                    w = &ts[k];
        double a = 0;
        if (strstr(name, "qkv.bias") || strstr(name, "proj.bias")) {
            cr_expect_eq(maxabs, 0, "%s: attention biases are 0", name);
            zero++;
            continue;
        } else if (strstr(name, "qkv.weight")) {
            a = sqrt(6.0 / (x->rows + x->cols));
        } else if (!strcmp(kind, "weight") || !strcmp(kind, "bias")) {
            if (!strcmp(kind, "bias"))
                cr_assert_neq(w, x, "%s: no weight found", name);
            a = 1.0 / sqrt(w->cols);
        } else {
            continue;
        }
        uniform++;
        cr_expect_leq(maxabs, a + 1e-6, "%s: max %g above %g", name, maxabs, a);
        if (n >= 24) /* enough draws for the mean square to be near a^2 / 3 */
            cr_expect(ms > 0.5 * a * a / 3 && ms < 1.5 * a * a / 3, "%s: mean square %g, want %g",
                      name, ms, a * a / 3);
    }
    cr_expect_geq(uniform, 8, "weights and biases drawn uniform: %d", uniform);
    cr_expect_geq(zero, 2, "attention biases set to 0: %d", zero);
    et_model_destroy(m);
}

/* qkv_init = xavier: under init = normal the attention's QKV matrix is
 * Xavier-uniform (bound and mean square a^2 / 3) while every other matrix
 * keeps N(0, 0.02^2) cut at 2 std and the QKV bias stays 0; under
 * init = torch, which draws QKV so already, it changes no parameter. */
Test(model, qkv_init_xavier_draws_only_the_attention_projection)
{
    et_space s = tu_space(SPACE("pre"));
    float *torch_params[2] = {NULL, NULL};
    int64_t total = 0;
    for (int scheme = 0; scheme < 3; scheme++) {
        et_model *m = drawn(&s,
                            (et_model_config){.init = scheme ? ET_INIT_TORCH : ET_INIT_NORMAL,
                                              .qkv_xavier = scheme != 2},
                            7);
        int32_t nt, qkv = 0;
        const et_tensor *ts = et_model_tensors(m, &nt);
        const float *p = et_model_params(m, &total);
        if (scheme) {
            torch_params[scheme - 1] = malloc(sizeof(float) * (size_t)total);
            cr_assert_not_null(torch_params[scheme - 1]);
            memcpy(torch_params[scheme - 1], p, sizeof(float) * (size_t)total);
            et_model_destroy(m);
            continue;
        }
        for (int32_t t = 0; t < nt; t++) {
            const et_tensor *x = &ts[t];
            int64_t n = (int64_t)x->rows * x->cols;
            double maxabs, ms;
            value_stats(p + x->offset, n, &maxabs, &ms);
            const char *kind = strrchr(x->name, '.') ? strrchr(x->name, '.') + 1 : x->name;
            if (strstr(x->name, "qkv.weight")) {
                double a = sqrt(6.0 / (x->rows + x->cols));
                qkv++;
                cr_expect_leq(maxabs, a + 1e-6, "%s: max %g above %g", x->name, maxabs, a);
                cr_expect(ms > 0.8 * a * a / 3 && ms < 1.2 * a * a / 3,
                          "%s: mean square %g, want %g", x->name, ms, a * a / 3);
            } else if (!strcmp(kind, "bias") || !strcmp(kind, "beta")) {
                cr_expect_eq(maxabs, 0, "%s: max %g", x->name, maxabs);
            } else if (strcmp(kind, "gamma")) {
                cr_expect_leq(maxabs, 0.04 + 1e-6, "%s: max %g", x->name, maxabs);
            }
        }
        cr_expect_geq(qkv, 1, "QKV matrices drawn: %d", qkv);
        et_model_destroy(m);
    }
    cr_expect_eq(memcmp(torch_params[0], torch_params[1], sizeof(float) * (size_t)total), 0,
                 "init = torch draws the same parameters with and without qkv_init = xavier");
    free(torch_params[0]);
    free(torch_params[1]);
}
