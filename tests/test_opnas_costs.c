/* What an arch with custom attention operators costs, end to end: small
 * experiments on the synth task run in process -- the graph_probe test
 * search (tests/plugins/graph_probe.c) and opnas -- and the store is read.
 * The stored costs of an arch whose encoder runs opgraph operators follow
 * its graphs: FLOPs differ from those of the space's operator (softmax) by
 * exactly the graphs' own MAC counts (opgraph_macs), latency is measured on
 * a model with those operators, memory is sized with them; [constraints]
 * apply to those costs, in host->satisfies_custom, in opnas's choice of
 * children before training and in its final results. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "experiment.h"
#include "opgraph.h"
#include "runner.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

#define STANDARD_GRAPH "matmul(softmax(scale(matmul(Q,transpose(K)))),V)"
#define CHEAP_GRAPH "matmul(Q,matmul(transpose(K),V))"

/* the synth task's 3 positions and a class token; the space below */
enum { T = 4, HEADS = 2, HEAD_DIM = 2 };

static char dir[] = "/tmp/etnas-opcosts-XXXXXX";

static void link_plugin(const char *name)
{
    char link[4200];
    snprintf(link, sizeof link, "%s/plugins/%s.so", dir, name);
    cr_assert_eq(symlink(tu_fake(name), link), 0, "%s", link);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/plugins", dir);
    cr_assert_eq(mkdir(sub, 0777), 0);
    link_plugin("synth");
    link_plugin("graph_probe");
    /* the shipped plugins of the build tree (the test binary is not etnas,
     * so the loader does not find them by itself) */
    const char *b = getenv("ET_BUILDDIR") ? getenv("ET_BUILDDIR") : ".";
    char path[8400];
    snprintf(path, sizeof path,
             "%s/plugins/attention/.libs:%s/plugins/search/.libs:%s/plugins/proxies/.libs", b, b,
             b);
    setenv("ETNAS_PLUGIN_PATH", path, 1);
}

static void teardown(void)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(opnas_costs, .init = setup, .fini = teardown, .timeout = 600);

/* ---------------------------------------------------------------- running */

/* [experiment] to [space] of the runs, then the rest per run. */
static const char *const head =
    "[experiment]\nname = %s\nseed = 11\nthreads = 1\nplugin_path = %s/plugins\noutput = %s/%s\n"
    "[task]\nplugin = synth\n"
    "[space]\nencoder_embed_dim = 16\nencoder_layers = 2\nencoder_ffn_dim = 32\n"
    "encoder_heads = 2\nencoder_attention = softmax\nhead_dim = 2\npooling = cls\n"
    "[train]\nsteps = 4\nbatch_size = 16\neval_batch_size = 32\nwarmup_steps = 1\n"
    "[final]\nretrain = false\n"
    "[proxy flops]\n[proxy params]\n[proxy memory]\n[proxy latency]\nwarmup = 1\nruns = 5\n";

static const char *const probe_search = "[search graph_probe]\nsteps = 2\n";

static const char *const opnas_search =
    "[search opnas]\npopulation = 3\nparents = 1\ngenerations = 1\ninit_steps = 2\nsteps = 2\n"
    "final_steps = 2\nmax_draws = 12\nreport_top = 3\n";

/* Run experiment `name` made of head and the rest; 0 or its error. */
static int run(const char *name, const char *rest)
{
    char *text = et_strdupf(head, name, dir, dir, name);
    char *ini = et_strdupf("%s%s", text, rest);
    char *path = et_strdupf("%s/%s.ini", dir, name);
    cr_assert(text && ini && path);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(ini, f);
    fclose(f);
    et_experiment x;
    char *err = NULL;
    int rc = et_experiment_load(path, NULL, 0, 0, &x, &err);
    cr_assert_eq(rc, 0, "%s", err);
    /* the report goes to stdout, which carries TAP here */
    fflush(stdout);
    int out = dup(1), null = open("/dev/null", O_WRONLY);
    cr_assert(out >= 0 && null >= 0);
    dup2(null, 1);
    rc = et_runner_run(&x, 0, &err);
    fflush(stdout);
    dup2(out, 1);
    close(out);
    close(null);
    cr_assert_eq(rc, 0, "%s: %s", name, err ? err : "failed");
    et_experiment_free(&x);
    free(text);
    free(ini);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- reading */

typedef struct row {
    char strategy[64], stage[64], split[8];
    char *arch;
    et_store_figures costs;
    int final_rank; /* -1: not a final result */
} row;

typedef struct rows {
    row *v;
    int n;
} rows;

static int64_t first_run;

static int on_run(void *ctx, const et_store_run *r)
{
    (void)ctx;
    if (!first_run)
        first_run = r->id;
    return 0;
}

static row *add(rows *rs, const et_store_eval_key *key, const char *stage,
                const et_store_figures *costs, int rank)
{
    rs->v = realloc(rs->v, sizeof *rs->v * (size_t)(rs->n + 1));
    cr_assert_not_null(rs->v);
    row *r = &rs->v[rs->n++];
    snprintf(r->strategy, sizeof r->strategy, "%s", key->strategy);
    snprintf(r->stage, sizeof r->stage, "%s", stage);
    snprintf(r->split, sizeof r->split, "%s", key->split);
    r->arch = et_strdup(key->arch_text);
    r->costs = *costs;
    r->final_rank = rank;
    return r;
}

static int on_eval(void *ctx, const et_store_eval_key *key, const et_store_eval *val)
{
    add(ctx, key, val->stage, &val->costs, -1);
    return 0;
}

static int on_final(void *ctx, int32_t rank, const et_store_eval_key *key,
                    const et_store_eval *val)
{
    add(ctx, key, val->stage, &val->costs, rank);
    return 0;
}

typedef struct store_view {
    et_store *st;
    int64_t run;
    rows evals, finals;
} store_view;

static store_view open_store(const char *name)
{
    store_view v = {0};
    char *path = et_strdupf("%s/%s/store.sqlite", dir, name), *err = NULL;
    cr_assert_eq(et_store_open(path, ET_STORE_MODE_READ, &v.st, &err), 0, "%s", err);
    free(path);
    first_run = 0;
    cr_assert_eq(et_store_run_each(v.st, NULL, on_run, NULL, &err), 0, "%s", err);
    v.run = first_run;
    cr_assert_eq(et_store_eval_each(v.st, v.run, on_eval, &v.evals, &err), 0, "%s", err);
    cr_assert_eq(et_store_final_each(v.st, v.run, on_final, &v.finals, &err), 0, "%s", err);
    return v;
}

static void close_store(store_view *v)
{
    for (int i = 0; i < v->evals.n; i++)
        free(v->evals.v[i].arch);
    for (int i = 0; i < v->finals.n; i++)
        free(v->finals.v[i].arch);
    free(v->evals.v);
    free(v->finals.v);
    et_store_close(v->st);
}

static double blob(const store_view *v, const char *key)
{
    void *data = NULL;
    size_t n = 0;
    char *err = NULL;
    cr_assert_eq(et_store_blob_get(v->st, v->run, key, &data, &n, &err), 1, "%s: %s", key,
                 err ? err : "missing");
    cr_assert_eq(n, sizeof(double));
    double x;
    memcpy(&x, data, sizeof x);
    free(data);
    return x;
}

static double cost(const row *r, const char *figure)
{
    const et_store_figure *f = et_store_figures_find(&r->costs, figure);
    cr_assert_not_null(f, "%s has no %s", r->arch, figure);
    return f->value;
}

/* The latency proxy's measurements kept in the store (mean and std, its
 * first two figures), one per arch key; up to 8. */
typedef struct latency_cache {
    double mean[8], std[8];
    int n;
} latency_cache;

static int on_latency(void *ctx, const char *key, const void *data, size_t n)
{
    latency_cache *lc = ctx;
    cr_assert_geq(n, 2 * sizeof(double), "%s: %zu bytes", key, n);
    cr_assert_lt(lc->n, 8, "more latency measurements than expected: %s", key);
    double v[2];
    memcpy(v, data, sizeof v);
    lc->mean[lc->n] = v[0];
    lc->std[lc->n++] = v[1];
    return 0;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

/* The probe's evaluation of `stage` whose encoder has `standard` layers on
 * the standard graph and `cheap` on the cheap one. */
static const row *probe_row(const rows *rs, const char *stage, int standard, int cheap)
{
    for (int i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        if (!strcmp(r->strategy, "search graph_probe") && !strcmp(r->stage, stage) &&
            !strcmp(r->split, "valid") && count(r->arch, "(graph=" STANDARD_GRAPH ")") == standard &&
            count(r->arch, "(graph=" CHEAP_GRAPH ")") == cheap)
            return r;
    }
    cr_assert_fail("no %s evaluation with %d standard and %d cheap graphs", stage, standard,
                   cheap);
    return NULL;
}

/* MACs of the attention operators of an arch text (every head of every
 * layer, one example of T positions): opgraph_macs for graphs, L.S.(d+dv)
 * per head for softmax. */
static double attention_macs(const char *arch)
{
    double macs = 0;
    int layers = 0;
    for (const char *p = strstr(arch, "attn="); p; p = strstr(p, "attn=")) {
        p += strlen("attn=");
        layers++;
        if (!strncmp(p, "softmax,", 8)) {
            macs += HEADS * (double)T * T * 2 * HEAD_DIM;
            continue;
        }
        cr_assert(!strncmp(p, "opgraph(graph=", 14), "an operator of neither kind: %.40s", p);
        p += 14;
        /* the graph runs to the parenthesis that closes "opgraph(" */
        const char *e = p;
        for (int depth = 1; *e && (depth > 1 || *e != ')'); e++)
            depth += (*e == '(') - (*e == ')');
        char text[OPGRAPH_MAX_TEXT], why[256];
        snprintf(text, sizeof text, "%.*s", (int)(e - p), p);
        opgraph g;
        opgraph_shapes sh;
        cr_assert_eq(opgraph_parse(text, &g, why, sizeof why), 0, "%s: %s", text, why);
        cr_assert_eq(opgraph_validate(&g, text, OPGRAPH_CTX_SAME_LEN | OPGRAPH_CTX_SAME_DIM, &sh,
                                      why, sizeof why),
                     0, "%s: %s", text, why);
        macs += HEADS * opgraph_macs(&g, &sh, T, T, HEAD_DIM, HEAD_DIM);
    }
    cr_assert_eq(layers, 2, "%s", arch);
    return macs;
}

/* FLOPs of an arch less its attention operators' (2 per MAC, in G): the
 * same for every operator set of one arch. */
static double rest_flops(const row *r)
{
    return cost(r, "flops_g") - 2 * attention_macs(r->arch) / 1e9;
}

/* The costs of the probe's flops in a run without constraints. */
static void probe_flops(double *standard, double *cheap)
{
    run("free", probe_search);
    store_view v = open_store("free");
    *standard = cost(probe_row(&v.evals, "custom", 2, 0), "flops_g");
    *cheap = cost(probe_row(&v.evals, "custom", 0, 2), "flops_g");
    close_store(&v);
}

/* ---------------------------------------------------------------- tests */

Test(opnas_costs, stored_costs_follow_the_graphs)
{
    run("probe", probe_search);
    store_view v = open_store("probe");
    const row *space = probe_row(&v.evals, "supernet", 0, 0);
    const row *std = probe_row(&v.evals, "custom", 2, 0);
    const row *cheap = probe_row(&v.evals, "custom", 0, 2);
    const row *mixed = probe_row(&v.evals, "custom", 1, 1);
    const row *all[] = {space, std, cheap, mixed};

    /* FLOPs: the operators' own MAC counts on top of the same rest */
    double tol = 1e-9 * cost(space, "flops_g");
    for (int i = 1; i < 4; i++)
        cr_assert(fabs(rest_flops(all[i]) - rest_flops(space)) <= tol,
                  "%s: %.17g G FLOPs, %.17g G without the graphs; the space's operator: %.17g",
                  all[i]->arch, cost(all[i], "flops_g"), rest_flops(all[i]), rest_flops(space));
    cr_assert(fabs(cost(std, "flops_g") - cost(space, "flops_g")) <= tol,
              "the standard graph counts as softmax: %.17g vs %.17g", cost(std, "flops_g"),
              cost(space, "flops_g"));
    cr_assert(cost(cheap, "flops_g") < cost(space, "flops_g") - 1e3 * tol,
              "the cheaper graph: %.17g vs %.17g", cost(cheap, "flops_g"),
              cost(space, "flops_g"));
    cr_assert(cost(mixed, "flops_g") < cost(std, "flops_g") - 1e3 * tol &&
                  cost(mixed, "flops_g") > cost(cheap, "flops_g") + 1e3 * tol,
              "one cheaper layer of two: %.17g", cost(mixed, "flops_g"));

    /* latency measured for each set, params as the operators have none.
     * The store keeps each proxy's figures once per arch key (the arch text
     * with its operators): four sets, four latency measurements, and each
     * set's latency is a measurement of its own. That is deterministic; asserting instead
     * that the four timings differ could fail when two coincide, while a key
     * that left the operators out (one measurement for all) fails this
     * every time. */
    latency_cache lc = {0};
    char *err = NULL;
    cr_assert_eq(et_store_blob_each(v.st, v.run, "cost/proxy latency/", on_latency, &lc, &err), 0,
                 "%s", err);
    cr_assert_eq(lc.n, 4, "%d latency measurements for 4 operator sets", lc.n);
    for (int i = 0; i < 4; i++) {
        double ms = cost(all[i], "latency_ms"), sd = cost(all[i], "latency_std_ms");
        cr_assert(isfinite(ms) && ms > 0, "%s: latency %g ms", all[i]->arch, ms);
        int found = 0;
        for (int k = 0; k < lc.n; k++)
            if (lc.mean[k] == ms && lc.std[k] == sd) {
                found = 1;
                lc.mean[k] = NAN; /* each measurement serves one set: a set reading another's fails */
                break;
            }
        cr_assert(found, "%s: latency %.17g ms is none of the measurements not yet matched",
                  all[i]->arch, ms);
        cr_assert_eq(cost(all[i], "params_m"), cost(space, "params_m"));
    }
    /* memory: the activation arena holds each operator's own saved state
     * and workspace, which differ between softmax and its graph, and between
     * graphs with T x T and with d x d intermediates */
    cr_assert(cost(std, "memory_mb") != cost(space, "memory_mb"), "%.17g", cost(std, "memory_mb"));
    cr_assert(cost(cheap, "memory_mb") != cost(std, "memory_mb"), "%.17g",
              cost(cheap, "memory_mb"));

    /* the final result carries the costs of its graphs too */
    cr_assert_eq(v.finals.n, 1);
    cr_assert_str_eq(v.finals.v[0].arch, mixed->arch);
    cr_assert_eq(cost(&v.finals.v[0], "flops_g"), cost(mixed, "flops_g"));
    cr_assert_eq(cost(&v.finals.v[0], "latency_ms"), cost(mixed, "latency_ms"));

    /* cost_custom gives the stored figures, NAN for a figure no proxy
     * gives; without constraints everything satisfies them */
    cr_assert_eq(blob(&v, "graph_probe/standard/flops_g"), cost(std, "flops_g"));
    cr_assert_eq(blob(&v, "graph_probe/cheap/flops_g"), cost(cheap, "flops_g"));
    cr_assert(isnan(blob(&v, "graph_probe/cheap/unknown")));
    cr_assert_eq(blob(&v, "graph_probe/standard/ok"), 1.0);
    cr_assert_eq(blob(&v, "graph_probe/cheap/ok"), 1.0);
    close_store(&v);
}

Test(opnas_costs, a_constraint_rejects_graph_candidates)
{
    double standard, cheap;
    probe_flops(&standard, &cheap);
    cr_assert(cheap < standard);
    /* below every arch but the all-cheap one: opnas's seed (standard
     * attention everywhere) breaks it, and so does nearly every child */
    double bound = cheap + 0.25 * (standard - cheap);
    char rest[1024];
    snprintf(rest, sizeof rest, "%s%s[constraints]\nflops_g <= %.17g\n", probe_search,
             opnas_search, bound);
    run("bound", rest);
    store_view v = open_store("bound");
    cr_assert_eq(blob(&v, "graph_probe/standard/ok"), 0.0);
    cr_assert_eq(blob(&v, "graph_probe/mixed/ok"), 0.0);
    cr_assert_eq(blob(&v, "graph_probe/cheap/ok"), 1.0);

    /* opnas trained its seed (the root of the search) and no arch over the
     * bound besides; none of its final results breaks the bound */
    int seed = 0;
    for (int i = 0; i < v.evals.n; i++) {
        const row *r = &v.evals.v[i];
        if (strcmp(r->strategy, "search opnas"))
            continue;
        double f = cost(r, "flops_g");
        if (fabs(f - standard) <= 1e-9 * standard && !strcmp(r->stage, "custom") &&
            count(r->arch, "(graph=" STANDARD_GRAPH ")") == 2)
            seed++;
        else
            cr_assert(f <= bound, "%s: %s trained at %.17g G FLOPs over %.17g", r->arch, r->stage,
                      f, bound);
    }
    cr_assert_eq(seed, 1);
    for (int i = 0; i < v.finals.n; i++)
        if (!strcmp(v.finals.v[i].strategy, "search opnas"))
            cr_assert(cost(&v.finals.v[i], "flops_g") <= bound);

    /* and it says how many children the constraint turned away */
    char *md = NULL;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "cat %s/bound/opnas-*.md", dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t cap = 0;
    cr_assert(getdelim(&md, &cap, 0, p) > 0);
    pclose(p);
    const char *at = strstr(md, " children breaking a constraint");
    cr_assert_not_null(at, "%s", md);
    while (at > md && at[-1] >= '0' && at[-1] <= '9')
        at--;
    cr_assert(atoi(at) > 0, "%s", md);
    cr_assert(strstr(md, "| broken |"), "the seed is marked: %s", md);
    free(md);
    close_store(&v);
}

Test(opnas_costs, children_within_the_constraint_are_trained)
{
    double standard, cheap;
    probe_flops(&standard, &cheap);
    /* the seed's FLOPs: graphs with more matmul work are turned away,
     * those with as much are trained */
    char rest[1024];
    snprintf(rest, sizeof rest, "%s[constraints]\nflops_g <= %.17g\n", opnas_search, standard);
    run("equal", rest);
    store_view v = open_store("equal");
    int children = 0;
    for (int i = 0; i < v.evals.n; i++) {
        const row *r = &v.evals.v[i];
        cr_assert(cost(r, "flops_g") <= standard, "%s: %.17g G FLOPs", r->arch,
                  cost(r, "flops_g"));
        cr_assert(isfinite(cost(r, "latency_ms")) && cost(r, "latency_ms") > 0);
        children += !strcmp(r->stage, "custom") && count(r->arch, "(graph=" STANDARD_GRAPH ")") < 2;
    }
    cr_assert(children > 0, "no child was trained");
    cr_assert_eq(v.finals.n, 1, "opnas's final result");
    cr_assert(cost(&v.finals.v[0], "flops_g") <= standard);
    close_store(&v);
}
