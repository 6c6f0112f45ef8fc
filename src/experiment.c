/* Experiments: an INI file checked as a whole (every section, every key,
 * every plugin and its options, the space, the constraints) before anything
 * runs. */
#include "experiment.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/proxy.h>
#include <etnas/rng.h>

#include "checkpoint.h"
#include "options.h"
#include "space.h"
#include "util.h"

const et_option_decl et_experiment_options[] = {
    {"name", ET_OPTION_TYPE_STRING, "", 1, 0, NULL, "experiment name (default: the file's base name)"},
    {"seed", ET_OPTION_TYPE_INT, "1", 0, 9007199254740991.0, NULL, "seed of every random decision"},
    {"threads", ET_OPTION_TYPE_INT, "1", 1, 64, NULL, "worker threads (OpenBLAS and parallel loops)"},
    {"output", ET_OPTION_TYPE_STRING, "", 1, 0, NULL, "output directory (default: runs/NAME)"},
    {"store", ET_OPTION_TYPE_STRING, "", 1, 0, NULL, "result store (default: OUTPUT/store.sqlite)"},
    {"plugin_path", ET_OPTION_TYPE_STRING, "", 1, 0, NULL, "extra plugin directories, colon-separated"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

const et_option_decl et_train_options[] = {
    {"steps", ET_OPTION_TYPE_INT, "1000", 0, 1e12, NULL, "optimizer updates"},
    {"batch_size", ET_OPTION_TYPE_INT, "32", 1, 1 << 20, NULL, "examples per update"},
    {"grad_accum", ET_OPTION_TYPE_INT, "1", 1, 1024, NULL, "micro-batches per update"},
    {"lr", ET_OPTION_TYPE_FLOAT, "1e-3", 0, 10, NULL, "peak learning rate"},
    {"min_lr", ET_OPTION_TYPE_FLOAT, "0", 0, 10, NULL, "final learning rate of the cosine schedule"},
    {"warmup_steps", ET_OPTION_TYPE_INT, "100", 0, 1e12, NULL, "linear warm-up updates"},
    {"schedule", ET_OPTION_TYPE_CHOICE, "cosine", 0, -1, "cosine|inverse_sqrt|constant|onecycle",
     "learning-rate schedule after warm-up; onecycle: cosine from lr / onecycle_div up to lr over "
     "the warm-up, then cosine down to lr / onecycle_div / onecycle_final_div, with beta1 moving "
     "from adam_beta1 to onecycle_beta1 at the peak and back (torch's OneCycleLR)"},
    {"onecycle_div", ET_OPTION_TYPE_FLOAT, "25", 1, 1e12, NULL, "onecycle: first lr = lr / this"},
    {"onecycle_final_div", ET_OPTION_TYPE_FLOAT, "1e4", 1, 1e12, NULL,
     "onecycle: last lr = first lr / this"},
    {"onecycle_beta1", ET_OPTION_TYPE_FLOAT, "0.85", 0, 1, NULL,
     "onecycle: AdamW beta1 at the peak learning rate (adam_beta1 at both ends)"},
    {"weight_decay", ET_OPTION_TYPE_FLOAT, "0.01", 0, 10, NULL, "AdamW decoupled weight decay (not on norms/biases)"},
    {"weight_decay_all", ET_OPTION_TYPE_BOOL, "false", 1, 0, NULL,
     "weight decay on every parameter (biases, norms, positions, class token too), as torch's "
     "AdamW given model.parameters()"},
    {"adam_beta1", ET_OPTION_TYPE_FLOAT, "0.9", 0, 1, NULL, "AdamW beta1"},
    {"adam_beta2", ET_OPTION_TYPE_FLOAT, "0.98", 0, 1, NULL, "AdamW beta2"},
    {"adam_eps", ET_OPTION_TYPE_FLOAT, "1e-8", 0, 1, NULL, "AdamW epsilon"},
    {"clip_norm", ET_OPTION_TYPE_FLOAT, "1.0", 0, 1e6, NULL, "clip gradients to this global norm (0 = off)"},
    {"label_smoothing", ET_OPTION_TYPE_FLOAT, "0.1", 0, 1, NULL, "cross-entropy label smoothing"},
    {"dropout", ET_OPTION_TYPE_FLOAT, "0.1", 0, 1, NULL, "residual dropout"},
    {"activation_dropout", ET_OPTION_TYPE_FLOAT, "0", 0, 1, NULL,
     "dropout on the FFN's hidden activations (after the activation)"},
    {"init", ET_OPTION_TYPE_CHOICE, "normal", 0, -1, "normal|xavier|torch",
     "parameter initialisation: N(0, 0.02^2) cut at 2 std everywhere (BERT, ViT), or "
     "Xavier-uniform matrices and N(0, 1/E) token tables (fairseq's Transformer), or PyTorch's "
     "layer defaults (weights and biases U(+-1/sqrt(fan_in)) as nn.Linear; the attention's QKV "
     "Xavier-uniform and its biases 0 as nn.MultiheadAttention; token tables N(0, 1) as "
     "nn.Embedding; positions and class token uncut)"},
    {"qkv_init", ET_OPTION_TYPE_CHOICE, "init", 0, -1, "init|xavier",
     "the attention's q/k/v projection matrices (self-attention's packed QKV, cross-attention's "
     "q and k/v): drawn by `init`, or Xavier-uniform as torch's nn.MultiheadAttention whatever "
     "`init` says (at E 64 with heads of 16, softmax's logits then start with sd about 0.5; "
     "under init = normal alone about 0.02, a near-uniform attention)"},
    {"init_from", ET_OPTION_TYPE_STRING, "", 1, 0, NULL,
     "start the supernet (and PAR's soft supernet) from the parameters of this etnas "
     "checkpoint, written for the same space (its optimizer state and step are not used), "
     "instead of the `init` draw: a warm start, or weights drawn elsewhere; [final] "
     "retraining still draws by `init` (\"\": off)"},
    {"pos_init_std", ET_OPTION_TYPE_FLOAT, "0.02", 1e-6, 10, NULL,
     "learned position embeddings and the class token at init: N(0, std^2) cut at 2 std "
     "(uncut under init = torch) "
     "(0.02 as timm's ViT; 1 as torch.randn in many PyTorch ViTs)"},
    {"sampling", ET_OPTION_TYPE_CHOICE, "uniform", 0, -1, "uniform|sandwich", "supernet subnet sampling per update"},
    {"eval_batch_size", ET_OPTION_TYPE_INT, "128", 1, 1 << 20, NULL, "examples per evaluation batch"},
    {"beam", ET_OPTION_TYPE_INT, "1", 1, 64, NULL, "token tasks scored by decoding: beam size (1 = greedy)"},
    {"lenpen", ET_OPTION_TYPE_FLOAT, "1.0", 0, 10, NULL, "beam search length penalty exponent"},
    {"max_len_a", ET_OPTION_TYPE_FLOAT, "1.2", 0, 100, NULL, "decoded length limit: a * source length + b"},
    {"max_len_b", ET_OPTION_TYPE_INT, "10", 0, 100000, NULL, "decoded length limit: a * source length + b"},
    {"checkpoint_every", ET_OPTION_TYPE_INT, "200", 1, 1e12, NULL, "supernet updates between checkpoints (what a kill can lose)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

const et_option_decl et_final_options[] = {
    {"retrain", ET_OPTION_TYPE_BOOL, "true", 1, 0, NULL, "retrain the winners from scratch and score them on test"},
    {"top", ET_OPTION_TYPE_INT, "1", 1, 100, NULL, "winners per strategy to retrain"},
    {"compare_attention", ET_OPTION_TYPE_BOOL, "false", 1, 0, NULL,
     "also train the winner with every layer on one attention operator, for each operator"},
    {"rank_check", ET_OPTION_TYPE_INT, "0", 0, 1000, NULL,
     "train this many of each strategy's evaluated archs from scratch and report the Kendall "
     "tau between their search scores and standalone scores (0 = off)"},
    {"steps", ET_OPTION_TYPE_INT, "0", 0, 1e12, NULL, "updates of the final training (0 = [train] steps)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const char *const section_kinds[] = {"experiment", "task", "space", "search", "proxy",
                                            "constraints", "train", "final", NULL};
static const char *const plugin_key[] = {"plugin", NULL};

const et_option_value *et_option_find(const et_option_decl *decls, const et_option_value *vals,
                                      const char *key)
{
    for (size_t i = 0; decls[i].key; i++)
        if (strcmp(decls[i].key, key) == 0)
            return &vals[i];
    return NULL;
}

static int check_sections(const et_config *cfg, char **err)
{
    for (size_t i = 0; i < cfg->n; i++) {
        const et_config_section *s = &cfg->sections[i];
        char where[512];
        et_section_where(s, where, sizeof where);
        int known = 0;
        for (int k = 0; section_kinds[k]; k++)
            known |= strcmp(s->kind, section_kinds[k]) == 0;
        if (!known) {
            const char *best = NULL;
            int bd = 3;
            for (int k = 0; section_kinds[k]; k++) {
                int d = et_edit_distance(s->kind, section_kinds[k]);
                if (d < bd) {
                    bd = d;
                    best = section_kinds[k];
                }
            }
            if (best)
                return et_fail(err, ET_STATUS_ERR_USAGE,
                               "%s: unknown section [%s] (did you mean [%s]?)", where, s->name,
                               best);
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "%s: unknown section [%s] (sections: experiment, task, space, search "
                           "NAME, proxy NAME, constraints, train, final)",
                           where, s->name);
        }
        int labelled = !strcmp(s->kind, "search") || !strcmp(s->kind, "proxy");
        if (labelled && !*s->label)
            return et_fail(err, ET_STATUS_ERR_USAGE, "%s: [%s] needs a name: [%s NAME]", where,
                           s->kind, s->kind);
        if (!labelled && *s->label)
            return et_fail(err, ET_STATUS_ERR_USAGE, "%s: [%s] takes no name ('%s')", where,
                           s->kind, s->label);
    }
    return 0;
}

/* The section's plugin (key `plugin`, default `dflt`) and its options. */
static int bind_plugin(et_experiment *x, const et_config_section *sec, int kind, const char *dflt,
                       int verbose, et_section_plugin *out, char **err)
{
    const et_config_entry *pe = et_config_entry_find(sec, "plugin");
    const char *name = pe ? pe->value : dflt;
    char where[512];
    if (pe)
        et_where(pe, where, sizeof where);
    else
        et_section_where(sec, where, sizeof where);
    if (!name || !*name)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: [%s] needs 'plugin = NAME'", where, sec->name);
    char at[600];
    snprintf(at, sizeof at, "%s: [%s] plugin", where, sec->name);
    int rc = et_registry_get(&x->reg, kind, name, at, &out->plugin, err);
    if (rc)
        return rc;
    out->sec = sec;
    size_t n = et_options_count(out->plugin->desc->options);
    out->opts = calloc(n + 1, sizeof *out->opts);
    if (!out->opts)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    return et_options_bind(out->plugin->desc->options, sec, plugin_key, verbose, out->opts, err);
}

int et_attn_choice_resolve(const et_registry *reg, const char *text, const char *where,
                           const char *key, const char *file, int line, et_attn_choice *c,
                           char **err)
{
    memset(c, 0, sizeof *c);
    c->text = et_strdup(text);
    if (!c->text)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    char *open = strchr(c->text, '(');
    if (open)
        *open = 0;
    char at[700];
    snprintf(at, sizeof at, "%s: [space] %s", where, key);
    int rc = et_registry_get(reg, ET_PLUGIN_KIND_ATTENTION, c->text, at, &c->plugin, err);
    if (rc)
        return rc;
    char label[ET_MAX_CHOICE_TEXT + 64];
    snprintf(label, sizeof label, "space %s: %s", key, c->text);
    et_config_section opts = {.name = label, .kind = "space", .label = "", .file = file,
                              .line = line};
    et_config_entry entries[ET_MAX_CHOICE_TEXT / 2];
    if (open) {
        char *s = open + 1;
        size_t len = strlen(s);
        if (!len || s[len - 1] != ')')
            return et_fail(err, ET_STATUS_ERR_USAGE, "%s: [space] %s: '%s': options go in (...)",
                           where, key, text);
        s[len - 1] = 0; /* the closing ')' */
        while (*s) {
            /* options split at commas outside parentheses, so a value may
             * itself hold a call such as an opgraph expression */
            char *comma = NULL;
            int depth = 0;
            for (char *t = s; *t && !comma; t++) {
                depth += *t == '(' ? 1 : *t == ')' ? -1 : 0;
                if (*t == ',' && depth == 0)
                    comma = t;
            }
            if (comma)
                *comma = 0;
            char *eq = strchr(s, '=');
            if (!eq || eq == s || opts.n >= ET_MAX_CHOICE_TEXT / 2)
                return et_fail(err, ET_STATUS_ERR_USAGE,
                               "%s: [space] %s: '%s': options are key=value pairs", where, key,
                               text);
            *eq = 0;
            for (size_t k = 0; k < opts.n; k++)
                if (!strcmp(entries[k].key, s))
                    return et_fail(err, ET_STATUS_ERR_USAGE,
                                   "%s: [space] %s: '%s': option '%s' is given twice", where, key,
                                   text, s);
            entries[opts.n++] = (et_config_entry){s, eq + 1, opts.file, opts.line, 0};
            s = comma ? comma + 1 : s + strlen(s);
        }
    }
    opts.entries = entries;
    size_t n = et_options_count(c->plugin->desc->options);
    c->opts = calloc(n + 1, sizeof *c->opts);
    if (!c->opts)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    return et_options_bind(c->plugin->desc->options, &opts, NULL, 0, c->opts, err);
}

void et_attn_choice_free(et_attn_choice *c)
{
    free(c->text);
    free(c->opts);
    c->text = NULL;
    c->opts = NULL;
}

/* Each attention choice "name(k=v,...)" of the space names an attention
 * plugin and valid options for it; the resolved choices are kept. */
static int check_attention_list(et_experiment *x, const et_config_section *space_sec,
                                const char *key, int32_t stack, const et_text_choices *ch,
                                char **err)
{
    const et_config_entry *e = et_config_entry_find(space_sec, key);
    char where[512];
    if (e)
        et_where(e, where, sizeof where);
    else
        et_section_where(space_sec, where, sizeof where);
    for (int32_t i = 0; i < ch->n; i++) {
        x->n_attn[stack] = i + 1;
        int rc = et_attn_choice_resolve(&x->reg, ch->v[i], where, key,
                                        e ? e->file : space_sec->file, e ? e->line : 0,
                                        &x->attn[stack][i], err);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_constraints(et_experiment *x, const et_config_section *sec, char **err)
{
    x->constraints = calloc(sec->n + 1, sizeof *x->constraints);
    if (!x->constraints)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < sec->n; i++) {
        const et_config_entry *e = &sec->entries[i];
        char where[512];
        et_where(e, where, sizeof where);
        size_t kl = strlen(e->key);
        int32_t cmp;
        /* inih splits "latency_ms <= 20" into key "latency_ms <" and "20" */
        if (kl >= 2 && e->key[kl - 1] == '<')
            cmp = ET_CMP_LE;
        else if (kl >= 2 && e->key[kl - 1] == '>')
            cmp = ET_CMP_GE;
        else
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "%s: [constraints] '%s = %s': write FIGURE <= NUMBER or FIGURE >= NUMBER",
                           where, e->key, e->value);
        char *fig = strndup(e->key, kl - 1);
        if (!fig)
            return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
        char *f = et_trim(fig);
        memmove(fig, f, strlen(f) + 1);
        x->constraints[x->n_constraints] = (et_constraint){fig, cmp, 0, e};
        x->n_constraints++;
        char *end;
        errno = 0;
        double b = strtod(e->value, &end);
        if (!*e->value || *end || errno || !isfinite(b))
            return et_fail(err, ET_STATUS_ERR_USAGE, "%s: [constraints] %s: '%s' is not a number",
                           where, fig, e->value);
        x->constraints[x->n_constraints - 1].bound = b;
        /* the figure must come from one of the experiment's proxies */
        const char *best = NULL;
        int found = 0, bd = 4;
        char list[1024];
        size_t o = 0;
        list[0] = 0;
        for (size_t p = 0; p < x->n_proxies; p++) {
            const struct et_proxy_vtable *vt = x->proxies[p].plugin->desc->vtable;
            for (size_t k = 0; vt->figures && vt->figures[k]; k++) {
                const char *name = vt->figures[k];
                found |= strcmp(name, fig) == 0;
                int d = et_edit_distance(name, fig);
                if (d < bd) {
                    bd = d;
                    best = name;
                }
                if (o < sizeof list)
                    o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", name);
            }
        }
        if (found)
            continue;
        if (best)
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "%s: [constraints] '%s' is not a figure of any [proxy] (did you mean "
                           "'%s'?)",
                           where, fig, best);
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "%s: [constraints] '%s' is not a figure of any [proxy] (figures: %s)", where,
                       fig, o ? list : "none; add a [proxy NAME] section");
    }
    return 0;
}

/* [train] init_from names a checkpoint of this experiment's space: checked
 * with the rest of the file, before anything runs. */
static int check_init_from(const et_experiment *x, const et_config_section *train, char **err)
{
    const char *path = et_option_find(et_train_options, x->train, "init_from")->s;
    if (!path || !*path)
        return 0;
    char *why = NULL;
    if (!et_checkpoint_check_space(path, &x->space, &why))
        return 0;
    char where[512];
    et_where(et_config_entry_find(train, "init_from"), where, sizeof where);
    int rc = et_fail(err, ET_STATUS_ERR_USAGE, "%s: [train] init_from: %s", where,
                     why ? why : "cannot read");
    free(why);
    return rc;
}

int et_experiment_load(const char *path, char *const *overrides, int n_overrides, int verbose,
                       et_experiment *x, char **err)
{
    memset(x, 0, sizeof *x);
    int rc = et_config_load(path, &x->cfg, err);
    if (rc)
        return rc;
    for (int i = 0; i < n_overrides; i++)
        if ((rc = et_config_override(&x->cfg, overrides[i], err)))
            return rc;
    if ((rc = check_sections(&x->cfg, err)))
        return rc;

    const et_config_section *exp_sec = et_config_find(&x->cfg, "experiment");
    et_config_section empty_exp = {.name = "experiment", .kind = "experiment", .label = "",
                                   .file = x->cfg.path, .line = 0};
    if ((rc = et_options_bind(et_experiment_options, exp_sec ? exp_sec : &empty_exp, NULL, verbose,
                              x->exp, err)))
        return rc;
    x->name = et_option_find(et_experiment_options, x->exp, "name")->s;
    x->seed = et_option_find(et_experiment_options, x->exp, "seed")->i;
    x->threads = (int32_t)et_option_find(et_experiment_options, x->exp, "threads")->i;
    x->output = et_option_find(et_experiment_options, x->exp, "output")->s;
    x->store = et_option_find(et_experiment_options, x->exp, "store")->s;

    x->plugin_dirs = et_plugin_path(et_option_find(et_experiment_options, x->exp, "plugin_path")->s);
    if (!x->plugin_dirs)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    if ((rc = et_registry_scan(&x->reg, x->plugin_dirs, err)))
        return rc;

    const et_config_section *space_sec = et_config_find(&x->cfg, "space");
    if (!space_sec)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: no [space] section (the search space)", path);
    if ((rc = et_space_from_section(space_sec, &x->space, err)) ||
        (rc = check_attention_list(x, space_sec, "encoder_attention", ET_STACK_ENC_SELF,
                                   &x->space.enc.attention, err)) ||
        (rc = check_attention_list(x, space_sec, "decoder_attention", ET_STACK_DEC_SELF,
                                   &x->space.dec.attention, err)) ||
        (rc = check_attention_list(x, space_sec, "decoder_cross_attention", ET_STACK_DEC_CROSS,
                                   &x->space.dec.cross_attention, err)))
        return rc;

    const et_config_section *task_sec = et_config_find(&x->cfg, "task");
    if (!task_sec)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: no [task] section (plugin = NAME)", path);
    if ((rc = bind_plugin(x, task_sec, ET_PLUGIN_KIND_TASK, NULL, verbose, &x->task, err)))
        return rc;

    x->searches = calloc(x->cfg.n, sizeof *x->searches);
    x->proxies = calloc(x->cfg.n, sizeof *x->proxies);
    if (!x->searches || !x->proxies)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < x->cfg.n; i++) {
        const et_config_section *s = &x->cfg.sections[i];
        if (!strcmp(s->kind, "search"))
            rc = bind_plugin(x, s, ET_PLUGIN_KIND_SEARCH, s->label, verbose,
                             &x->searches[x->n_searches++], err);
        else if (!strcmp(s->kind, "proxy"))
            rc = bind_plugin(x, s, ET_PLUGIN_KIND_PROXY, s->label, verbose,
                             &x->proxies[x->n_proxies++], err);
        if (rc)
            return rc;
    }
    if (x->n_searches == 0)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: no [search NAME] section", path);

    const et_config_section *train = et_config_find(&x->cfg, "train");
    const et_config_section *final = et_config_find(&x->cfg, "final");
    et_config_section empty_train = {.name = "train", .kind = "train", .label = "",
                                     .file = x->cfg.path};
    et_config_section empty_final = {.name = "final", .kind = "final", .label = "",
                                     .file = x->cfg.path};
    if ((rc = et_options_bind(et_train_options, train ? train : &empty_train, NULL, verbose,
                              x->train, err)) ||
        (rc = et_options_bind(et_final_options, final ? final : &empty_final, NULL, verbose,
                              x->final, err)))
        return rc;
    if ((rc = check_init_from(x, train, err)))
        return rc;
    const et_config_section *cons = et_config_find(&x->cfg, "constraints");
    if (cons && (rc = parse_constraints(x, cons, err)))
        return rc;
    return 0;
}

void et_experiment_free(et_experiment *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->n_searches; i++)
        free(x->searches[i].opts);
    for (size_t i = 0; i < x->n_proxies; i++)
        free(x->proxies[i].opts);
    free(x->task.opts);
    free(x->searches);
    free(x->proxies);
    for (size_t i = 0; i < x->n_constraints; i++)
        free(x->constraints[i].figure);
    free(x->constraints);
    for (int st = 0; st < 3; st++)
        for (int32_t i = 0; i < x->n_attn[st]; i++)
            et_attn_choice_free(&x->attn[st][i]);
    et_registry_free(&x->reg);
    et_plugin_path_free(x->plugin_dirs);
    et_config_free(&x->cfg);
    memset(x, 0, sizeof *x);
}

uint64_t et_experiment_section_seed(const et_experiment *x, const char *section)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const char *s = section; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(0x100000001b3);
    }
    et_rng base = et_rng_from_seed((uint64_t)x->seed);
    et_rng r = et_rng_split(&base, h);
    return et_rng_u64(&r);
}

void et_experiment_print(const et_experiment *x, FILE *f)
{
    char count[700];
    if (et_space_count(&x->space, count, sizeof count) < 0)
        snprintf(count, sizeof count, "more than 10^576");
    static const char *const kinds[] = {"", "encoder", "encoder-decoder", "decoder"};
    fprintf(f, "experiment %s: seed %lld, %d thread%s\n", *x->name ? x->name : x->cfg.path,
            (long long)x->seed, x->threads, x->threads == 1 ? "" : "s");
    fprintf(f, "  task    %s\n", x->task.plugin->desc->name);
    fprintf(f, "  space   %s, %s architectures\n", kinds[x->space.kind], count);
    for (size_t i = 0; i < x->n_searches; i++)
        fprintf(f, "  search  %s (%s)\n", x->searches[i].sec->label,
                x->searches[i].plugin->desc->name);
    for (size_t i = 0; i < x->n_proxies; i++)
        fprintf(f, "  proxy   %s (%s)\n", x->proxies[i].sec->label, x->proxies[i].plugin->desc->name);
    for (size_t i = 0; i < x->n_constraints; i++)
        fprintf(f, "  constraint %s %s %g\n", x->constraints[i].figure,
                x->constraints[i].cmp == ET_CMP_LE ? "<=" : ">=", x->constraints[i].bound);
}
