/* AdamW, schedules and clipping: hand-computed values, slices only, and a
 * tiny model that memorises a batch. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "attn_ref.h"
#include "fdcheck.h"
#include "hostimpl.h"
#include "inifile.h"
#include "optim.h"
#include "space.h"
#include "testutil.h"


Test(optim, schedules)
{
    et_optim_config c = {.lr = 1.0, .min_lr = 0.1, .warmup_steps = 10, .total_steps = 110,
                         .schedule = ET_SCHEDULE_COSINE};
    cr_assert_float_eq(et_optim_lr(&c, 0), 0.1, 1e-12);
    cr_assert_float_eq(et_optim_lr(&c, 9), 1.0, 1e-12);
    cr_assert_float_eq(et_optim_lr(&c, 59), 0.1 + 0.45 * (1 + cos(M_PI * 0.5)), 1e-12);
    cr_assert_float_eq(et_optim_lr(&c, 109), 0.1, 1e-12);
    cr_assert_float_eq(et_optim_lr(&c, 500), 0.1, 1e-12);
    c.schedule = ET_SCHEDULE_INVERSE_SQRT;
    cr_assert_float_eq(et_optim_lr(&c, 39), sqrt(10.0 / 40.0), 1e-12);
    c.schedule = ET_SCHEDULE_CONSTANT;
    cr_assert_float_eq(et_optim_lr(&c, 1000), 1.0, 1e-12);
}

/* one cycle: the values torch's OneCycleLR gives for max_lr 1, 110 steps,
 * pct_start 10/110 (checked against torch 1.13), learning rate and beta1 */
Test(optim, onecycle_as_torch)
{
    et_optim_config c = {.lr = 1.0, .warmup_steps = 10, .total_steps = 110,
                         .schedule = ET_SCHEDULE_ONECYCLE, .div = 25, .final_div = 1e4,
                         .beta1 = 0.95, .beta1_min = 0.85};
    const struct {
        int64_t step;
        double lr, beta1;
    } want[] = {{0, 0.04, 0.95},           {3, 0.28, 0.925},       {9, 1.0, 0.85},
                {10, 0.999753281, 0.850024672}, {59, 0.500002, 0.9}, {109, 4e-6, 0.95},
                {500, 4e-6, 0.95}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert_float_eq(et_optim_lr(&c, want[i].step), want[i].lr, 1e-9, "lr at %lld",
                           (long long)want[i].step);
        cr_assert_float_eq(et_optim_beta1(&c, want[i].step), want[i].beta1, 1e-9,
                           "beta1 at %lld", (long long)want[i].step);
    }
    /* the other schedules keep beta1 */
    c.schedule = ET_SCHEDULE_COSINE;
    cr_assert_eq(et_optim_beta1(&c, 9), 0.95);
    /* no warm-up: torch's pct_start = 0 anneals from the peak, update 0
     * already 1/110 of the way (torch 1.13's values) */
    c.schedule = ET_SCHEDULE_ONECYCLE;
    c.warmup_steps = 0;
    cr_assert_float_eq(et_optim_lr(&c, 0), 0.99979609723, 1e-9);
    cr_assert_float_eq(et_optim_beta1(&c, 0), 0.850020390359, 1e-9);
    cr_assert_float_eq(et_optim_lr(&c, 1), 0.999184555225, 1e-9);
    cr_assert_float_eq(et_optim_lr(&c, 54), 0.500002, 1e-9);
    cr_assert_float_eq(et_optim_lr(&c, 108), 0.000207902770291, 1e-9);
    cr_assert_float_eq(et_optim_lr(&c, 109), 4e-6, 1e-12);
}

static const et_attn_impl ref_impl[1] = {{&attn_ref_vtable, NULL}};

static const char *const space_text =
    "encoder_embed_dim = 8, 16\nencoder_layers = 1..2\nencoder_ffn_dim = 16, 32\n"
    "encoder_heads = 2\nhead_dim = 4\nnorm = pre\n";

static et_model *tiny(et_space *s, int32_t B)
{
    static et_host host;
    et_host_init(&host, 1, 1, s);
    et_model_config cfg = {.input_dim = 5, .max_len = 3, .num_classes = 4, .max_batch = B,
                           .enc_attention = ref_impl};
    et_model *m;
    char *err = NULL;
    cr_assert_eq(et_model_create(s, &cfg, &host, &m, &err), 0, "%s", err);
    et_model_init(m, 2);
    return m;
}

Test(optim, adamw_step_by_hand_and_slices_only)
{
    et_space s = tu_space(space_text);
    et_model *m = tiny(&s, 2);
    et_arch a;
    char *err = NULL;
    et_arch_smallest(&s, &a);
    cr_assert_eq(et_model_bind(m, &a, 2, 3, &err), 0, "%s", err);
    int64_t n;
    float *p = et_model_params(m, &n), *g = et_model_grads(m, NULL);
    float *before = malloc(sizeof(float) * (size_t)n);
    memcpy(before, p, sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        g[i] = 0.5f; /* also outside the slices: must be ignored */
    et_optim o;
    et_optim_config c = {.lr = 0.01, .warmup_steps = 0, .total_steps = 10,
                         .schedule = ET_SCHEDULE_CONSTANT, .beta1 = 0.9, .beta2 = 0.98,
                         .eps = 1e-8, .weight_decay = 0.1};
    cr_assert_eq(et_optim_create(&o, &c, n, &err), 0);
    et_optim_step(&o, m);
    int32_t nt;
    const et_tensor *t = et_model_tensors(m, &nt);
    int inside = 0, outside = 0;
    for (int32_t i = 0; i < nt; i++)
        for (int32_t r = 0; r < t[i].rows; r++)
            for (int32_t k = 0; k < t[i].cols; k++) {
                int64_t j = t[i].offset + (int64_t)r * t[i].cols + k;
                if (r < t[i].bound_rows && k < t[i].bound_cols) {
                    /* first step: m^ = g, v^ = g^2, so the step is lr * g/|g| = lr */
                    double want = before[j] - (t[i].decay ? 0.01 * 0.1 * before[j] : 0) - 0.01;
                    cr_assert_float_eq(p[j], want, 1e-6, "%s", t[i].name);
                    inside++;
                } else {
                    cr_assert_eq(p[j], before[j], "%s outside the slice moved", t[i].name);
                    outside++;
                }
            }
    cr_assert_gt(inside, 100);
    cr_assert_gt(outside, 100);
    et_optim_destroy(&o);
    /* weight_decay_all: every bound tensor decays, biases and norms too */
    memcpy(before, p, sizeof(float) * (size_t)n);
    c.decay_all = 1;
    cr_assert_eq(et_optim_create(&o, &c, n, &err), 0);
    et_optim_step(&o, m);
    int undecayed = 0;
    for (int32_t i = 0; i < nt; i++) {
        undecayed += !t[i].decay && t[i].bound_rows > 0;
        for (int32_t r = 0; r < t[i].bound_rows; r++)
            for (int32_t k = 0; k < t[i].bound_cols; k++) {
                int64_t j = t[i].offset + (int64_t)r * t[i].cols + k;
                cr_assert_float_eq(p[j], before[j] - 0.01 * 0.1 * before[j] - 0.01, 1e-6, "%s",
                                   t[i].name);
            }
    }
    cr_assert_gt(undecayed, 2, "the model has biases and norms");
    et_optim_destroy(&o);
    free(before);
    et_model_destroy(m);
}

Test(optim, clipping_scales_to_the_norm)
{
    et_space s = tu_space(space_text);
    et_model *m = tiny(&s, 2);
    et_arch a;
    char *err = NULL;
    et_arch_largest(&s, &a);
    cr_assert_eq(et_model_bind(m, &a, 2, 3, &err), 0, "%s", err);
    et_model_zero_grads(m);
    int32_t nt;
    const et_tensor *t = et_model_tensors(m, &nt);
    float *g = et_model_grads(m, NULL);
    g[t[0].offset] = 3.0f;
    g[t[0].offset + 1] = 4.0f;
    cr_assert_float_eq(et_optim_grad_norm(m), 5.0, 1e-12);
    et_model_destroy(m);
}

Test(optim, tiny_model_memorises_a_batch)
{
    enum { B = 8 };
    et_space s = tu_space(space_text);
    et_model *m = tiny(&s, B);
    et_arch a;
    char *err = NULL;
    et_arch_largest(&s, &a);
    cr_assert_eq(et_model_bind(m, &a, B, 3, &err), 0, "%s", err);
    float x[B * 3 * 5];
    int32_t y[B];
    et_rng r = et_rng_from_seed(3);
    fd_fill(x, B * 3 * 5, &r, 1);
    for (int i = 0; i < B; i++)
        y[i] = i % 4;
    et_batch b = {.size = B, .src_len = 3, .src_vec = x, .labels = y};
    int64_t n;
    et_model_params(m, &n);
    et_optim o;
    et_optim_config c = {.lr = 3e-3, .warmup_steps = 10, .total_steps = 300,
                         .schedule = ET_SCHEDULE_COSINE, .beta1 = 0.9, .beta2 = 0.98,
                         .eps = 1e-8, .weight_decay = 0.0, .clip_norm = 1.0};
    cr_assert_eq(et_optim_create(&o, &c, n, &err), 0);
    double first = 0, loss = 0;
    int64_t correct = 0;
    for (int step = 0; step < 300; step++) {
        et_model_zero_grads(m);
        cr_assert_eq(et_model_forward(m, &b, 1, 1, step, &loss, &correct, &err), 0, "%s", err);
        if (step == 0)
            first = loss / B;
        cr_assert_eq(et_model_backward(m, 1.0f / B, &err), 0, "%s", err);
        et_optim_step(&o, m);
    }
    cr_assert_gt(first, 1.0, "starts near log 4");
    cr_assert_lt(loss / B, 0.05, "loss %g after 300 steps", loss / B);
    cr_assert_eq(correct, B);
    et_optim_destroy(&o);
    et_model_destroy(m);
}
