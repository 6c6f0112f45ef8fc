/* The experiment runner (runner.h). One run: task, supernet, the searches
 * one after another on the shared supernet, final retraining, report. Every
 * evaluation goes to the store before the strategy sees it, and supernet
 * checkpoints are taken as training goes, so a killed run resumes with
 * --resume: the strategies replay their seeded decisions and get stored
 * results back. */
#include "runner.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

#include <etnas/etnas.h>

#include "checkpoint.h"
#include "hostimpl.h"
#include "model.h"
#include "options.h"
#include "report.h"
#include "space.h"
#include "stats.h"
#include "store.h"
#include "train.h"
#include "util.h"
#include "zerocost.h"

typedef struct record {
    et_arch arch;
    double metric, loss;
    int32_t ok; /* satisfies the constraints */
} record;

typedef struct runner runner;

typedef struct strategy {
    runner *r;
    const et_section_plugin *sp;
    et_host host;
    void *state;
    record *recs;
    size_t n, cap;
    int64_t evals, reused;
    double seconds;
    /* a soft-choice supernet private to the strategy (host soft_* services) */
    et_model *soft_model;
    et_trainer soft_trainer;
    int soft_ready, soft_ops;
    int64_t soft_valid_epoch, soft_valid_batch;
    char *soft_ckpt;
    int32_t finals_done; /* final results the strategy recorded itself (train_custom) */
    et_arch *proposed;   /* its own final candidates (host->propose), best first */
    int32_t n_proposed;
} strategy;

typedef struct proxy_inst {
    const et_section_plugin *sp;
    et_host host;
    void *state;
} proxy_inst;

/* An arch whose stack `stack` runs self-attention operators of its own
 * (train_custom's texts): the experiment's space with those texts as the
 * stack's attention list, the arch pointing into it, the operators
 * resolved, and, made on first use, their MAC-counting instances and
 * models built with them. While its costs are measured (runner.custom),
 * the proxies see that space and the host answers for those operators. */
typedef struct custom_arch {
    int32_t stack; /* 0 encoder, 1 decoder (ET_STACK_ENC_SELF, ET_STACK_DEC_SELF) */
    et_space space;
    et_arch arch;
    int32_t n; /* operators resolved */
    et_attn_choice ch[ET_MAX_CHOICES];
    et_attn_impl impl[ET_MAX_CHOICES];
    void *macs_state[ET_MAX_CHOICES];
    et_model *model;    /* latency, memory and training */
    et_model *zc_model; /* zero-cost scoring at initialisation */
    int32_t zc_batch;
} custom_arch;

struct runner {
    et_experiment *x;
    char *out_dir, *store_path, *ckpt_path;
    et_store *store;
    int64_t run_id;
    et_host base;
    et_host task_host;
    void *task;
    const et_task_vtable *task_vt;
    et_task_info info;
    et_attn_impl impl[3][ET_MAX_CHOICES]; /* per et_stack_kind */
    void *macs_state[3][ET_MAX_CHOICES];
    et_model *model;
    et_trainer trainer;
    int trainer_ready;
    et_train_config tcfg;
    int64_t checkpoint_every;
    proxy_inst *proxies;
    strategy *strategies;
    strategy system; /* the host context of the task, the model and the proxies */
    float *probe;     /* (1, max_src_len, input_dim) zeros: the latency probe's input */
    et_model *zc_model; /* zero-cost scoring at initialisation */
    int32_t zc_batch;
    custom_arch *custom; /* the arch whose costs are being measured, if custom */
    int no_valid;        /* the task has no validation examples (one-arch spaces only) */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int mkdirs(const char *path, char **err)
{
    char *p = et_strdup(path);
    if (!p)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int rc = et_fail(err, ET_STATUS_ERR_IO, "%s: cannot create: %s", p, strerror(errno));
                free(p);
                return rc;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    free(p);
    return 0;
}

static const et_option_value *train_opt(const runner *r, const char *key)
{
    return et_option_find(et_train_options, r->x->train, key);
}

static const et_option_value *final_opt(const runner *r, const char *key)
{
    return et_option_find(et_final_options, r->x->final, key);
}

/* ---------------------------------------------------------------- costs */

/* All figures of proxy p for arch, measured once per run: the first
 * measurement is kept in the store, so every later question about the arch
 * (a constraint, an evaluation's costs, a resumed run's replay) gets the
 * same figures, noisy measurements such as latency included. A custom
 * arch's key is its text with its own operators. */
static int measure_cached(runner *r, size_t p, const et_arch *arch, double vals[32], char **err)
{
    const et_proxy_vtable *vt = r->proxies[p].sp->plugin->desc->vtable;
    char key[160];
    const et_space *space = r->custom ? &r->custom->space : &r->x->space;
    snprintf(key, sizeof key, "cost/%s/%016llx", r->proxies[p].sp->sec->name,
             (unsigned long long)et_arch_hash(space, arch));
    void *data;
    size_t n;
    int rc = et_store_blob_get(r->store, r->run_id, key, &data, &n, err);
    if (rc < 0)
        return rc;
    if (rc == 1 && n == sizeof(double) * 32) {
        memcpy(vals, data, n);
        free(data);
        return 0;
    }
    free(data);
    char *perr = NULL;
    memset(vals, 0, sizeof(double) * 32);
    rc = vt->measure(r->proxies[p].state, arch, vals, &perr);
    if (rc) {
        et_fail(err, rc, "[%s]: %s", r->proxies[p].sp->sec->name, perr ? perr : "measure failed");
        free(perr);
        return rc;
    }
    return et_store_blob_put(r->store, r->run_id, key, vals, sizeof(double) * 32, err);
}

static int proxy_cost(runner *r, const et_arch *arch, const char *figure, double *value,
                      char **err)
{
    for (size_t p = 0; p < r->x->n_proxies; p++) {
        const et_proxy_vtable *vt = r->proxies[p].sp->plugin->desc->vtable;
        for (size_t k = 0; vt->figures && vt->figures[k]; k++) {
            if (strcmp(vt->figures[k], figure))
                continue;
            double vals[32];
            int rc = measure_cached(r, p, arch, vals, err);
            if (rc)
                return rc;
            *value = vals[k];
            return 0;
        }
    }
    return et_fail(err, ET_STATUS_ERR_USAGE, "no [proxy] gives the figure '%s'", figure);
}

static int satisfies(runner *r, const et_arch *arch, int32_t *ok, char **err)
{
    *ok = 1;
    for (size_t i = 0; i < r->x->n_constraints; i++) {
        const et_constraint *c = &r->x->constraints[i];
        double v = 0;
        int rc = proxy_cost(r, arch, c->figure, &v, err);
        if (rc)
            return rc;
        if (c->cmp == ET_CMP_LE ? v > c->bound : v < c->bound)
            *ok = 0;
    }
    return 0;
}

/* Every figure of every proxy, for the store. */
static int all_costs(runner *r, const et_arch *arch, et_store_figures *out, char **err)
{
    out->n = 0;
    for (size_t p = 0; p < r->x->n_proxies; p++) {
        const et_proxy_vtable *vt = r->proxies[p].sp->plugin->desc->vtable;
        double vals[32];
        int rc = measure_cached(r, p, arch, vals, err);
        if (rc)
            return rc;
        for (size_t k = 0; vt->figures && vt->figures[k] && k < 32; k++)
            if (!et_store_figures_find(out, vt->figures[k]))
                et_store_figures_add(out, vt->figures[k], vals[k]);
    }
    return 0;
}

/* ---------------------------------------------------------------- supernet */

/* Save a model with its trainer's optimizer and position to path, and
 * record it in the store as checkpoint `name`. */
static int save_model_checkpoint(runner *r, const char *name, const char *path, et_model *model,
                                 et_trainer *t, char **err)
{
    et_checkpoint_info *info = calloc(1, sizeof *info);
    if (!info)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    info->step = t->step;
    info->rng = t->rng;
    int rc = et_checkpoint_save(path, model, &t->optim, info, err);
    free(info);
    if (rc)
        return rc;
    /* the store remembers it, with a CRC of the whole file */
    FILE *f = fopen(path, "rb");
    if (!f)
        return et_fail(err, ET_STATUS_ERR_IO, "%s: %s", path, strerror(errno));
    et_store_checkpoint ck = {.step = t->step};
    snprintf(ck.name, sizeof ck.name, "%s", name);
    snprintf(ck.path, sizeof ck.path, "%s", path);
    unsigned char buf[65536];
    uLong crc = crc32(0, Z_NULL, 0);
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        crc = crc32(crc, buf, (uInt)got);
        ck.size += (int64_t)got;
    }
    fclose(f);
    ck.crc32 = (uint32_t)crc;
    return et_store_checkpoint_put(r->store, r->run_id, &ck, err);
}

static int save_checkpoint(runner *r, char **err)
{
    return save_model_checkpoint(r, "supernet", r->ckpt_path, r->model, &r->trainer, err);
}

static int train_supernet(runner *r, int64_t target, char **err)
{
    if (target <= 0)
        target = r->tcfg.steps;
    if (r->trainer.step >= target)
        return 0;
    double t0 = now();
    int64_t start = r->trainer.step;
    while (r->trainer.step < target) {
        int64_t chunk = r->checkpoint_every - r->trainer.step % r->checkpoint_every;
        if (chunk > target - r->trainer.step)
            chunk = target - r->trainer.step;
        double loss;
        int rc = et_trainer_run(&r->trainer, chunk, NULL, &loss, err);
        if (rc)
            return rc;
        double dt = now() - t0;
        double rate = (double)(r->trainer.step - start) / (dt > 0 ? dt : 1e-9);
        et_log(ET_LOG_LEVEL_INFO, "supernet: step %lld/%lld, loss %.4f, %.1f steps/s, ETA %.0f s",
               (long long)r->trainer.step, (long long)target, loss, rate,
               (double)(target - r->trainer.step) / (rate > 0 ? rate : 1));
        if ((rc = save_checkpoint(r, err)))
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- evaluation */

static int remember(strategy *s, const et_arch *arch, double metric, double loss, int32_t ok)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 64;
        record *nr = realloc(s->recs, nc * sizeof *nr);
        if (!nr)
            return ET_STATUS_ERR_NOMEM;
        s->recs = nr;
        s->cap = nc;
    }
    s->recs[s->n++] = (record){*arch, metric, loss, ok};
    return 0;
}

/* The engine's configuration for the experiment's task and [train]. */
static et_model_config model_config(const runner *r)
{
    int32_t bs = r->tcfg.batch_size > r->tcfg.eval_batch_size ? r->tcfg.batch_size
                                                              : r->tcfg.eval_batch_size;
    const et_space *sp = &r->x->space;
    return (et_model_config){.input_dim = r->info.input_dim,
                             .max_len = r->info.max_src_len,
                             .num_classes = r->info.num_classes,
                             .max_batch = bs,
                             .dropout = (float)train_opt(r, "dropout")->f,
                             .activation_dropout =
                                 (float)train_opt(r, "activation_dropout")->f,
                             .label_smoothing = (float)train_opt(r, "label_smoothing")->f,
                             .init = (int32_t)train_opt(r, "init")->i,
                             .pos_init_std = train_opt(r, "pos_init_std")->f,
                             .qkv_xavier = train_opt(r, "qkv_init")->i == 1,
                             .enc_attention = r->impl[ET_STACK_ENC_SELF],
                             .src_vocab = r->info.src_vocab,
                             .tgt_vocab = r->info.tgt_vocab,
                             .max_tgt_len = r->info.max_tgt_len + 1,
                             .positions = sp->positions,
                             .share_embeddings = sp->kind == ET_MODEL_KIND_SEQ2SEQ &&
                                                 sp->share_embeddings,
                             .dec_attention = r->impl[ET_STACK_DEC_SELF],
                             .cross_attention = r->impl[ET_STACK_DEC_CROSS]};
}

/* ---------------------------------------------------------------- custom operators */

static void custom_close(custom_arch *c)
{
    if (!c)
        return;
    /* the models hold the operators' options until they are destroyed */
    et_model_destroy(c->model);
    et_model_destroy(c->zc_model);
    for (int32_t i = 0; i < c->n; i++) {
        if (c->macs_state[i])
            c->impl[i].vt->destroy(c->macs_state[i]);
        et_attn_choice_free(&c->ch[i]);
    }
    free(c);
}

/* The arch with ops[l] as layer l's self-attention in stack `stack`
 * (layers without attention ignore theirs); `who` names the service in
 * errors. */
static int custom_open(runner *r, const et_arch *arch, int32_t stack, const char *const *ops,
                       const char *who, custom_arch **out, char **err)
{
    *out = NULL;
    const et_stack_space *xs = stack == 1 ? &r->x->space.dec : &r->x->space.enc;
    if ((stack != 0 && stack != 1) || !xs->present || !arch || !ops)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "%s: needs an arch, a present stack (0 encoder, 1 decoder) and operator "
                       "texts",
                       who);
    custom_arch *c = calloc(1, sizeof *c);
    if (!c)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    c->stack = stack;
    c->space = r->x->space;
    c->arch = *arch;
    /* the operators become the stack's list; the arch points into it */
    et_stack_space *ss = stack == 1 ? &c->space.dec : &c->space.enc;
    et_stack_arch *sa = stack == 1 ? &c->arch.dec : &c->arch.enc;
    et_text_choices list = {0};
    int rc = 0;
    for (int32_t l = 0; l < sa->layers && l < ET_MAX_LAYERS && !rc; l++) {
        et_layer_arch *g = &sa->layer[l];
        int attn = g->block == ET_BLOCK_STANDARD || g->block == ET_BLOCK_ATTENTION_ONLY;
        g->attention = 0;
        if (!attn)
            continue;
        if (!ops[l] || !*ops[l] || strlen(ops[l]) >= ET_MAX_CHOICE_TEXT) {
            rc = et_fail(err, ET_STATUS_ERR_USAGE,
                         "%s: layer %d: an operator text of 1..%d characters", who, l,
                         ET_MAX_CHOICE_TEXT - 1);
            break;
        }
        int32_t k = 0;
        while (k < list.n && strcmp(list.v[k], ops[l]))
            k++;
        if (k == list.n) {
            if (list.n == ET_MAX_CHOICES) {
                rc = et_fail(err, ET_STATUS_ERR_USAGE, "%s: over %d operators", who,
                             ET_MAX_CHOICES);
                break;
            }
            snprintf(list.v[list.n++], ET_MAX_CHOICE_TEXT, "%s", ops[l]);
        }
        g->attention = k;
    }
    if (!rc) {
        if (!list.n)
            snprintf(list.v[list.n++], ET_MAX_CHOICE_TEXT, "%s", ss->attention.v[0]);
        ss->attention = list;
        char *verr = NULL;
        if (et_arch_validate(&c->space, &c->arch, &verr)) {
            rc = et_fail(err, ET_STATUS_ERR_USAGE, "%s: %s", who, verr);
            free(verr);
        }
    }
    for (int32_t i = 0; !rc && i < list.n; i++) {
        c->n = i + 1;
        rc = et_attn_choice_resolve(&r->x->reg, list.v[i], who,
                                    stack ? "decoder_attention" : "encoder_attention", "", 0,
                                    &c->ch[i], err);
        if (!rc)
            c->impl[i] = (et_attn_impl){c->ch[i].plugin->desc->vtable, c->ch[i].opts};
    }
    if (rc) {
        custom_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* The engine's configuration with c's operators. */
static et_model_config custom_config(const runner *r, const custom_arch *c)
{
    et_model_config mc = model_config(r);
    if (c->stack == 0)
        mc.enc_attention = c->impl;
    else
        mc.dec_attention = c->impl;
    return mc;
}

/* c->model, made and initialised (as train_custom starts from scratch)
 * on first use. */
static int custom_model(runner *r, custom_arch *c, char **err)
{
    if (c->model)
        return 0;
    et_model_config mc = custom_config(r, c);
    et_model *m = NULL;
    int rc = et_model_create(&c->space, &mc, &r->base, &m, err);
    if (rc) {
        et_model_destroy(m);
        return rc;
    }
    et_model_init(m, r->base.seed ^ UINT64_C(0xc057011));
    c->model = m;
    return 0;
}

/* From here until custom_leave, the proxies measure c: they see its space,
 * and the host's MAC counts, latency, memory and zero-cost scoring use its
 * operators. */
static int custom_enter(runner *r, custom_arch *c, char **err)
{
    for (int32_t i = 0; i < c->n; i++) {
        if (c->macs_state[i])
            continue;
        char *perr = NULL;
        int rc = c->impl[i].vt->create(&r->task_host, c->ch[i].opts, &c->macs_state[i], &perr);
        if (rc) {
            et_fail(err, rc, "attention %s: %s", c->ch[i].text, perr ? perr : "failed");
            free(perr);
            c->macs_state[i] = NULL;
            return rc;
        }
    }
    r->custom = c;
    for (size_t p = 0; p < r->x->n_proxies; p++)
        r->proxies[p].host.space = &c->space;
    return 0;
}

static void custom_leave(runner *r)
{
    r->custom = NULL;
    for (size_t p = 0; p < r->x->n_proxies; p++)
        r->proxies[p].host.space = &r->x->space;
}

static int has_figure(const runner *r, const char *figure)
{
    for (size_t p = 0; p < r->x->n_proxies; p++) {
        const et_proxy_vtable *vt = r->proxies[p].sp->plugin->desc->vtable;
        for (size_t k = 0; vt->figures && vt->figures[k]; k++)
            if (!strcmp(vt->figures[k], figure))
                return 1;
    }
    return 0;
}

/* One figure (NULL: every figure, into all) or the constraints (ok not
 * NULL) of c, measured with its operators. */
static int custom_costs(runner *r, custom_arch *c, const char *figure, double *value,
                        et_store_figures *all, int32_t *ok, char **err)
{
    int rc = custom_enter(r, c, err);
    if (rc)
        return rc;
    if (ok)
        rc = satisfies(r, &c->arch, ok, err);
    else if (figure)
        rc = proxy_cost(r, &c->arch, figure, value, err);
    else
        rc = all_costs(r, &c->arch, all, err);
    custom_leave(r);
    return rc;
}

/* Train arch from scratch on a fresh model (the supernet is untouched). */
static int standalone(runner *r, const et_arch *arch, int64_t steps, int32_t split,
                      double *metric, double *loss, double *repeat_share, char **err)
{
    et_model *m = NULL;
    et_model_config mc = model_config(r);
    int rc = et_model_create(&r->x->space, &mc, &r->base, &m, err);
    if (rc)
        return rc;
    et_model_init(m, r->base.seed ^ 0x5157a1d0e5ull);
    et_train_config tc = r->tcfg;
    tc.steps = steps;
    tc.optim.total_steps = steps;
    et_trainer t;
    if (!(rc = et_trainer_create(&t, &tc, m, r->task_vt, r->task, &r->info, err))) {
        rc = et_trainer_run(&t, steps, arch, NULL, err);
        if (!rc)
            rc = et_trainer_evaluate(&t, arch, split, metric, loss, err);
        *repeat_share = t.repeat_share;
        et_trainer_destroy(&t);
    }
    et_model_destroy(m);
    return rc;
}

/* One evaluation through the store: the stored result when there is one
 * for (strategy — or `label` when not NULL —, split, conditions, arch), else computed — with inherited
 * supernet weights, or by training from scratch for `standalone_steps`
 * updates when that is > 0 — and stored before it is returned. val (may be
 * NULL) gets the stored record with its costs. */
static int stored_eval_with(strategy *s, et_trainer *inherit, const char *label,
                            const et_arch *arch, int32_t split, const char *stage,
                            const char *conditions, int64_t standalone_steps,
                            et_eval_result *res, et_store_eval *val, char **err)
{
    runner *r = s->r;
    char text[16384];
    if (et_arch_format(&r->x->space, arch, text, sizeof text) < 0)
        return et_fail(err, ET_STATUS_ERR_USAGE, "architecture text too long");
    et_store_eval_key key = {r->run_id, label ? label : s->sp->sec->name,
                             split == ET_SPLIT_TEST ? "test" : "valid", conditions,
                             et_arch_hash(&r->x->space, arch), text};
    et_store_eval got;
    int rc = et_store_eval_get(r->store, &key, &got, err);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        double t0 = now(), metric, loss, repeat_share = NAN;
        if (split == ET_SPLIT_VALID && r->no_valid) {
            metric = loss = NAN; /* nothing to measure on: stored without figures */
        } else if (standalone_steps > 0) {
            rc = standalone(r, arch, standalone_steps, split, &metric, &loss, &repeat_share, err);
        } else {
            rc = et_trainer_evaluate(inherit, arch, split, &metric, &loss, err);
            repeat_share = inherit->repeat_share;
        }
        if (rc)
            return rc;
        memset(&got, 0, sizeof got);
        snprintf(got.stage, sizeof got.stage, "%s", stage);
        if (isfinite(metric))
            et_store_figures_add(&got.metrics, "metric", metric);
        if (isfinite(loss))
            et_store_figures_add(&got.metrics, "loss", loss);
        if (r->info.tgt_vocab > 0 && isfinite(loss)) /* token tasks: the loss is per target token */
            et_store_figures_add(&got.metrics, "perplexity", exp(loss));
        if (isfinite(repeat_share)) { /* decoded: the share of "repeater" hypotheses */
            et_store_figures_add(&got.metrics, "repeat_share", repeat_share);
            et_log(ET_LOG_LEVEL_INFO, "[%s] %s %s: %s %.2f, loss %.4f, %.1f %% of hypotheses with "
                   "a token %d+ times in a row", key.strategy, key.split, stage,
                   r->info.metric ? r->info.metric : "metric", metric, loss, 100 * repeat_share,
                   ET_REPEAT_RUN);
        }
        if ((rc = all_costs(r, arch, &got.costs, err)))
            return rc;
        got.wall = now() - t0;
        if ((rc = et_store_eval_put(r->store, &key, &got, 1, err)))
            return rc;
    }
    const et_store_figure *m = et_store_figures_find(&got.metrics, "metric");
    const et_store_figure *l = et_store_figures_find(&got.metrics, "loss");
    *res = (et_eval_result){m ? m->value : NAN, l ? l->value : NAN, rc == 1 ? 0 : got.wall, rc == 1};
    if (val)
        *val = got;
    return 0;
}

static int stored_eval(strategy *s, const char *label, const et_arch *arch, int32_t split,
                       const char *stage, const char *conditions, int64_t standalone_steps,
                       et_eval_result *res, et_store_eval *val, char **err)
{
    return stored_eval_with(s, &s->r->trainer, label, arch, split, stage, conditions,
                            standalone_steps, res, val, err);
}

static int host_evaluate(void *ctx, const et_arch *archs, int32_t n, et_eval_result *results,
                         char **err)
{
    strategy *s = ctx;
    runner *r = s->r;
    char cond[64];
    snprintf(cond, sizeof cond, "supernet step=%lld", (long long)r->trainer.step);
    for (int32_t i = 0; i < n; i++) {
        char *verr = NULL;
        if (et_arch_validate(&r->x->space, &archs[i], &verr)) {
            int rc = et_fail(err, ET_STATUS_ERR_USAGE, "evaluate: %s", verr);
            free(verr);
            return rc;
        }
        int rc = stored_eval(s, NULL, &archs[i], ET_SPLIT_VALID, "supernet", cond, 0, &results[i],
                             NULL, err);
        if (rc)
            return rc;
        int32_t ok;
        if ((rc = satisfies(r, &archs[i], &ok, err)))
            return rc;
        if (remember(s, &archs[i], results[i].metric, results[i].loss, ok))
            return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
        s->evals++;
        s->reused += results[i].from_store;
    }
    return 0;
}

static int host_train_supernet(void *ctx, int64_t steps, char **err)
{
    strategy *s = ctx;
    return train_supernet(s->r, steps, err);
}

static int host_train_standalone(void *ctx, const et_arch *arch, int64_t steps,
                                 et_eval_result *res, char **err)
{
    strategy *s = ctx;
    if (steps <= 0)
        steps = s->r->tcfg.steps;
    char cond[64];
    snprintf(cond, sizeof cond, "standalone steps=%lld", (long long)steps);
    return stored_eval(s, NULL, arch, ET_SPLIT_VALID, "standalone", cond, steps, res, NULL, err);
}

static int host_cost(void *ctx, const et_arch *arch, const char *figure, double *value,
                     char **err)
{
    strategy *s = ctx;
    return proxy_cost(s->r, arch, figure, value, err);
}

static int host_satisfies(void *ctx, const et_arch *arch, int32_t *ok, char **err)
{
    strategy *s = ctx;
    return satisfies(s->r, arch, ok, err);
}

/* One timed inference of the latency convention (spec/costs.md): a
 * classifier's forward at the task's length, or a seq2seq model's encoder
 * on 30 source tokens and 30 incremental decoding steps (batch 1). */
static int latency_once(runner *r, et_model *m, int32_t len, char **err)
{
    double loss;
    if (r->info.model_kind == ET_MODEL_KIND_ENCODER) {
        int32_t label = 0;
        et_batch b = {.size = 1, .src_len = len, .src_vec = r->probe, .labels = &label};
        return et_model_forward(m, &b, 0, 0, 0, &loss, NULL, err);
    }
    int32_t *tok = (int32_t *)r->probe, steps = len;
    for (int32_t i = 0; i < len; i++)
        tok[i] = r->info.eos + 2 < r->info.src_vocab ? r->info.eos + 2 : 0;
    int32_t src_len = len;
    et_batch b = {.size = 1, .src_len = len, .src_tok = tok, .src_lens = &src_len};
    int rc = et_model_decode_begin(m, &b, 1, steps, err);
    int32_t next = r->info.bos;
    for (int32_t t = 0; t < steps && !rc; t++) {
        const float *lp;
        rc = et_model_decode_step(m, &next, t, &lp, err);
        next = tok[0];
    }
    return rc;
}

static int host_measure_latency(void *ctx, const et_arch *arch, int32_t warmup, int32_t runs,
                                double *mean_ms, double *std_ms, char **err)
{
    runner *r = ((strategy *)ctx)->r;
    if (runs < 1 || warmup < 0)
        return et_fail(err, ET_STATUS_ERR_USAGE, "latency: runs must be >= 1, warmup >= 0");
    int tokens = r->info.model_kind != ET_MODEL_KIND_ENCODER;
    int32_t len = r->info.max_src_len;
    if (tokens) {
        len = 30; /* the translation reference lengths: 30 source tokens, 30 steps */
        if (len > r->info.max_src_len)
            len = r->info.max_src_len;
        if (len > r->info.max_tgt_len + 1)
            len = r->info.max_tgt_len + 1;
    }
    size_t floats = (size_t)len * (size_t)(r->info.input_dim > 1 ? r->info.input_dim : 1) + 1;
    if (!r->probe && !(r->probe = calloc(floats, sizeof *r->probe)))
        return et_fail(err, ET_STATUS_ERR_NOMEM, "latency: out of memory");
    /* a custom arch runs on a model with its own operators */
    int rc = r->custom ? custom_model(r, r->custom, err) : 0;
    et_model *m = r->custom ? r->custom->model : r->model;
    if (!rc)
        rc = et_model_bind(m, arch, 1, r->info.model_kind == ET_MODEL_KIND_ENCODER
                                           ? len
                                           : (len > 0 ? len : 1),
                           err);
    if (rc)
        return rc;
    double *t = malloc(sizeof *t * (size_t)runs);
    if (!t)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "latency: out of memory");
    for (int32_t i = 0; i < warmup + runs && !rc; i++) {
        double t0 = now();
        rc = latency_once(r, m, len, err);
        if (i >= warmup)
            t[i - warmup] = 1e3 * (now() - t0);
    }
    if (!rc)
        et_trimmed_stats(t, (size_t)runs, 0.1, mean_ms, std_ms);
    free(t);
    return rc;
}

static int host_training_bytes(void *ctx, const et_arch *arch, int32_t batch, double *bytes,
                               char **err)
{
    runner *r = ((strategy *)ctx)->r;
    if (batch <= 0)
        batch = r->tcfg.batch_size;
    int rc = r->custom ? custom_model(r, r->custom, err) : 0;
    et_model *m = r->custom ? r->custom->model : r->model;
    if (!rc)
        rc = et_model_bind(m, arch, batch, r->info.max_src_len, err);
    if (rc)
        return rc;
    int32_t nt;
    const et_tensor *t = et_model_tensors(m, &nt);
    double params = 0;
    for (int32_t i = 0; i < nt; i++)
        params += (double)t[i].bound_rows * t[i].bound_cols;
    /* parameter, gradient, two AdamW moments (floats) and an update count */
    *bytes = params * (4.0 * sizeof(float) + sizeof(int64_t)) +
             (double)et_model_activation_bytes(m);
    return 0;
}

static double host_attention_macs(void *ctx, int32_t stack, int32_t choice,
                                  const struct et_attn_shape *shape)
{
    runner *r = ((strategy *)ctx)->r;
    const custom_arch *c = r->custom;
    if (c && stack == c->stack) {
        if (choice < 0 || choice >= c->n || !c->macs_state[choice])
            return NAN;
        return c->impl[choice].vt->macs(c->macs_state[choice], shape);
    }
    if (stack < 0 || stack > 2 || choice < 0 || choice >= r->x->n_attn[stack] ||
        !r->macs_state[stack][choice])
        return NAN;
    const et_attention_vtable *vt = r->x->attn[stack][choice].plugin->desc->vtable;
    return vt->macs(r->macs_state[stack][choice], shape);
}

/* ---------------------------------------------------------------- setup */

static int host_blob_put(void *ctx, const char *key, const void *data, size_t n, char **err)
{
    runner *r = ((strategy *)ctx)->r;
    return et_store_blob_put(r->store, r->run_id, key, data, n, err);
}

static int host_blob_get(void *ctx, const char *key, void **data, size_t *n, char **err)
{
    runner *r = ((strategy *)ctx)->r;
    return et_store_blob_get(r->store, r->run_id, key, data, n, err);
}

/* ---------------------------------------------------------------- soft choices */

static int32_t soft_count(const runner *r, int32_t ops)
{
    const et_space *sp = &r->x->space;
    int32_t n = 0;
    const et_stack_space *st[2] = {&sp->enc, &sp->dec};
    int present[2] = {sp->kind != ET_MODEL_KIND_DECODER, sp->kind != ET_MODEL_KIND_ENCODER};
    for (int i = 0; i < 2; i++)
        if (present[i])
            n += et_stack_max_layers(st[i]) * (3 + (ops ? st[i]->attention.n : 0));
    return n;
}

static int32_t host_soft_weight_count(void *ctx, int32_t ops)
{
    return soft_count(((strategy *)ctx)->r, ops);
}

/* [train] init_from: the parameters of model m from that checkpoint
 * (checked against the space when the experiment was loaded; a file that
 * changed since is refused as a configuration error too). */
static int load_init_from(const runner *r, et_model *m, const char *what, char **err)
{
    const char *path = train_opt(r, "init_from")->s;
    if (!path || !*path)
        return 0;
    et_checkpoint_info *info = calloc(1, sizeof *info);
    if (!info)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    char *why = NULL;
    int rc = et_checkpoint_load(path, m, NULL, info, &why);
    free(info);
    if (rc) {
        rc = et_fail(err, rc == ET_STATUS_ERR_NOMEM ? rc : ET_STATUS_ERR_USAGE,
                     "[train] init_from: %s", why ? why : "cannot load");
        free(why);
        return rc;
    }
    et_log(ET_LOG_LEVEL_INFO, "%s: parameters from %s", what, path);
    return 0;
}

/* The private soft supernet of strategy s, made on first use. */
static int soft_ready(strategy *s, int32_t ops, char **err)
{
    runner *r = s->r;
    if (s->soft_ready) {
        if (s->soft_ops != (ops != 0))
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "soft choices: operator mixing cannot change during a run");
        return 0;
    }
    et_model_config mc = model_config(r);
    et_host h = r->base;
    h.seed = s->host.seed ^ UINT64_C(0x50f7c401ce5);
    int rc = et_model_create(&r->x->space, &mc, &h, &s->soft_model, err);
    if (rc)
        return rc;
    et_model_init(s->soft_model, h.seed);
    char what[320];
    snprintf(what, sizeof what, "[%s] soft supernet", s->sp->sec->name);
    if ((rc = load_init_from(r, s->soft_model, what, err)))
        return rc;
    et_train_config tc = r->tcfg;
    tc.seed ^= s->host.seed;
    tc.sampling = ET_SAMPLING_UNIFORM; /* one fixed arch per update: seek counts one member */
    if ((rc = et_trainer_create(&s->soft_trainer, &tc, s->soft_model, r->task_vt, r->task,
                                &r->info, err))) {
        et_trainer_destroy(&s->soft_trainer);
        return rc;
    }
    s->soft_ckpt = et_strdupf("%s/%s.ckpt", r->out_dir, s->sp->sec->name);
    if (!s->soft_ckpt)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    for (char *c = s->soft_ckpt + strlen(r->out_dir) + 1; *c; c++)
        if (*c == ' ' || *c == '/')
            *c = '_';
    s->soft_ready = 1;
    s->soft_ops = ops != 0;
    return 0;
}

/* Hand the weights to the engine, stack by stack. */
static int soft_set(strategy *s, const float *w, char **err)
{
    const et_space *sp = &s->r->x->space;
    const et_stack_space *st[2] = {&sp->enc, &sp->dec};
    int present[2] = {sp->kind != ET_MODEL_KIND_DECODER, sp->kind != ET_MODEL_KIND_ENCODER};
    float block[ET_MAX_LAYERS * 3], ops[ET_MAX_LAYERS * ET_MAX_CHOICES];
    for (int i = 0; i < 2; i++) {
        if (!present[i])
            continue;
        int32_t L = et_stack_max_layers(st[i]), n_ops = s->soft_ops ? st[i]->attention.n : 0;
        for (int32_t l = 0; l < L; l++) {
            for (int k = 0; k < 3; k++)
                block[l * 3 + k] = *w++;
            for (int32_t o = 0; o < n_ops; o++)
                ops[l * n_ops + o] = *w++;
        }
        int rc = et_model_set_soft(s->soft_model, i, block, s->soft_ops ? ops : NULL, err);
        if (rc)
            return rc;
    }
    return 0;
}

static void soft_grads(strategy *s, float *dw)
{
    const et_space *sp = &s->r->x->space;
    const et_stack_space *st[2] = {&sp->enc, &sp->dec};
    int present[2] = {sp->kind != ET_MODEL_KIND_DECODER, sp->kind != ET_MODEL_KIND_ENCODER};
    for (int i = 0; i < 2; i++) {
        if (!present[i])
            continue;
        const float *og;
        const float *bg = et_model_soft_grads(s->soft_model, i, &og);
        int32_t L = et_stack_max_layers(st[i]), n_ops = s->soft_ops ? st[i]->attention.n : 0;
        for (int32_t l = 0; l < L; l++) {
            for (int k = 0; k < 3; k++)
                *dw++ = bg[l * 4 + k];
            for (int32_t o = 0; o < n_ops; o++)
                *dw++ = og[l * ET_MAX_CHOICES + o];
        }
    }
}

static int host_soft_step(void *ctx, int32_t ops, const float *w, int32_t update, double *loss,
                          float *dw, char **err)
{
    strategy *s = ctx;
    runner *r = s->r;
    int rc = soft_ready(s, ops, err);
    if (rc || (rc = soft_set(s, w, err)))
        return rc;
    et_arch largest;
    et_arch_largest(&r->x->space, &largest);
    if (update) {
        double l;
        if ((rc = et_trainer_run(&s->soft_trainer, 1, &largest, &l, err)))
            return rc;
        *loss = l;
        if (dw)
            soft_grads(s, dw);
        return 0;
    }
    /* measure on the next validation batch: no update, no dropout */
    et_trainer *t = &s->soft_trainer;
    int32_t bs = r->tcfg.batch_size;
    if ((rc = et_model_bind(s->soft_model, &largest, bs, r->info.max_src_len, err)))
        return rc;
    int64_t count = r->task_vt->batch_count(r->task, ET_SPLIT_VALID, bs);
    if (count < 1)
        return et_fail(err, ET_STATUS_ERR_USAGE, "soft step: the validation split is empty");
    if (s->soft_valid_batch >= count) {
        s->soft_valid_batch = 0;
        s->soft_valid_epoch++;
    }
    et_batch b;
    char *terr = NULL;
    rc = r->task_vt->batch(r->task, ET_SPLIT_VALID, s->soft_valid_epoch, bs, s->soft_valid_batch++,
                           &b, &terr);
    if (rc) {
        et_fail(err, rc, "soft step: %s", terr ? terr : "the task failed to give a batch");
        free(terr);
        return rc;
    }
    double l;
    if ((rc = et_model_forward(s->soft_model, &b, 0, t->cfg.seed, t->step, &l, NULL, err)))
        return rc;
    int64_t units = et_model_units(s->soft_model);
    *loss = units ? l / (double)units : 0.0;
    if (dw) {
        if (units && (rc = et_model_backward(s->soft_model, 1.0f / (float)units, err)))
            return rc;
        soft_grads(s, dw);
        et_model_zero_grads(s->soft_model);
    }
    return 0;
}

static int host_soft_checkpoint(void *ctx, const void *state, size_t n, char **err)
{
    strategy *s = ctx;
    runner *r = s->r;
    if (!s->soft_ready)
        return et_fail(err, ET_STATUS_ERR_USAGE, "soft checkpoint before any soft step");
    char key[320];
    snprintf(key, sizeof key, "%s/soft/%lld", s->sp->sec->name, (long long)s->soft_trainer.step);
    /* the state first: a checkpoint record is only ever newer than its state;
     * the validation position goes with it */
    int64_t pos[2] = {s->soft_valid_epoch, s->soft_valid_batch};
    size_t total = n + sizeof pos;
    unsigned char *buf = malloc(total);
    if (!buf)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    memcpy(buf, pos, sizeof pos);
    if (n)
        memcpy(buf + sizeof pos, state, n);
    int rc = et_store_blob_put(r->store, r->run_id, key, buf, total, err);
    free(buf);
    if (!rc)
        rc = save_model_checkpoint(r, s->sp->sec->name, s->soft_ckpt, s->soft_model,
                                   &s->soft_trainer, err);
    return rc;
}

static int host_soft_resume(void *ctx, int32_t ops, void **state, size_t *n, char **err)
{
    strategy *s = ctx;
    runner *r = s->r;
    *state = NULL;
    *n = 0;
    int rc = soft_ready(s, ops, err);
    if (rc)
        return rc;
    et_store_checkpoint ck;
    rc = et_store_checkpoint_latest(r->store, r->run_id, s->sp->sec->name, &ck, err);
    if (rc <= 0)
        return rc;
    et_checkpoint_info *info = calloc(1, sizeof *info);
    if (!info)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    rc = et_checkpoint_load(ck.path, s->soft_model, &s->soft_trainer.optim, info, err);
    if (!rc) {
        et_trainer_seek(&s->soft_trainer, info->step);
        s->soft_trainer.rng = info->rng;
        char key[320];
        snprintf(key, sizeof key, "%s/soft/%lld", s->sp->sec->name, (long long)info->step);
        void *data = NULL;
        size_t len = 0;
        rc = et_store_blob_get(r->store, r->run_id, key, &data, &len, err);
        int64_t pos[2];
        if (rc == 0 || (rc == 1 && len < sizeof pos)) {
            rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                         "%s: the soft supernet checkpoint at step %lld has no strategy state",
                         r->store_path, (long long)info->step);
        } else if (rc == 1) {
            memcpy(pos, data, sizeof pos);
            s->soft_valid_epoch = pos[0];
            s->soft_valid_batch = pos[1];
            *n = len - sizeof pos;
            *state = malloc(*n ? *n : 1);
            if (!*state)
                rc = et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
            else if (*n)
                memcpy(*state, (unsigned char *)data + sizeof pos, *n);
        }
        free(data);
        if (rc == 1)
            et_log(ET_LOG_LEVEL_INFO, "[%s] resumed the soft supernet at step %lld",
                   s->sp->sec->name, (long long)info->step);
    }
    free(info);
    return rc;
}

static int host_soft_evaluate(void *ctx, const et_arch *arch, et_eval_result *res, char **err)
{
    strategy *s = ctx;
    runner *r = s->r;
    if (!s->soft_ready)
        return et_fail(err, ET_STATUS_ERR_USAGE, "soft evaluate before any soft step");
    char *verr = NULL;
    if (et_arch_validate(&r->x->space, arch, &verr)) {
        int rc = et_fail(err, ET_STATUS_ERR_USAGE, "soft evaluate: %s", verr);
        free(verr);
        return rc;
    }
    et_model_clear_soft(s->soft_model); /* the discrete arch on the inherited weights */
    char cond[80];
    snprintf(cond, sizeof cond, "soft supernet step=%lld", (long long)s->soft_trainer.step);
    int rc = stored_eval_with(s, &s->soft_trainer, NULL, arch, ET_SPLIT_VALID, "soft supernet",
                              cond, 0, res, NULL, err);
    if (rc)
        return rc;
    int32_t ok;
    if ((rc = satisfies(r, arch, &ok, err)))
        return rc;
    if (remember(s, arch, res->metric, res->loss, ok))
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    s->evals++;
    s->reused += res->from_store;
    return 0;
}

/* ---------------------------------------------------------------- zero-cost */

static int host_zerocost(void *ctx, const et_arch *arch, int32_t batch, uint64_t seed,
                         double *values, char **err)
{
    runner *r = ((strategy *)ctx)->r;
    if (batch < 2)
        return et_fail(err, ET_STATUS_ERR_USAGE, "zero-cost: batch must be >= 2");
    /* a custom arch is scored on a model with its own operators */
    custom_arch *c = r->custom;
    et_model **zc = c ? &c->zc_model : &r->zc_model;
    int32_t *zc_batch = c ? &c->zc_batch : &r->zc_batch;
    if (!*zc || *zc_batch < batch) {
        et_model_destroy(*zc);
        *zc = NULL;
        et_model_config mc = c ? custom_config(r, c) : model_config(r);
        mc.max_batch = batch;
        mc.dropout = 0;
        int rc = et_model_create(c ? &c->space : &r->x->space, &mc, &r->base, zc, err);
        if (rc)
            return rc;
        *zc_batch = batch;
    }
    et_batch b;
    char *terr = NULL;
    int rc = r->task_vt->batch(r->task, ET_SPLIT_TRAIN, 0, batch, 0, &b, &terr);
    if (rc) {
        et_fail(err, rc, "zero-cost: %s", terr ? terr : "the task failed to give a batch");
        free(terr);
        return rc;
    }
    for (int k = 0; k < ET_ZC_KINDS; k++)
        if ((rc = et_zerocost(*zc, arch, &b, k, seed, &values[k], err)))
            return rc;
    values[ET_ZC_KINDS] = et_zerocost_lts(*zc);
    return 0;
}

/* ---------------------------------------------------------------- custom operators */

static uint64_t fnv_bytes(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return h;
}

static int host_train_custom(void *ctx, const et_arch *arch, int32_t stack, const char *const *ops,
                             const float *init, int64_t init_n, int64_t steps, int32_t split,
                             int32_t final_rank, et_eval_result *res, float **weights,
                             int64_t *weights_n, char **err)
{
    strategy *s = ctx;
    runner *r = s->r;
    if (weights) {
        *weights = NULL;
        *weights_n = 0;
    }
    if (steps < 1 || (split != ET_SPLIT_VALID && split != ET_SPLIT_TEST))
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "train_custom: needs steps >= 1 and the valid or test split");
    if (split == ET_SPLIT_VALID && r->no_valid) /* before any training */
        return et_fail(err, ET_STATUS_ERR_USAGE, "train_custom: the task has no validation "
                                                 "examples to score custom operators on");
    custom_arch *c;
    int rc = custom_open(r, arch, stack, ops, "train_custom", &c, err);
    if (rc)
        return rc;
    void *blob = NULL;
    size_t blob_n = 0;
    /* the store key: the arch with its operators, the steps and the init */
    char *text = malloc(16384);
    if (!text) {
        rc = et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (et_arch_format(&c->space, &c->arch, text, 16384) < 0) {
        rc = et_fail(err, ET_STATUS_ERR_USAGE, "architecture text too long");
        goto done;
    }
    uint64_t ih = init ? fnv_bytes(UINT64_C(0xcbf29ce484222325), init,
                                   sizeof(float) * (size_t)(init_n > 0 ? init_n : 0))
                       : 0;
    char cond[96], wkey[160];
    snprintf(cond, sizeof cond, "custom steps=%lld init=%016llx", (long long)steps,
             (unsigned long long)ih);
    et_store_eval_key key = {r->run_id, s->sp->sec->name,
                             split == ET_SPLIT_TEST ? "test" : "valid", cond,
                             et_arch_hash(&c->space, &c->arch), text};
    uint64_t kh = fnv_bytes(fnv_bytes(UINT64_C(0xcbf29ce484222325), text, strlen(text)), cond,
                            strlen(cond));
    snprintf(wkey, sizeof wkey, "weights/%s/%s/%016llx", s->sp->sec->name, key.split,
             (unsigned long long)kh);
    et_store_eval got;
    rc = et_store_eval_get(r->store, &key, &got, err);
    if (rc == 1 && weights) {
        int b = et_store_blob_get(r->store, r->run_id, wkey, &blob, &blob_n, err);
        if (b < 0) {
            rc = b;
            goto done;
        }
        if (b == 0)
            rc = 0; /* the weights were not kept: train again */
    }
    if (rc < 0)
        goto done;
    int from_store = rc == 1;
    rc = 0;
    if (!from_store) {
        double t0 = now(), metric = 0, loss = 0;
        /* a fresh model starts initialised from the experiment's seed */
        if ((rc = custom_model(r, c, err)))
            goto done;
        int64_t n;
        float *p = et_model_params(c->model, &n);
        if (init && init_n != n) {
            rc = et_fail(err, ET_STATUS_ERR_USAGE,
                         "train_custom: init has %lld floats, the model %lld parameters",
                         (long long)init_n, (long long)n);
            goto done;
        }
        if (init)
            memcpy(p, init, sizeof(float) * (size_t)n);
        et_train_config tc = r->tcfg;
        tc.steps = steps;
        tc.optim.total_steps = steps;
        et_trainer t;
        if (!(rc = et_trainer_create(&t, &tc, c->model, r->task_vt, r->task, &r->info, err))) {
            rc = et_trainer_run(&t, steps, &c->arch, NULL, err);
            if (!rc)
                rc = et_trainer_evaluate(&t, &c->arch, split, &metric, &loss, err);
        }
        et_trainer_destroy(&t);
        if (rc)
            goto done;
        memset(&got, 0, sizeof got);
        snprintf(got.stage, sizeof got.stage, "%s", final_rank >= 0 ? "final" : "custom");
        et_store_figures_add(&got.metrics, "metric", metric);
        et_store_figures_add(&got.metrics, "loss", loss);
        /* the costs of the arch with its own operators */
        if ((rc = custom_costs(r, c, NULL, NULL, &got.costs, NULL, err)))
            goto done;
        got.wall = now() - t0;
        if (weights &&
            (rc = et_store_blob_put(r->store, r->run_id, wkey, p, sizeof(float) * (size_t)n, err)))
            goto done;
        if ((rc = et_store_eval_put(r->store, &key, &got, 1, err)))
            goto done;
        if (final_rank >= 0 && (rc = et_store_final_put(r->store, &key, final_rank, err)))
            goto done;
        if (weights) {
            blob = malloc(sizeof(float) * (size_t)n);
            if (!blob) {
                rc = et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
                goto done;
            }
            memcpy(blob, p, sizeof(float) * (size_t)n);
            blob_n = sizeof(float) * (size_t)n;
        }
    }
    {
        const et_store_figure *mf = et_store_figures_find(&got.metrics, "metric");
        const et_store_figure *lf = et_store_figures_find(&got.metrics, "loss");
        *res = (et_eval_result){mf ? mf->value : NAN, lf ? lf->value : NAN,
                                from_store ? 0 : got.wall, from_store};
        if (weights) {
            *weights = blob;
            *weights_n = (int64_t)(blob_n / sizeof(float));
            blob = NULL;
        }
        s->evals++;
        s->reused += from_store;
        if (final_rank >= 0)
            s->finals_done++;
    }
done:
    free(blob);
    free(text);
    custom_close(c);
    return rc;
}

static int host_cost_custom(void *ctx, const et_arch *arch, int32_t stack, const char *const *ops,
                            const char *figure, double *value, char **err)
{
    runner *r = ((strategy *)ctx)->r;
    *value = NAN;
    if (!figure)
        return et_fail(err, ET_STATUS_ERR_USAGE, "cost_custom: no figure named");
    if (!has_figure(r, figure))
        return 0;
    custom_arch *c;
    int rc = custom_open(r, arch, stack, ops, "cost_custom", &c, err);
    if (!rc)
        rc = custom_costs(r, c, figure, value, NULL, NULL, err);
    custom_close(c);
    return rc;
}

static int host_satisfies_custom(void *ctx, const et_arch *arch, int32_t stack,
                                 const char *const *ops, int32_t *ok, char **err)
{
    runner *r = ((strategy *)ctx)->r;
    *ok = 1;
    if (!r->x->n_constraints)
        return 0;
    custom_arch *c;
    int rc = custom_open(r, arch, stack, ops, "satisfies_custom", &c, err);
    if (!rc)
        rc = custom_costs(r, c, NULL, NULL, NULL, ok, err);
    custom_close(c);
    return rc;
}

static int host_propose(void *ctx, const et_arch *archs, int32_t n, char **err)
{
    strategy *s = ctx;
    runner *r = s->r;
    if (n < 0 || (n > 0 && !archs))
        return et_fail(err, ET_STATUS_ERR_USAGE, "propose: %d candidates", n);
    for (int32_t i = 0; i < n; i++) {
        char *verr = NULL;
        if (et_arch_validate(&r->x->space, &archs[i], &verr)) {
            int rc = et_fail(err, ET_STATUS_ERR_USAGE, "propose: candidate %d: %s", i, verr);
            free(verr);
            return rc;
        }
    }
    et_arch *copy = n ? malloc(sizeof *copy * (size_t)n) : NULL;
    if (n && !copy)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    if (n)
        memcpy(copy, archs, sizeof *copy * (size_t)n);
    free(s->proposed);
    s->proposed = copy;
    s->n_proposed = n;
    return 0;
}

static void host_for(runner *r, et_host *h, const char *section, void *ctx)
{
    et_host_init(h, et_experiment_section_seed(r->x, section), r->x->threads, &r->x->space);
    h->ctx = ctx;
    h->task = &r->info;
    h->attention_macs = host_attention_macs;
    h->train_supernet = host_train_supernet;
    h->evaluate = host_evaluate;
    h->train_standalone = host_train_standalone;
    h->cost = host_cost;
    h->satisfies = host_satisfies;
    h->measure_latency = host_measure_latency;
    h->training_bytes = host_training_bytes;
    h->blob_put = host_blob_put;
    h->blob_get = host_blob_get;
    h->soft_weight_count = host_soft_weight_count;
    h->soft_step = host_soft_step;
    h->soft_checkpoint = host_soft_checkpoint;
    h->soft_resume = host_soft_resume;
    h->soft_evaluate = host_soft_evaluate;
    h->zerocost = host_zerocost;
    h->train_custom = host_train_custom;
    h->propose = host_propose;
    h->cost_custom = host_cost_custom;
    h->satisfies_custom = host_satisfies_custom;
}

static char *effective_ini(const et_experiment *x)
{
    /* the file as read, plus the overrides as the store should compare them */
    size_t n = strlen(x->cfg.text) + 1;
    for (size_t i = 0; i < x->cfg.n; i++)
        for (size_t j = 0; j < x->cfg.sections[i].n; j++)
            if (x->cfg.sections[i].entries[j].line == 0)
                n += strlen(x->cfg.sections[i].name) + strlen(x->cfg.sections[i].entries[j].key) +
                     strlen(x->cfg.sections[i].entries[j].value) + 16;
    char *s = malloc(n);
    if (!s)
        return NULL;
    size_t o = (size_t)snprintf(s, n, "%s", x->cfg.text);
    int open_line = o > 0 && s[o - 1] != '\n';
    for (size_t i = 0; i < x->cfg.n; i++)
        for (size_t j = 0; j < x->cfg.sections[i].n; j++) {
            const et_config_entry *e = &x->cfg.sections[i].entries[j];
            if (e->line != 0)
                continue;
            o += (size_t)snprintf(s + o, n - o, "%s; --set %s.%s=%s\n", open_line ? "\n" : "",
                                  x->cfg.sections[i].name, e->key, e->value);
            open_line = 0;
        }
    return s;
}

static int setup(runner *r, int resume, char **err)
{
    et_experiment *x = r->x;
    int rc;
    const char *name = *x->name ? x->name : NULL;
    char base_name[256];
    if (!name) {
        const char *slash = strrchr(x->cfg.path, '/');
        snprintf(base_name, sizeof base_name, "%s", slash ? slash + 1 : x->cfg.path);
        char *dot = strrchr(base_name, '.');
        if (dot)
            *dot = 0;
        name = base_name;
    }
    r->out_dir = *x->output ? et_strdup(x->output) : et_strdupf("runs/%s", name);
    if (!r->out_dir || (rc = mkdirs(r->out_dir, err)))
        return r->out_dir ? rc : et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    r->store_path = *x->store ? et_strdup(x->store) : et_strdupf("%s/store.sqlite", r->out_dir);
    r->ckpt_path = et_strdupf("%s/supernet.ckpt", r->out_dir);
    if (!r->store_path || !r->ckpt_path)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    if ((rc = et_store_open(r->store_path, ET_STORE_MODE_WRITE, &r->store, err)))
        return rc;
    char *ini = effective_ini(x);
    if (!ini)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    et_store_run_info ri = {name, ini, x->seed, x->threads, PACKAGE_VERSION};
    rc = resume ? et_store_run_resume(r->store, &ri, &r->run_id, err)
                : et_store_run_add(r->store, &ri, &r->run_id, err);
    free(ini);
    if (rc)
        return rc;
    et_threads_set(x->threads);

    /* task */
    r->system.r = r;
    host_for(r, &r->task_host, "task", &r->system);
    r->task_vt = x->task.plugin->desc->vtable;
    char *perr = NULL;
    if ((rc = r->task_vt->create(&r->task_host, x->task.opts, &r->task, &perr)) ||
        (rc = r->task_vt->load(r->task, &r->info, &perr))) {
        et_fail(err, rc, "[task] %s: %s", x->task.plugin->desc->name, perr ? perr : "failed");
        free(perr);
        return rc;
    }
    if (r->info.model_kind != x->space.kind)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "[task] %s needs a %s model, but [space] describes a %s model",
                       x->task.plugin->desc->name,
                       r->info.model_kind == ET_MODEL_KIND_ENCODER ? "encoder" : "sequence",
                       x->space.kind == ET_MODEL_KIND_ENCODER ? "encoder" : "sequence");
    et_log(ET_LOG_LEVEL_INFO, "task %s: %lld train, %lld valid, %lld test examples",
           x->task.plugin->desc->name, (long long)r->info.split_size[0],
           (long long)r->info.split_size[1], (long long)r->info.split_size[2]);
    if (r->info.split_size[ET_SPLIT_VALID] == 0) {
        /* nothing to compare architectures on: only a one-architecture
         * space (a fixed model, e.g. trained on every training example)
         * runs, and its valid figures are not measured */
        char count[64];
        if (et_space_count(&x->space, count, sizeof count) < 0 || strcmp(count, "1"))
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "[task] %s has no validation examples, and a search needs them to "
                           "compare architectures (only a space of one architecture runs "
                           "without them)", x->task.plugin->desc->name);
        r->no_valid = 1;
        et_log(ET_LOG_LEVEL_INFO, "task %s: no validation examples: the one architecture is "
               "trained and tested, no valid figures", x->task.plugin->desc->name);
    }

    /* attention operators (one instance per choice for MAC counts) */
    for (int st = 0; st < 3; st++)
        for (int32_t c = 0; c < x->n_attn[st]; c++) {
            const et_attention_vtable *vt = x->attn[st][c].plugin->desc->vtable;
            r->impl[st][c] = (et_attn_impl){vt, x->attn[st][c].opts};
            if ((rc = vt->create(&r->task_host, x->attn[st][c].opts, &r->macs_state[st][c], &perr))) {
                et_fail(err, rc, "attention %s: %s", x->attn[st][c].text, perr ? perr : "failed");
                free(perr);
                return rc;
            }
        }

    /* supernet and trainer */
    r->tcfg = (et_train_config){
        .steps = train_opt(r, "steps")->i,
        .batch_size = (int32_t)train_opt(r, "batch_size")->i,
        .grad_accum = (int32_t)train_opt(r, "grad_accum")->i,
        .eval_batch_size = (int32_t)train_opt(r, "eval_batch_size")->i,
        .sampling = (int32_t)train_opt(r, "sampling")->i,
        .seed = et_experiment_section_seed(x, "train"),
        .optim = {.lr = train_opt(r, "lr")->f,
                  .min_lr = train_opt(r, "min_lr")->f,
                  .warmup_steps = train_opt(r, "warmup_steps")->i,
                  .total_steps = train_opt(r, "steps")->i,
                  .schedule = (int32_t)train_opt(r, "schedule")->i,
                  .beta1 = train_opt(r, "adam_beta1")->f,
                  .beta2 = train_opt(r, "adam_beta2")->f,
                  .eps = train_opt(r, "adam_eps")->f,
                  .weight_decay = train_opt(r, "weight_decay")->f,
                  .clip_norm = train_opt(r, "clip_norm")->f,
                  .div = train_opt(r, "onecycle_div")->f,
                  .final_div = train_opt(r, "onecycle_final_div")->f,
                  .beta1_min = train_opt(r, "onecycle_beta1")->f,
                  .decay_all = (int32_t)train_opt(r, "weight_decay_all")->i},
        .decode = {.beam = (int32_t)train_opt(r, "beam")->i,
                   .lenpen = (float)train_opt(r, "lenpen")->f,
                   .max_len_a = (float)train_opt(r, "max_len_a")->f,
                   .max_len_b = (int32_t)train_opt(r, "max_len_b")->i}};
    r->checkpoint_every = train_opt(r, "checkpoint_every")->i;
    host_for(r, &r->base, "model", &r->system);
    et_model_config mc = model_config(r);
    if ((rc = et_model_create(&x->space, &mc, &r->base, &r->model, err)))
        return rc;
    et_model_init(r->model, r->base.seed);
    if ((rc = et_trainer_create(&r->trainer, &r->tcfg, r->model, r->task_vt, r->task, &r->info,
                                err)))
        return rc;
    r->trainer_ready = 1;
    et_store_checkpoint ck;
    rc = resume ? et_store_checkpoint_latest(r->store, r->run_id, "supernet", &ck, err) : 0;
    if (rc < 0)
        return rc;
    if (rc == 0 && (rc = load_init_from(r, r->model, "supernet", err))) /* not when a checkpoint follows */
        return rc;
    if (rc == 1) { /* resumed: the last stored checkpoint */
        et_checkpoint_info *info = calloc(1, sizeof *info);
        if (!info)
            return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
        rc = et_checkpoint_load(ck.path, r->model, &r->trainer.optim, info, err);
        if (!rc) {
            et_trainer_seek(&r->trainer, info->step);
            r->trainer.rng = info->rng;
            et_log(ET_LOG_LEVEL_INFO, "resumed the supernet at step %lld from %s",
                   (long long)info->step, ck.path);
        }
        free(info);
        if (rc)
            return rc;
    }

    /* proxies, then strategies */
    r->proxies = calloc(x->n_proxies + 1, sizeof *r->proxies);
    r->strategies = calloc(x->n_searches + 1, sizeof *r->strategies);
    if (!r->proxies || !r->strategies)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    for (size_t p = 0; p < x->n_proxies; p++) {
        proxy_inst *pi = &r->proxies[p];
        pi->sp = &x->proxies[p];
        host_for(r, &pi->host, pi->sp->sec->name, &r->system);
        const et_proxy_vtable *vt = pi->sp->plugin->desc->vtable;
        if ((rc = vt->create(&pi->host, pi->sp->opts, &pi->state, &perr))) {
            et_fail(err, rc, "[%s]: %s", pi->sp->sec->name, perr ? perr : "create failed");
            free(perr);
            return rc;
        }
    }
    return 0;
}

static void teardown(runner *r)
{
    et_experiment *x = r->x;
    for (size_t i = 0; r->strategies && i < x->n_searches; i++) {
        strategy *s = &r->strategies[i];
        if (s->state)
            ((const et_search_vtable *)s->sp->plugin->desc->vtable)->destroy(s->state);
        free(s->recs);
        free(s->proposed);
        if (s->soft_ready)
            et_trainer_destroy(&s->soft_trainer);
        et_model_destroy(s->soft_model);
        free(s->soft_ckpt);
    }
    for (size_t p = 0; r->proxies && p < x->n_proxies; p++)
        if (r->proxies[p].state)
            ((const et_proxy_vtable *)r->proxies[p].sp->plugin->desc->vtable)
                ->destroy(r->proxies[p].state);
    free(r->strategies);
    free(r->proxies);
    for (int st = 0; st < 3; st++)
        for (int32_t c = 0; c < x->n_attn[st]; c++)
            if (r->macs_state[st][c])
                ((const et_attention_vtable *)x->attn[st][c].plugin->desc->vtable)
                    ->destroy(r->macs_state[st][c]);
    if (r->trainer_ready)
        et_trainer_destroy(&r->trainer);
    et_model_destroy(r->model);
    if (r->task)
        r->task_vt->destroy(r->task);
    et_store_close(r->store);
    free(r->out_dir);
    free(r->store_path);
    free(r->ckpt_path);
    free(r->probe);
    et_model_destroy(r->zc_model);
}

/* ---------------------------------------------------------------- final and report */

/* The best `top` distinct archs under the constraints, best first (ties keep
 * evaluation order), or the strategy's proposed candidates in its order.
 * Returns how many there are, or a negative code. */
static int pick(const runner *r, const strategy *s, int top, record *out, char **err)
{
    int n = 0;
    if (s->n_proposed) {
        /* the strategy's own order; the metric is its latest evaluation's */
        for (int32_t i = 0; i < s->n_proposed && n < top; i++) {
            const et_arch *a = &s->proposed[i];
            uint64_t h = et_arch_hash(&r->x->space, a);
            int dup = 0;
            for (int k = 0; k < n && !dup; k++)
                dup = et_arch_hash(&r->x->space, &out[k].arch) == h;
            int32_t ok = 0;
            if (dup)
                continue;
            int rc = satisfies((runner *)r, a, &ok, err);
            if (rc)
                return rc;
            if (!ok)
                continue;
            record c = {*a, NAN, NAN, 1};
            for (size_t j = 0; j < s->n; j++)
                if (et_arch_hash(&r->x->space, &s->recs[j].arch) == h)
                    c = s->recs[j];
            out[n++] = c;
        }
        return n;
    }
    for (size_t i = 0; i < s->n; i++) {
        const record *c = &s->recs[i];
        if (!c->ok || (!isfinite(c->metric) && !r->no_valid)) /* no_valid: one arch */
            continue;
        uint64_t h = et_arch_hash(&r->x->space, &c->arch);
        int dup = 0;
        for (int k = 0; k < n && !dup; k++)
            dup = et_arch_hash(&r->x->space, &out[k].arch) == h;
        if (dup)
            continue;
        int at = n;
        while (at > 0 && (r->info.higher_is_better ? c->metric > out[at - 1].metric
                                                   : c->metric < out[at - 1].metric))
            at--;
        if (at >= top)
            continue;
        int last = n < top ? n : top - 1;
        for (int k = last; k > at; k--)
            out[k] = out[k - 1];
        out[at] = *c;
        if (n < top)
            n++;
    }
    return n;
}

/* Retrain (or re-score) the winner of rank `rank` and score it on test;
 * stored as final result `rank` of the strategy. */
/* Retrain (or re-score) an arch and score it on test; stored as final
 * result `rank` of `label` (a strategy's section name, or a baseline's). */
static int finalize(runner *r, strategy *s, const char *label, int32_t rank, const et_arch *arch,
                    char **err)
{
    char cond[64];
    int retrain = (int)final_opt(r, "retrain")->i;
    int64_t steps = final_opt(r, "steps")->i ? final_opt(r, "steps")->i : r->tcfg.steps;
    /* without retraining, a strategy with its own (soft) supernet is scored
     * on that supernet's weights */
    int soft = !retrain && s->soft_ready;
    if (retrain)
        snprintf(cond, sizeof cond, "final standalone steps=%lld", (long long)steps);
    else if (soft)
        snprintf(cond, sizeof cond, "final soft supernet step=%lld",
                 (long long)s->soft_trainer.step);
    else
        snprintf(cond, sizeof cond, "final supernet step=%lld", (long long)r->trainer.step);
    et_log(ET_LOG_LEVEL_INFO, "[%s] final: %s #%d and scoring it on test", label,
           retrain ? "retraining" : "evaluating", rank + 1);
    et_eval_result res;
    if (soft)
        et_model_clear_soft(s->soft_model);
    int rc = stored_eval_with(s, soft ? &s->soft_trainer : &r->trainer, label, arch,
                              ET_SPLIT_TEST, "final", cond, retrain ? steps : 0, &res, NULL, err);
    if (rc || res.from_store)
        return rc;
    char text[16384];
    et_arch_format(&r->x->space, arch, text, sizeof text);
    et_store_eval_key key = {r->run_id, label, "test", cond, et_arch_hash(&r->x->space, arch),
                             text};
    return et_store_final_put(r->store, &key, rank, err);
}

/* The choice of stack `ops` for operator text `text`: the same text, else
 * the one choice with the same operator name (the text before any "(", so
 * cosformer(max_positions=32) stands for cosformer), else -1. */
static int32_t matching_choice(const et_text_choices *ops, const char *text)
{
    size_t len = strcspn(text, "(");
    int32_t at = -1, named = 0;
    for (int32_t c = 0; c < ops->n; c++) {
        if (!strcmp(ops->v[c], text))
            return c;
        if (!strncmp(ops->v[c], text, len) && strcspn(ops->v[c], "(") == len)
            at = c, named++;
    }
    return named == 1 ? at : -1;
}

/* The mFormer question: the winner against the same arch with one
 * attention operator throughout, trained and scored the same way, for each
 * operator of the space's self-attention choices: every encoder and decoder
 * layer that runs attention (standard and attention-only blocks) gets the
 * matching choice of its stack (matching_choice; a stack without one keeps
 * the winner's); cross-attention stays as found. Labelled "STRATEGY
 * all-OPERATOR" with the choice's text; an arch already trained (the winner
 * itself, or one reached from both stacks' lists) is not trained again. */
static int compare_attention(runner *r, strategy *s, const et_arch *winner, char **err)
{
    const et_stack_space *st[2] = {&r->x->space.enc, &r->x->space.dec};
    uint64_t done[2 * ET_MAX_CHOICES + 1];
    int n_done = 0;
    done[n_done++] = et_arch_hash(&r->x->space, winner);
    for (int k = 0; k < 2; k++)
        for (int32_t c = 0; c < st[k]->attention.n; c++) {
            const char *text = st[k]->attention.v[c];
            et_arch a = *winner;
            et_stack_arch *sa[2] = {&a.enc, &a.dec};
            for (int j = 0; j < 2; j++) {
                int32_t at = st[j]->present ? matching_choice(&st[j]->attention, text) : -1;
                for (int32_t l = 0; at >= 0 && l < ET_MAX_LAYERS; l++)
                    if (sa[j]->layer[l].block == ET_BLOCK_STANDARD ||
                        sa[j]->layer[l].block == ET_BLOCK_ATTENTION_ONLY)
                        sa[j]->layer[l].attention = at;
            }
            uint64_t h = et_arch_hash(&r->x->space, &a);
            int seen = 0;
            for (int i = 0; i < n_done && !seen; i++)
                seen = done[i] == h;
            if (seen)
                continue;
            done[n_done++] = h;
            char label[ET_MAX_CHOICE_TEXT + 300];
            snprintf(label, sizeof label, "%s all-%s", s->sp->sec->name, text);
            int rc = finalize(r, s, label, 0, &a, err);
            if (rc)
                return rc;
        }
    return 0;
}

/* Ranking quality: K of the strategy's distinct evaluated archs, spread
 * evenly over its score order, trained from scratch and scored on the
 * validation split; Kendall's tau between search scores and standalone
 * scores says how far the strategy's estimates can be trusted. */
static int rank_check(runner *r, strategy *s, int32_t k, double *tau, char **err)
{
    record *all = malloc(sizeof *all * (s->n + 1));
    double *est = malloc(sizeof *est * (size_t)(k + 1)), *truth = malloc(sizeof *truth * (size_t)(k + 1));
    int rc = 0;
    *tau = NAN;
    if (!all || !est || !truth) {
        rc = et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* distinct archs in score order (pick() with no constraint filter) */
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (!isfinite(s->recs[i].metric))
            continue;
        int dup = 0;
        for (size_t j = 0; j < n && !dup; j++)
            dup = memcmp(&all[j].arch, &s->recs[i].arch, sizeof(et_arch)) == 0;
        if (!dup)
            all[n++] = s->recs[i];
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && all[j].metric < all[j - 1].metric; j--) {
            record t = all[j];
            all[j] = all[j - 1];
            all[j - 1] = t;
        }
    int32_t m = (int32_t)(n < (size_t)k ? n : (size_t)k);
    int64_t steps = final_opt(r, "steps")->i ? final_opt(r, "steps")->i : r->tcfg.steps;
    for (int32_t i = 0; i < m; i++) {
        const record *c = &all[m > 1 ? (size_t)i * (n - 1) / (size_t)(m - 1) : 0];
        et_eval_result res;
        et_log(ET_LOG_LEVEL_INFO, "[%s] rank check: standalone training %d of %d",
               s->sp->sec->name, i + 1, m);
        if ((rc = host_train_standalone(s, &c->arch, steps, &res, err)))
            goto done;
        est[i] = c->metric;
        truth[i] = res.metric;
    }
    *tau = et_kendall_tau(est, truth, (size_t)m);
    et_log(ET_LOG_LEVEL_INFO, "[%s] ranking quality: Kendall tau %.3f between search and "
           "standalone scores of %d archs", s->sp->sec->name, *tau, m);
done:
    free(all);
    free(est);
    free(truth);
    return rc;
}

int et_runner_run(et_experiment *x, int resume, char **err)
{
    runner r;
    memset(&r, 0, sizeof r);
    r.x = x;
    int rc = setup(&r, resume, err);
    for (size_t i = 0; !rc && i < x->n_searches; i++) {
        strategy *s = &r.strategies[i];
        s->r = &r;
        s->sp = &x->searches[i];
        host_for(&r, &s->host, s->sp->sec->name, s);
        const et_search_vtable *vt = s->sp->plugin->desc->vtable;
        char *perr = NULL;
        double t0 = now();
        et_log(ET_LOG_LEVEL_INFO, "[%s] %s: searching", s->sp->sec->name, s->sp->plugin->desc->name);
        if ((rc = vt->create(&s->host, s->sp->opts, &s->state, &perr)) ||
            (rc = vt->run(s->state, &perr))) {
            if (perr) {
                et_fail(err, rc, "[%s] %s", s->sp->sec->name, perr);
                free(perr);
            } else if (!err || !*err) {
                et_fail(err, rc, "[%s] failed", s->sp->sec->name);
            }
        }
        s->seconds = now() - t0;
    }
    int top = (int)final_opt(&r, "top")->i;
    record *best = rc ? NULL : calloc((size_t)top, sizeof *best);
    if (!rc && !best)
        rc = et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < x->n_searches; i++) {
        strategy *s = &r.strategies[i];
        et_log(ET_LOG_LEVEL_INFO, "[%s] %lld evaluations (%lld from the store) in %.1f s",
               s->sp->sec->name, (long long)s->evals, (long long)s->reused, s->seconds);
        if (s->finals_done) {
            et_log(ET_LOG_LEVEL_INFO, "[%s] recorded %d final results itself", s->sp->sec->name,
                   (int)s->finals_done);
            continue;
        }
        int n = pick(&r, s, top, best, err);
        if (n < 0) {
            rc = n;
            break;
        }
        if (n == 0)
            et_log(ET_LOG_LEVEL_WARN, "[%s] no evaluated architecture satisfies the constraints",
                   s->sp->sec->name);
        for (int k = 0; !rc && k < n; k++)
            rc = finalize(&r, s, s->sp->sec->name, k, &best[k].arch, err);
        if (!rc && n > 0 && final_opt(&r, "compare_attention")->i)
            rc = compare_attention(&r, s, &best[0].arch, err);
        double tau;
        if (!rc && final_opt(&r, "rank_check")->i > 0)
            rc = rank_check(&r, s, (int32_t)final_opt(&r, "rank_check")->i, &tau, err);
    }
    free(best);
    if (!rc) {
        printf("\n");
        rc = et_report_write(r.store, r.run_id, r.out_dir, r.info.higher_is_better, stdout, err);
        if (!rc)
            et_log(ET_LOG_LEVEL_INFO, "report: %s/report.md, results.csv, results.json, SVG plots",
                   r.out_dir);
    }
    if (rc && !resume && r.store && r.run_id > 0) {
        /* a run that failed before recording anything (a refused task or
         * search) leaves no row: --resume must find the last run with work */
        int dropped = 0;
        char *derr = NULL;
        if (et_store_run_drop_empty(r.store, r.run_id, &dropped, &derr))
            et_log(ET_LOG_LEVEL_WARN, "%s", derr ? derr : "cannot drop the empty run");
        free(derr);
    }
    teardown(&r);
    return rc;
}
