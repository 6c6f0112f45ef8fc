/* Plugins built only for the tests: one source, configured per target by
 * macros, so the loader meets every kind, a wrong ABI version, a missing
 * descriptor symbol and duplicate names. Their vtables do the least that
 * still lets an experiment be checked; they never train anything. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

#ifndef FAKE_ABI
#define FAKE_ABI ET_ABI_VERSION
#endif

static int fake_create(const et_host *host, const et_option_value *opts, void **state, char **err)
{
    (void)host;
    (void)opts;
    (void)err;
    *state = NULL;
    return 0;
}

static void fake_destroy(void *state)
{
    free(state);
}

static int fake_run(void *state, char **err)
{
    (void)state;
    (void)err;
    return 0;
}

static const char *const fake_figures[] = {"params_m", "flops_g", NULL};

static int fake_measure(void *state, const et_arch *arch, double *values, char **err)
{
    (void)state;
    (void)err;
    values[0] = arch->enc.embed_dim;
    values[1] = arch->enc.layers;
    return 0;
}

#ifndef FAKE_NO_LOAD
/* A task with no data: loading it fails the way a missing data set would. */
static int fake_load(void *state, et_task_info *info, char **err)
{
    (void)state;
    (void)info;
    *err = malloc(32);
    if (*err)
        snprintf(*err, 32, "fake_task has no data");
    return ET_STATUS_ERR_IO;
}
#endif

static int64_t fake_count(void *state, int32_t split, int32_t batch_size)
{
    (void)state, (void)split, (void)batch_size;
    return 0;
}

static int fake_batch(void *state, int32_t split, int64_t epoch, int32_t batch_size, int64_t index,
                      et_batch *out, char **err)
{
    (void)state, (void)split, (void)epoch, (void)batch_size, (void)index, (void)out, (void)err;
    return ET_STATUS_ERR_USAGE;
}

/* An attention operator that outputs zeros. */
static int fake_prepare(void *state, const et_attn_shape *max, char **err)
{
    (void)state, (void)max, (void)err;
    return 0;
}

static int64_t fake_floats(void *state, const et_attn_shape *s)
{
    (void)state, (void)s;
    return 0;
}

static void zero_view(const et_attn_shape *s, et_attn_view x, int32_t len, int32_t dim)
{
    for (int32_t b = 0; b < s->batch; b++)
        for (int32_t h = 0; h < s->heads; h++)
            for (int32_t i = 0; i < len; i++)
                memset(x.data + b * x.sb + h * x.sh + i * x.st, 0, sizeof(float) * (size_t)dim);
}

static int fake_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                        et_attn_view v, et_attn_view out, float *saved, float *work)
{
    (void)state, (void)q, (void)k, (void)v, (void)saved, (void)work;
    zero_view(s, out, s->len_q, s->dim_v);
    return 0;
}

static int fake_backward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                         et_attn_view v, et_attn_view out, et_attn_view dout, const float *saved,
                         et_attn_view dq, et_attn_view dk, et_attn_view dv, float *work)
{
    (void)state, (void)q, (void)k, (void)v, (void)out, (void)dout, (void)saved, (void)work;
    zero_view(s, dq, s->len_q, s->dim_qk);
    zero_view(s, dk, s->len_k, s->dim_qk);
    zero_view(s, dv, s->len_k, s->dim_v);
    return 0;
}

static double fake_macs(void *state, const et_attn_shape *s)
{
    (void)state, (void)s;
    return 0.0;
}

static const et_search_vtable search_vt = {fake_create, fake_destroy, fake_run};
static const et_proxy_vtable proxy_vt = {fake_create, fake_destroy, fake_figures, fake_measure};
#ifdef FAKE_NO_LOAD
static const et_task_vtable task_vt = {fake_create, fake_destroy, NULL, fake_count, fake_batch};
#else
static const et_task_vtable task_vt = {fake_create, fake_destroy, fake_load, fake_count,
                                       fake_batch};
#endif
static const et_attention_vtable attn_vt = {
    .create = fake_create,
    .destroy = fake_destroy,
    .prepare = fake_prepare,
    .saved_floats = fake_floats,
    .work_floats = fake_floats,
    .forward = fake_forward,
    .backward = fake_backward,
    .macs = fake_macs,
};

static const et_option_decl fake_options[] = {
    {"size", ET_OPTION_TYPE_INT, "10", 1, 1000, NULL, "how many"},
    {"rate", ET_OPTION_TYPE_FLOAT, "0.5", 0, 1, NULL, "a share"},
    {"mode", ET_OPTION_TYPE_CHOICE, "fast", 0, -1, "fast|slow", "how"},
    {"verbose", ET_OPTION_TYPE_BOOL, "false", 1, 0, NULL, "talk more"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const et_plugin_descriptor descriptor = {
    FAKE_ABI,
    FAKE_KIND,
    FAKE_NAME,
    "test plugin " FAKE_NAME,
    fake_options,
    FAKE_KIND == ET_PLUGIN_KIND_SEARCH ? (const void *)&search_vt
    : FAKE_KIND == ET_PLUGIN_KIND_PROXY ? (const void *)&proxy_vt
    : FAKE_KIND == ET_PLUGIN_KIND_TASK  ? (const void *)&task_vt
                                        : (const void *)&attn_vt,
};

#ifdef FAKE_NO_SYMBOL
ET_EXPORT const et_plugin_descriptor *not_the_descriptor(void)
#else
ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
#endif
{
    return &descriptor;
}
