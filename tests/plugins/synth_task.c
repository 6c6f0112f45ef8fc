/* synth: a task plugin for the end-to-end tests. Examples are 3 positions of
 * 4 features drawn from a seeded normal; the label is the feature with the
 * largest sum over positions, learnable by a tiny encoder in a few hundred
 * updates. Not shipped: built only for `make check`. */
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

enum { T = 3, D = 4 };

typedef struct synth {
    int64_t n[3];
    float *x[3];
    int32_t *y[3];
    float *bx;
    int32_t *by;
    int32_t cap;
} synth;

static const et_option_decl synth_options[] = {
    {"train", ET_OPTION_TYPE_INT, "512", 1, 1e7, NULL, "training examples"},
    {"valid", ET_OPTION_TYPE_INT, "128", 0, 1e7, NULL, "validation examples"},
    {"test", ET_OPTION_TYPE_INT, "128", 1, 1e7, NULL, "test examples"},
    {"data_seed", ET_OPTION_TYPE_INT, "77", 0, 1e15, NULL, "seed of the examples"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static void synth_destroy(void *state)
{
    synth *s = state;
    if (!s)
        return;
    for (int i = 0; i < 3; i++) {
        free(s->x[i]);
        free(s->y[i]);
    }
    free(s->bx);
    free(s->by);
    free(s);
}

static int synth_create(const et_host *host, const et_option_value *opts, void **state, char **err)
{
    synth *s = calloc(1, sizeof *s);
    *state = s;
    if (!s) {
        *err = host->errorf("synth: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    et_rng r = et_rng_from_seed((uint64_t)opts[3].i);
    for (int split = 0; split < 3; split++) {
        s->n[split] = opts[split].i;
        s->x[split] = malloc(sizeof(float) * (size_t)(s->n[split] * T * D));
        s->y[split] = malloc(sizeof(int32_t) * (size_t)s->n[split]);
        if (!s->x[split] || !s->y[split]) {
            *err = host->errorf("synth: out of memory");
            return ET_STATUS_ERR_NOMEM;
        }
        for (int64_t i = 0; i < s->n[split]; i++) {
            float sum[D] = {0};
            for (int k = 0; k < T * D; k++) {
                float v = (float)et_rng_normal(&r);
                s->x[split][i * T * D + k] = v;
                sum[k % D] += v;
            }
            int best = 0;
            for (int k = 1; k < D; k++)
                best = sum[k] > sum[best] ? k : best;
            s->y[split][i] = best;
        }
    }
    return 0;
}

static int synth_load(void *state, et_task_info *info, char **err)
{
    synth *s = state;
    (void)err;
    *info = (et_task_info){.model_kind = ET_MODEL_KIND_ENCODER, .num_classes = D, .input_dim = D,
                           .max_src_len = T, .split_size = {s->n[0], s->n[1], s->n[2]},
                           .metric = "accuracy", .higher_is_better = 1};
    return 0;
}

static int64_t synth_count(void *state, int32_t split, int32_t bs)
{
    synth *s = state;
    return (s->n[split] + bs - 1) / bs;
}

static int synth_batch(void *state, int32_t split, int64_t epoch, int32_t bs, int64_t index,
                       et_batch *out, char **err)
{
    synth *s = state;
    (void)err;
    if (bs > s->cap) {
        free(s->bx);
        free(s->by);
        s->bx = malloc(sizeof(float) * (size_t)bs * T * D);
        s->by = malloc(sizeof(int32_t) * (size_t)bs);
        s->cap = bs;
    }
    int64_t n = s->n[split];
    int32_t size = 0;
    for (int64_t i = index * bs; i < n && size < bs; i++, size++) {
        int64_t j = split == ET_SPLIT_TRAIN ? (i + epoch * 37) % n : i;
        memcpy(s->bx + (int64_t)size * T * D, s->x[split] + j * T * D, sizeof(float) * T * D);
        s->by[size] = s->y[split][j];
    }
    *out = (et_batch){.size = size, .src_len = T, .src_vec = s->bx, .labels = s->by};
    return 0;
}

static const et_task_vtable synth_vtable = {synth_create, synth_destroy, synth_load, synth_count,
                                            synth_batch};

static const et_plugin_descriptor synth_descriptor = {
    ET_ABI_VERSION, ET_PLUGIN_KIND_TASK, "synth", "synthetic 4-class task for tests",
    synth_options, &synth_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &synth_descriptor;
}
