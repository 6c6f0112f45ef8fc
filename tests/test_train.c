/* Training loops on a small synthetic task: supernet training (uniform and
 * sandwich) improves subnets it never trained alone, standalone training
 * learns the task, runs repeat by seed, and fixed-arch training touches only
 * that arch's slices. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "attn_ref.h"
#include "hostimpl.h"
#include "inifile.h"
#include "space.h"
#include "train.h"
#include "testutil.h"

/* Synthetic task: 3 positions x 4 features; the label is the feature with the
 * largest sum over positions. 512 train, 128 valid examples. */
enum { T = 3, D = 4, NTRAIN = 512, NVALID = 128, MAXB = 32 };

typedef struct synth {
    float x[(NTRAIN + NVALID) * T * D];
    int32_t y[NTRAIN + NVALID];
    float bx[MAXB * T * D];
    int32_t by[MAXB];
} synth;

static synth data;

static void synth_make(void)
{
    et_rng r = et_rng_from_seed(77);
    for (int i = 0; i < NTRAIN + NVALID; i++) {
        float sum[D] = {0};
        for (int k = 0; k < T * D; k++) {
            data.x[i * T * D + k] = (float)et_rng_normal(&r);
            sum[k % D] += data.x[i * T * D + k];
        }
        int best = 0;
        for (int k = 1; k < D; k++)
            best = sum[k] > sum[best] ? k : best;
        data.y[i] = best;
    }
}

static int64_t synth_count(void *st, int32_t split, int32_t bs)
{
    (void)st;
    int n = split == ET_SPLIT_TRAIN ? NTRAIN : NVALID;
    return (n + bs - 1) / bs;
}

static int synth_batch(void *st, int32_t split, int64_t epoch, int32_t bs, int64_t index,
                       et_batch *out, char **err)
{
    (void)st, (void)err;
    int base = split == ET_SPLIT_TRAIN ? 0 : NTRAIN, n = split == ET_SPLIT_TRAIN ? NTRAIN : NVALID;
    int size = 0;
    for (int64_t i = index * bs; i < n && size < bs; i++, size++) {
        /* a fixed per-epoch rotation stands in for shuffling */
        int64_t j = split == ET_SPLIT_TRAIN ? (i + epoch * 37) % n : i;
        memcpy(data.bx + size * T * D, data.x + (base + j) * T * D, sizeof(float) * T * D);
        data.by[size] = data.y[base + j];
    }
    *out = (et_batch){.size = size, .src_len = T, .src_vec = data.bx, .labels = data.by};
    return 0;
}

static const et_task_vtable synth_vt = {.batch_count = synth_count, .batch = synth_batch};
static const et_task_info synth_info = {.model_kind = ET_MODEL_KIND_ENCODER, .num_classes = D,
                                        .input_dim = D, .max_src_len = T,
                                        .split_size = {NTRAIN, NVALID, 0}, .metric = "accuracy",
                                        .higher_is_better = 1};
static const et_attn_impl ref_impl[1] = {{&attn_ref_vtable, NULL}};


static const char *const space_text =
    "encoder_embed_dim = 16, 24\nencoder_layers = 1..2\nencoder_ffn_dim = 16, 32\n"
    "encoder_heads = 2, 4\nhead_dim = 4\nnorm = pre\n";

typedef struct rig {
    et_space s;
    et_host host;
    et_model *m;
    et_trainer t;
} rig;

static void rig_init(rig *r, uint64_t seed, int32_t sampling, int64_t steps)
{
    synth_make();
    r->s = tu_space(space_text);
    r->s.pooling = ET_POOLING_MEAN;
    et_host_init(&r->host, seed, 1, &r->s);
    et_model_config mc = {.input_dim = D, .max_len = T, .num_classes = D, .max_batch = MAXB,
                          .enc_attention = ref_impl};
    char *err = NULL;
    cr_assert_eq(et_model_create(&r->s, &mc, &r->host, &r->m, &err), 0, "%s", err);
    et_model_init(r->m, seed);
    et_train_config tc = {.steps = steps, .batch_size = MAXB, .grad_accum = 1,
                          .eval_batch_size = MAXB, .sampling = sampling, .seed = seed,
                          .optim = {.lr = 3e-3, .warmup_steps = 10, .total_steps = steps,
                                    .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-8,
                                    .weight_decay = 0.01, .clip_norm = 1.0}};
    cr_assert_eq(et_trainer_create(&r->t, &tc, r->m, &synth_vt, NULL, &synth_info, &err), 0, "%s", err);
}

static void rig_free(rig *r)
{
    et_trainer_destroy(&r->t);
    et_model_destroy(r->m);
}

static double accuracy(rig *r, const et_arch *a)
{
    double acc, loss;
    char *err = NULL;
    cr_assert_eq(et_trainer_evaluate(&r->t, a, ET_SPLIT_VALID, &acc, &loss, &err), 0, "%s", err);
    return acc;
}

Test(train, supernet_training_lifts_every_subnet)
{
    for (int32_t sampling = 0; sampling < 2; sampling++) {
        rig r;
        rig_init(&r, 5, sampling, 300);
        et_arch small, big;
        et_arch_smallest(&r.s, &small);
        et_arch_largest(&r.s, &big);
        double before = accuracy(&r, &small);
        char *err = NULL;
        double loss;
        cr_assert_eq(et_trainer_run(&r.t, 300, NULL, &loss, &err), 0, "%s", err);
        double after_small = accuracy(&r, &small), after_big = accuracy(&r, &big);
        cr_assert_gt(after_small, 0.8, "sampling %d: smallest %g (before %g)", sampling, after_small, before);
        cr_assert_gt(after_big, 0.8, "sampling %d: largest %g", sampling, after_big);
        cr_assert_gt(after_small, before + 0.3);
        rig_free(&r);
    }
}

Test(train, runs_repeat_by_seed)
{
    rig a, b, c;
    rig_init(&a, 9, ET_SAMPLING_UNIFORM, 20);
    rig_init(&b, 9, ET_SAMPLING_UNIFORM, 20);
    rig_init(&c, 10, ET_SAMPLING_UNIFORM, 20);
    char *err = NULL;
    cr_assert_eq(et_trainer_run(&a.t, 20, NULL, NULL, &err), 0, "%s", err);
    cr_assert_eq(et_trainer_run(&b.t, 20, NULL, NULL, &err), 0, "%s", err);
    cr_assert_eq(et_trainer_run(&c.t, 20, NULL, NULL, &err), 0, "%s", err);
    int64_t n;
    float *pa = et_model_params(a.m, &n), *pb = et_model_params(b.m, NULL), *pc = et_model_params(c.m, NULL);
    cr_assert_eq(memcmp(pa, pb, sizeof(float) * (size_t)n), 0);
    cr_assert_neq(memcmp(pa, pc, sizeof(float) * (size_t)n), 0);
    rig_free(&a);
    rig_free(&b);
    rig_free(&c);
}

Test(train, standalone_touches_only_its_slices_and_learns)
{
    rig r;
    rig_init(&r, 3, ET_SAMPLING_UNIFORM, 200);
    et_arch small;
    et_arch_smallest(&r.s, &small);
    int64_t n;
    float *p = et_model_params(r.m, &n);
    float *before = malloc(sizeof(float) * (size_t)n);
    memcpy(before, p, sizeof(float) * (size_t)n);
    char *err = NULL;
    cr_assert_eq(et_trainer_run(&r.t, 200, &small, NULL, &err), 0, "%s", err);
    cr_assert_gt(accuracy(&r, &small), 0.85);
    int32_t nt;
    const et_tensor *t = et_model_tensors(r.m, &nt);
    int moved_outside = 0, moved_inside = 0;
    for (int32_t i = 0; i < nt; i++)
        for (int32_t row = 0; row < t[i].rows; row++)
            for (int32_t col = 0; col < t[i].cols; col++) {
                int64_t j = t[i].offset + (int64_t)row * t[i].cols + col;
                int inside = row < t[i].bound_rows && col < t[i].bound_cols;
                if (p[j] != before[j])
                    *(inside ? &moved_inside : &moved_outside) += 1;
            }
    cr_assert_eq(moved_outside, 0);
    cr_assert_gt(moved_inside, 500);
    free(before);
    rig_free(&r);
}

/* The "repeater" measure of decoded output: the longest back-to-back run. */
Test(train, longest_run_of_a_token)
{
    static const int32_t a[] = {5, 5, 7, 7, 7, 7, 2, 7, 7};
    cr_expect_eq(et_longest_run(a, 0), 0);
    cr_expect_eq(et_longest_run(a, 1), 1);
    cr_expect_eq(et_longest_run(a, 2), 2);
    cr_expect_eq(et_longest_run(a, 5), 3);
    cr_expect_eq(et_longest_run(a, 9), 4);
    cr_expect_eq(et_longest_run(a + 6, 3), 2);
}
