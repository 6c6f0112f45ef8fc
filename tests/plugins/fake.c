/* Plugins built only for the tests: one source, configured per target by
 * macros, so the loader meets every kind, a wrong ABI version, a missing
 * descriptor symbol and duplicate names. Their vtables do the least that
 * still lets an experiment be checked; they never train anything. */
#include <stddef.h>
#include <stdlib.h>

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

static const et_search_vtable search_vt = {fake_create, fake_destroy, fake_run};
static const et_proxy_vtable proxy_vt = {fake_create, fake_destroy, fake_figures, fake_measure};
static const et_task_vtable task_vt = {.create = fake_create, .destroy = fake_destroy};
static const et_attention_vtable attn_vt = {.create = fake_create, .destroy = fake_destroy};

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
