/* The etnas command line: run, check, plugins, arch. Exit codes: 0 ok,
 * 1 a run failed, 2 a usage or configuration error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

#include "blas_tune.h"
#include "inifile.h"
#include "bleu.h"
#include "experiment.h"
#include "options.h"
#include "plugin.h"
#include "report.h"
#include "runner.h"
#include "store.h"
#include "space.h"
#include "hostimpl.h"
#include "util.h"

enum { EXIT_RUN = 1, EXIT_USAGE = 2 };

static const char *const usage_main =
    "usage: etnas COMMAND [ARGS]\n"
    "\n"
    "Neural architecture search on efficient Transformers.\n"
    "\n"
    "commands:\n"
    "  run EXP.ini       run an experiment (search, final training, report)\n"
    "  check EXP.ini     check an experiment file; runs nothing\n"
    "  plugins [NAME]    list plugins, or show one plugin's options\n"
    "  arch SPACE.ini    sample, parse and describe architectures of a space\n"
    "  report STORE      rewrite a run's report from its result store alone\n"
    "  bleu HYP REF      corpus BLEU of two text files, as sacreBLEU computes it\n"
    "\n"
    "options:\n"
    "  --help            this text; 'etnas COMMAND --help' for a command\n"
    "  --version         print the version\n"
    "\n"
    "Plugins are found in the built-in directory, then ETNAS_PLUGIN_PATH\n"
    "(colon-separated), then [experiment] plugin_path.\n"
    "Exit status: 0 ok, 1 a run failed, 2 a usage or configuration error.\n";

static const char *const usage_run =
    "usage: etnas run EXP.ini [--set SECTION.KEY=VALUE]... [--resume] [--out DIR] [--verbose]\n"
    "\n"
    "Check the experiment file, then run its searches side by side.\n"
    "  --set S.K=V   override a key (same checks as the file), e.g. --set experiment.seed=2\n"
    "  --resume      continue an earlier run of the same experiment from its store\n"
    "  --out DIR     output directory (overrides [experiment] output)\n"
    "  --verbose     print every default applied and more progress\n";

static const char *const usage_check =
    "usage: etnas check EXP.ini [--set SECTION.KEY=VALUE]... [--verbose]\n"
    "\n"
    "Check every section, key, plugin and option of an experiment file and\n"
    "print what it would run. Runs nothing.\n";

static const char *const usage_plugins =
    "usage: etnas plugins [NAME]\n"
    "\n"
    "Without NAME: every plugin found, with kind, name and summary.\n"
    "With NAME: that plugin's file and options (type, default, range, help).\n";

static const char *const usage_arch =
    "usage: etnas arch SPACE.ini [--sample N [--seed S]] [--parse ARCH] [--features]\n"
    "                 [--cost PROXY[,PROXY...]] [--set PROXY.KEY=VALUE]...\n"
    "\n"
    "Describe the [space] of SPACE.ini (an experiment file works too): its kind\n"
    "and exact size. --sample prints N architectures drawn with seed S (default 1)\n"
    "in canonical form; --parse checks ARCH against the space and prints it back\n"
    "in canonical form; --features adds each one's feature vector; --cost adds\n"
    "the figures of the named proxy plugins (options by --set, e.g.\n"
    "--set params.convention=hat). Proxies that need a task or a model (etnas\n"
    "convention, latency, memory) say so: run them inside an experiment.\n";

static const char *const usage_report =
    "usage: etnas report STORE [--out DIR] [--run N] [--lower-is-better]\n"
    "\n"
    "Rewrite report.md, results.csv, results.json and the Pareto plots of a run\n"
    "(default: the store's latest) from the store alone, into DIR (default: the\n"
    "store's directory), and print the comparison table. --lower-is-better for\n"
    "metrics such as perplexity.\n";

static const char *const usage_bleu =
    "usage: etnas bleu HYP REF [--tokenize 13a|none]\n"
    "\n"
    "Corpus BLEU of the hypotheses in HYP against the references in REF (one\n"
    "segment per line, same line counts), exactly as sacreBLEU 2.6.0 computes\n"
    "it: tokenizer 13a (default) or none, 4-grams, exp smoothing, mixed case.\n"
    "Prints sacreBLEU's line: score, 1-4-gram precisions, BP, ratio, lengths.\n";

static int wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "etnas %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see 'etnas %s --help')\n", cmd);
    return EXIT_USAGE;
}

static int report(const char *cmd, char *err, int code)
{
    fprintf(stderr, "etnas %s: %s\n", cmd, err ? err : "failed");
    free(err);
    return code;
}

typedef struct exp_args {
    const char *path, *out;
    char **sets;
    int n_sets, resume, verbose;
} exp_args;

static int parse_exp_args(const char *cmd, int argc, char **argv, int allow_run, exp_args *a)
{
    memset(a, 0, sizeof *a);
    a->sets = calloc((size_t)argc + 1, sizeof *a->sets);
    if (!a->sets)
        return EXIT_USAGE;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--set") || !strncmp(s, "--set=", 6)) {
            const char *v = s[5] == '=' ? s + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v)
                return usage_error(cmd, "%s needs SECTION.KEY=VALUE", "--set");
            a->sets[a->n_sets++] = (char *)v;
        } else if (!strcmp(s, "--verbose") || !strcmp(s, "-v")) {
            a->verbose = 1;
        } else if (allow_run && !strcmp(s, "--resume")) {
            a->resume = 1;
        } else if (allow_run && (!strcmp(s, "--out") || !strncmp(s, "--out=", 6))) {
            a->out = s[5] == '=' ? s + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!a->out)
                return usage_error(cmd, "%s needs a directory", "--out");
        } else if (s[0] == '-' && s[1]) {
            return usage_error(cmd, "unknown option '%s'", s);
        } else if (a->path) {
            return usage_error(cmd, "unexpected argument '%s'", s);
        } else {
            a->path = s;
        }
    }
    if (!a->path)
        return usage_error(cmd, "%s", "needs an experiment file");
    return 0;
}

static int cmd_check(int argc, char **argv, int run)
{
    const char *cmd = run ? "run" : "check";
    if (wants_help(argc, argv)) {
        fputs(run ? usage_run : usage_check, stdout);
        return 0;
    }
    exp_args a;
    int rc = parse_exp_args(cmd, argc, argv, run, &a);
    if (rc) {
        free(a.sets);
        return rc;
    }
    if (a.out) {
        char *s = et_strdupf("experiment.output=%s", a.out);
        if (!s) {
            free(a.sets);
            return EXIT_RUN;
        }
        a.sets[a.n_sets++] = s;
    }
    if (a.verbose)
        et_log_verbosity = ET_LOG_LEVEL_DEBUG;
    et_experiment x;
    char *err = NULL;
    rc = et_experiment_load(a.path, a.sets, a.n_sets, a.verbose, &x, &err);
    if (a.out)
        free(a.sets[a.n_sets - 1]);
    free(a.sets);
    if (rc) {
        et_experiment_free(&x);
        return report(cmd, err, EXIT_USAGE);
    }
    et_experiment_print(&x, stdout);
    if (!run) {
        printf("%s: ok\n", a.path);
        et_experiment_free(&x);
        return 0;
    }
    rc = et_runner_run(&x, a.resume, &err);
    et_experiment_free(&x);
    if (rc)
        return report("run", err, rc == ET_STATUS_ERR_USAGE ? EXIT_USAGE : EXIT_RUN);
    return 0;
}

static void print_option(const et_option_decl *o)
{
    char expect[256];
    et_option_expect(o, expect, sizeof expect);
    printf("  %-20s %s; default %s\n", o->key, expect,
           o->default_value ? (*o->default_value ? o->default_value : "\"\"") : "(required)");
    if (o->help)
        printf("  %-20s %s\n", "", o->help);
}

static int cmd_plugins(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_plugins, stdout);
        return 0;
    }
    const char *name = NULL;
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-')
            return usage_error("plugins", "unknown option '%s'", argv[i]);
        if (name)
            return usage_error("plugins", "unexpected argument '%s'", argv[i]);
        name = argv[i];
    }
    char **dirs = et_plugin_path(NULL);
    et_registry reg = {0};
    char *err = NULL;
    int rc = dirs ? et_registry_scan(&reg, dirs, &err) : ET_STATUS_ERR_NOMEM;
    et_plugin_path_free(dirs);
    if (rc) {
        et_registry_free(&reg);
        return report("plugins", err, EXIT_USAGE);
    }
    if (!name) {
        for (int kind = ET_PLUGIN_KIND_ATTENTION; kind <= ET_PLUGIN_KIND_PROXY; kind++)
            for (size_t i = 0; i < reg.n; i++) {
                const et_plugin_descriptor *d = reg.items[i].desc;
                if ((int)d->kind == kind)
                    printf("%-10s %-14s %s\n", et_plugin_kind_name(kind), d->name, d->summary);
            }
        if (reg.n == 0)
            printf("no plugins found (set ETNAS_PLUGIN_PATH?)\n");
        et_registry_free(&reg);
        return 0;
    }
    int found = 0;
    for (size_t i = 0; i < reg.n; i++) {
        const et_plugin_descriptor *d = reg.items[i].desc;
        if (strcmp(d->name, name))
            continue;
        found = 1;
        printf("%s plugin '%s': %s\n  file %s\n", et_plugin_kind_name((int)d->kind), d->name,
               d->summary, reg.items[i].path);
        if (d->kind == ET_PLUGIN_KIND_PROXY) {
            const et_proxy_vtable *vt = d->vtable;
            printf("  figures:");
            for (size_t k = 0; vt->figures && vt->figures[k]; k++)
                printf(" %s", vt->figures[k]);
            printf("\n");
        }
        printf("options:\n");
        if (!d->options || !d->options[0].key)
            printf("  (none)\n");
        for (size_t k = 0; d->options && d->options[k].key; k++)
            print_option(&d->options[k]);
    }
    et_registry_free(&reg);
    if (!found) {
        fprintf(stderr, "etnas plugins: no plugin named '%s' (see 'etnas plugins')\n", name);
        return EXIT_USAGE;
    }
    return 0;
}

static void print_arch(const et_space *s, const et_arch *a, int features)
{
    char buf[16384];
    if (et_arch_format(s, a, buf, sizeof buf) < 0) {
        printf("(architecture text too long)\n");
        return;
    }
    printf("%s\n", buf);
    if (!features)
        return;
    int32_t n = et_arch_feature_count(s);
    float f[2048];
    if (n > 2048)
        n = 2048;
    et_arch_features(s, a, f);
    printf("  features:");
    for (int32_t i = 0; i < n; i++)
        printf(" %s=%.4g", et_arch_feature_name(s, i), f[i]);
    printf("\n");
}

/* Proxies for `etnas arch --cost`: created outside an experiment, so only
 * the space reaches them (no task, no model). */
typedef struct cost_set {
    et_registry reg;
    char **dirs;
    et_host host;
    const et_plugin *p[16];
    void *state[16];
    et_option_value *opts[16];
    et_config cfg;
    int n;
} cost_set;

static void cost_free(cost_set *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->state[i])
            ((const et_proxy_vtable *)c->p[i]->desc->vtable)->destroy(c->state[i]);
        free(c->opts[i]);
    }
    et_config_free(&c->cfg);
    et_registry_free(&c->reg);
    et_plugin_path_free(c->dirs);
}

static int cost_open(cost_set *c, const et_space *space, const char *list, char **sets, int nsets,
                     char **err)
{
    memset(c, 0, sizeof *c);
    et_host_init(&c->host, 1, 1, space);
    c->dirs = et_plugin_path(NULL);
    int rc = c->dirs ? et_registry_scan(&c->reg, c->dirs, err) : ET_STATUS_ERR_NOMEM;
    if (!rc)
        rc = et_config_parse("", "--set", &c->cfg, err);
    for (int i = 0; !rc && i < nsets; i++) {
        char *full = et_strdupf("proxy %s", sets[i]);
        rc = full ? et_config_override(&c->cfg, full, err) : ET_STATUS_ERR_NOMEM;
        free(full);
    }
    char names[1024];
    snprintf(names, sizeof names, "%s", list);
    for (char *tok = strtok(names, ","); !rc && tok; tok = strtok(NULL, ",")) {
        if (c->n == 16)
            return et_fail(err, ET_STATUS_ERR_USAGE, "--cost: at most 16 proxies");
        int i = c->n++;
        if ((rc = et_registry_get(&c->reg, ET_PLUGIN_KIND_PROXY, tok, "--cost", &c->p[i], err)))
            break;
        char sec_name[300];
        snprintf(sec_name, sizeof sec_name, "proxy %s", tok);
        et_config_section none = {.name = sec_name, .kind = "proxy", .label = tok, .file = "--set"};
        const et_config_section *sec = et_config_find(&c->cfg, sec_name);
        c->opts[i] = calloc(et_options_count(c->p[i]->desc->options) + 1, sizeof *c->opts[i]);
        if (!c->opts[i])
            return et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory");
        if ((rc = et_options_bind(c->p[i]->desc->options, sec ? sec : &none, NULL, 0, c->opts[i],
                                  err)))
            break;
        char *perr = NULL;
        const et_proxy_vtable *vt = c->p[i]->desc->vtable;
        if ((rc = vt->create(&c->host, c->opts[i], &c->state[i], &perr))) {
            et_fail(err, rc, "--cost %s: %s", tok, perr ? perr : "create failed");
            free(perr);
        }
    }
    for (size_t i = 0; !rc && i < c->cfg.n; i++) {
        int known = 0;
        for (int k = 0; k < c->n; k++)
            known |= !strcmp(c->cfg.sections[i].label, c->p[k]->desc->name);
        if (!known)
            rc = et_fail(err, ET_STATUS_ERR_USAGE, "--set %s.*: '%s' is not among the --cost proxies",
                         c->cfg.sections[i].label, c->cfg.sections[i].label);
    }
    return rc;
}

static int cost_print(cost_set *c, const et_arch *a, char **err)
{
    printf("  costs:");
    for (int i = 0; i < c->n; i++) {
        const et_proxy_vtable *vt = c->p[i]->desc->vtable;
        double v[32];
        char *perr = NULL;
        int rc = vt->measure(c->state[i], a, v, &perr);
        if (rc) {
            printf("\n");
            et_fail(err, rc, "--cost %s: %s", c->p[i]->desc->name, perr ? perr : "failed");
            free(perr);
            return rc;
        }
        for (int k = 0; vt->figures[k] && k < 32; k++)
            printf(" %s=%.6g", vt->figures[k], v[k]);
    }
    printf("\n");
    return 0;
}

static int parse_count(const char *cmd, const char *opt, const char *v, long long lo, long long hi,
                       long long *out)
{
    char *end;
    if (!v)
        return usage_error(cmd, "%s needs a number", opt);
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "etnas %s: %s '%s': expected an integer in [%lld, %lld]\n", cmd, opt, v,
                lo, hi);
        return EXIT_USAGE;
    }
    *out = x;
    return 0;
}

static int cmd_arch(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_arch, stdout);
        return 0;
    }
    const char *path = NULL, *parse = NULL, *cost = NULL;
    long long sample = -1, seed = 1;
    int features = 0, rc, nsets = 0;
    char *sets[64];
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--cost")) {
            if (!(cost = i + 1 < argc ? argv[++i] : NULL))
                return usage_error("arch", "%s needs proxy names", "--cost");
        } else if (!strcmp(s, "--set")) {
            if (i + 1 >= argc)
                return usage_error("arch", "%s needs PROXY.KEY=VALUE", "--set");
            if (nsets == 64)
                return usage_error("arch", "%s: at most 64 of them", "--set");
            sets[nsets++] = argv[++i];
        } else if (!strcmp(s, "--sample")) {
            if ((rc = parse_count("arch", s, i + 1 < argc ? argv[++i] : NULL, 0, 1000000, &sample)))
                return rc;
        } else if (!strcmp(s, "--seed")) {
            if ((rc = parse_count("arch", s, i + 1 < argc ? argv[++i] : NULL, 0,
                                  9007199254740991LL, &seed)))
                return rc;
        } else if (!strcmp(s, "--parse")) {
            if (!(parse = i + 1 < argc ? argv[++i] : NULL))
                return usage_error("arch", "%s needs an architecture", s);
        } else if (!strcmp(s, "--features")) {
            features = 1;
        } else if (s[0] == '-' && s[1]) {
            return usage_error("arch", "unknown option '%s'", s);
        } else if (path) {
            return usage_error("arch", "unexpected argument '%s'", s);
        } else {
            path = s;
        }
    }
    if (!path)
        return usage_error("arch", "%s", "needs a space file");
    et_space space;
    char *err = NULL;
    if (et_space_load(path, &space, &err))
        return report("arch", err, EXIT_USAGE);
    cost_set cs;
    memset(&cs, 0, sizeof cs);
    if ((cost || nsets) && (rc = cost_open(&cs, &space, cost ? cost : "", sets, nsets, &err))) {
        cost_free(&cs);
        return report("arch", err, EXIT_USAGE);
    }
    rc = 0;
    if (parse || sample >= 0) {
        et_rng rng = et_rng_from_seed((uint64_t)seed);
        for (long long i = 0; !rc && i < (parse ? 1 : sample); i++) {
            et_arch a;
            if (parse && (rc = et_arch_parse(&space, parse, &a, &err)))
                break;
            if (!parse)
                et_arch_sample(&space, &rng, &a);
            print_arch(&space, &a, features);
            if (cost)
                rc = cost_print(&cs, &a, &err);
        }
        cost_free(&cs);
        return rc ? report("arch", err, EXIT_USAGE) : 0;
    }
    cost_free(&cs);
    static const char *const kinds[] = {"", "encoder", "encoder-decoder", "decoder"};
    char count[700];
    if (et_space_count(&space, count, sizeof count) < 0)
        snprintf(count, sizeof count, "more than 10^576");
    printf("%s: %s space, %s architectures, %d features\n", path, kinds[space.kind], count,
           et_arch_feature_count(&space));
    et_arch a;
    et_arch_smallest(&space, &a);
    printf("smallest: ");
    print_arch(&space, &a, 0);
    et_arch_largest(&space, &a);
    printf("largest:  ");
    print_arch(&space, &a, 0);
    return 0;
}

static int cmd_report(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_report, stdout);
        return 0;
    }
    const char *path = NULL, *out = NULL;
    long long run = 0;
    int higher = 1, rc;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) {
            if (!(out = i + 1 < argc ? argv[++i] : NULL))
                return usage_error("report", "%s needs a directory", "--out");
        } else if (!strcmp(argv[i], "--run")) {
            if ((rc = parse_count("report", "--run", i + 1 < argc ? argv[++i] : NULL, 1,
                                  9007199254740991LL, &run)))
                return rc;
        } else if (!strcmp(argv[i], "--lower-is-better")) {
            higher = 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("report", "unknown option '%s'", argv[i]);
        } else if (path) {
            return usage_error("report", "unexpected argument '%s'", argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path)
        return usage_error("report", "%s", "needs a store file");
    char *dir = NULL, *err = NULL;
    if (!out) {
        dir = et_strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
            *slash = 0;
        out = slash ? dir : ".";
    }
    et_store *st = NULL;
    rc = et_store_open(path, ET_STORE_MODE_READ, &st, &err);
    if (!rc)
        rc = et_report_write(st, run, out, higher, stdout, &err);
    et_store_close(st);
    free(dir);
    if (rc)
        return report("report", err, rc == ET_STATUS_ERR_USAGE ? EXIT_USAGE : EXIT_RUN);
    return 0;
}

static int cmd_bleu(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_bleu, stdout);
        return 0;
    }
    const char *files[2] = {NULL, NULL};
    et_bleu_tokenize tok = ET_BLEU_TOKENIZE_13A;
    int nf = 0;
    char *err = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenize")) {
            if (i + 1 >= argc)
                return usage_error("bleu", "%s needs 13a or none", "--tokenize");
            if (et_bleu_tokenize_parse(argv[++i], &tok, &err))
                return report("bleu", err, EXIT_USAGE);
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("bleu", "unknown option '%s'", argv[i]);
        } else if (nf == 2) {
            return usage_error("bleu", "unexpected argument '%s'", argv[i]);
        } else {
            files[nf++] = argv[i];
        }
    }
    if (nf != 2)
        return usage_error("bleu", "%s", "needs a hypothesis file and a reference file");
    et_bleu_result r;
    int rc = et_bleu_files(files[0], files[1], tok, &r, &err);
    if (rc)
        return report("bleu", err, EXIT_USAGE);
    char line[512];
    et_bleu_format(&r, line, sizeof line);
    printf("%s\n", line);
    return 0;
}

int main(int argc, char **argv)
{
    et_blas_tune(argv);
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("etnas %s (plugin ABI %d)\n", PACKAGE_VERSION, ET_ABI_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "run"))
        return cmd_check(argc - 2, argv + 2, 1);
    if (!strcmp(cmd, "check"))
        return cmd_check(argc - 2, argv + 2, 0);
    if (!strcmp(cmd, "plugins"))
        return cmd_plugins(argc - 2, argv + 2);
    if (!strcmp(cmd, "arch"))
        return cmd_arch(argc - 2, argv + 2);
    if (!strcmp(cmd, "report"))
        return cmd_report(argc - 2, argv + 2);
    if (!strcmp(cmd, "bleu"))
        return cmd_bleu(argc - 2, argv + 2);
    fprintf(stderr, "etnas: unknown command '%s' (see 'etnas --help')\n", cmd);
    return EXIT_USAGE;
}
