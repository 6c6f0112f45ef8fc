/* Reports of a run from the store alone (report.h). */
#include "report.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"
#include "util.h"

typedef struct point {
    char strategy[ET_STORE_NAME_MAX * 2];
    char *arch;
    double metric;
    et_store_figures costs;
} point;

typedef struct final_row {
    char strategy[ET_STORE_NAME_MAX * 2];
    int32_t rank;
    char *arch;
    double test_metric;
    et_store_figures costs;
} final_row;

typedef struct gather {
    point *pts;
    size_t n, cap;
    point *solo; /* standalone (from scratch) scores of searched archs */
    size_t ns, caps;
    final_row *fin;
    size_t nf, capf;
    int bad;
} gather;

static int on_eval(void *ctx, const et_store_eval_key *key, const et_store_eval *val)
{
    gather *g = ctx;
    if (strcmp(key->split, "valid") != 0)
        return 0;
    int solo = strcmp(val->stage, "standalone") == 0;
    /* evaluations with inherited weights: the shared supernet, or a
     * strategy's own soft-choice supernet */
    if (!solo && strcmp(val->stage, "supernet") != 0 && strcmp(val->stage, "soft supernet") != 0 &&
        strcmp(val->stage, "custom") != 0)
        return 0;
    point **arr = solo ? &g->solo : &g->pts;
    size_t *n = solo ? &g->ns : &g->n, *cap = solo ? &g->caps : &g->cap;
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        point *np = realloc(*arr, nc * sizeof *np);
        if (!np)
            return g->bad = ET_STATUS_ERR_NOMEM;
        *arr = np;
        *cap = nc;
    }
    point *p = &(*arr)[*n];
    const et_store_figure *m = et_store_figures_find(&val->metrics, "metric");
    snprintf(p->strategy, sizeof p->strategy, "%s", key->strategy);
    p->arch = et_strdup(key->arch_text);
    p->metric = m ? m->value : NAN;
    p->costs = val->costs;
    if (!p->arch)
        return g->bad = ET_STATUS_ERR_NOMEM;
    (*n)++;
    return 0;
}

static int on_final(void *ctx, int32_t rank, const et_store_eval_key *key,
                    const et_store_eval *val)
{
    gather *g = ctx;
    if (g->nf == g->capf) {
        size_t nc = g->capf ? 2 * g->capf : 16;
        final_row *nf = realloc(g->fin, nc * sizeof *nf);
        if (!nf)
            return g->bad = ET_STATUS_ERR_NOMEM;
        g->fin = nf;
        g->capf = nc;
    }
    final_row *f = &g->fin[g->nf];
    const et_store_figure *m = et_store_figures_find(&val->metrics, "metric");
    snprintf(f->strategy, sizeof f->strategy, "%s", key->strategy);
    f->rank = rank;
    f->arch = et_strdup(key->arch_text);
    f->test_metric = m ? m->value : NAN;
    f->costs = val->costs;
    if (!f->arch)
        return g->bad = ET_STATUS_ERR_NOMEM;
    g->nf++;
    return 0;
}

static int64_t latest_run;

static int on_run(void *ctx, const et_store_run *run)
{
    (void)ctx;
    latest_run = run->id;
    return 0;
}

/* "search random" -> "random" */
static const char *label(const char *strategy)
{
    const char *sp = strchr(strategy, ' ');
    return sp ? sp + 1 : strategy;
}

static double cost_of(const et_store_figures *f, const char *name)
{
    const et_store_figure *x = et_store_figures_find(f, name);
    return x ? x->value : NAN;
}

static void fmt_num(FILE *f, double v, const char *sep)
{
    if (isfinite(v))
        fprintf(f, "%.6g%s", v, sep);
    else
        fprintf(f, "%s", sep);
}

/* Evaluations of a strategy and the best valid metric among them. */
static size_t strategy_stats(const gather *g, const char *strategy, int higher, double *best)
{
    size_t n = 0;
    *best = NAN;
    for (size_t i = 0; i < g->n; i++) {
        if (strcmp(g->pts[i].strategy, strategy))
            continue;
        n++;
        double m = g->pts[i].metric;
        if (isfinite(m) && (!isfinite(*best) || (higher ? m > *best : m < *best)))
            *best = m;
    }
    return n;
}

static void write_table(FILE *f, const gather *g, int higher)
{
    fprintf(f, "| strategy | rank | evaluations | best valid metric | test metric | params (M) | "
               "FLOPs (G) |\n|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < g->nf; i++) {
        const final_row *r = &g->fin[i];
        double best;
        size_t n = strategy_stats(g, r->strategy, higher, &best);
        fprintf(f, "| %s | %d | %zu | ", label(r->strategy), r->rank + 1, n);
        if (isfinite(best))
            fprintf(f, "%.4f", best);
        else
            fprintf(f, "-");
        fprintf(f, " | %.4f | ", r->test_metric);
        double p = cost_of(&r->costs, "params_m"), fl = cost_of(&r->costs, "flops_g");
        if (isfinite(p))
            fprintf(f, "%.4f", p);
        fprintf(f, " | ");
        if (isfinite(fl))
            fprintf(f, "%.4f", fl);
        fprintf(f, " |\n");
    }
    for (size_t i = 0; i < g->nf; i++)
        fprintf(f, "\n%s #%d: `%s`\n", label(g->fin[i].strategy), g->fin[i].rank + 1,
                g->fin[i].arch);
}

/* Kendall's tau between each strategy's search scores and the standalone
 * scores of the same archs, where at least two archs have both. */
static void write_ranking(FILE *f, const gather *g)
{
    int header = 0;
    for (size_t i = 0; i < g->ns; i++) {
        int first = 1;
        for (size_t j = 0; j < i; j++)
            first &= strcmp(g->solo[j].strategy, g->solo[i].strategy) != 0;
        if (!first)
            continue;
        double est[256], truth[256];
        size_t k = 0;
        for (size_t j = 0; j < g->ns && k < 256; j++) {
            if (strcmp(g->solo[j].strategy, g->solo[i].strategy))
                continue;
            for (size_t e = 0; e < g->n; e++)
                if (!strcmp(g->pts[e].strategy, g->solo[j].strategy) &&
                    !strcmp(g->pts[e].arch, g->solo[j].arch)) {
                    est[k] = g->pts[e].metric;
                    truth[k++] = g->solo[j].metric;
                    break;
                }
        }
        if (k < 2)
            continue;
        if (!header)
            fprintf(f, "\nRanking quality (Kendall tau, search score vs standalone training):\n");
        header = 1;
        fprintf(f, "- %s: %.3f over %zu archs\n", label(g->solo[i].strategy),
                et_kendall_tau(est, truth, k), k);
    }
}

/* The operator names of one stack's layers in an arch text
 * ("enc(E=64,L=2)[...,attn=softmax,block=standard,...][...,attn=cosformer(...),...]"),
 * as "softmax cosformer", into out; "-" for a layer whose block runs no
 * attention (ffn-only, identity, conv). */
static void stack_ops(const char *arch, const char *stack, char *out, size_t n)
{
    out[0] = 0;
    size_t len = strlen(stack), used = 0;
    const char *p = arch;
    while ((p = strstr(p, stack)) && !(p == arch || p[-1] == ';'))
        p += len;
    if (!p || p[len] != '(')
        return;
    const char *end = strchr(p, ';');
    if (!end)
        end = p + strlen(p);
    for (const char *a = p; (a = strstr(a, "attn=")) && a < end; a += 5) {
        if (a[-1] != ',' && a[-1] != '[')
            continue; /* xattn= */
        size_t w = strcspn(a + 5, "(,]");
        const char *block = strstr(a, ",block="), *close = strchr(a, ']');
        if (block && (!close || block < close) && strncmp(block + 7, "standard", 8) &&
            strncmp(block + 7, "attention-only", 14))
            w = 0; /* no attention in this layer */
        int k = snprintf(out + used, n - used, "%s%.*s", used ? " " : "", w ? (int)w : 1,
                         w ? a + 5 : "-");
        if (k < 0 || (size_t)k >= n - used)
            return;
        used += (size_t)k;
    }
}

/* The mFormer question: each strategy's found model beside the same
 * architecture with one attention operator throughout (the rows that
 * [final] compare_attention adds, labelled "STRATEGY all-OPERATOR"), with
 * the test metric, size, FLOPs, measured latency and each layer's operator. */
static void write_uniform(FILE *f, const gather *g)
{
    int header = 0;
    for (size_t i = 0; i < g->nf; i++) {
        const final_row *w = &g->fin[i];
        size_t len = strlen(w->strategy), rows = 0;
        if (w->rank != 0 || strstr(w->strategy, " all-"))
            continue;
        for (size_t j = 0; j < g->nf; j++)
            rows += !strncmp(g->fin[j].strategy, w->strategy, len) &&
                    !strncmp(g->fin[j].strategy + len, " all-", 5);
        if (!rows)
            continue;
        if (!header)
            fprintf(f, "\n## The found model against one operator throughout\n\nEach "
                       "strategy's winner beside the same architecture with every "
                       "self-attention layer on one operator, trained and tested the same way "
                       "(cross-attention as found).\n");
        header = 1;
        fprintf(f, "\n### %s\n\n| model | test metric | params (M) | FLOPs (G) | latency (ms) | "
                   "encoder attention | decoder attention |\n|---|---|---|---|---|---|---|\n",
                label(w->strategy));
        for (size_t j = 0; j < g->nf; j++) {
            const final_row *r = &g->fin[j];
            int self = r == w;
            if (!self && (strncmp(r->strategy, w->strategy, len) ||
                          strncmp(r->strategy + len, " all-", 5)))
                continue;
            char enc[512], dec[512];
            stack_ops(r->arch, "enc", enc, sizeof enc);
            stack_ops(r->arch, "dec", dec, sizeof dec);
            fprintf(f, "| %s | %.4f | ", self ? "found" : r->strategy + len + 1, r->test_metric);
            fmt_num(f, cost_of(&r->costs, "params_m"), " | ");
            fmt_num(f, cost_of(&r->costs, "flops_g"), " | ");
            fmt_num(f, cost_of(&r->costs, "latency_ms"), " | ");
            fprintf(f, "%s | %s |\n", enc[0] ? enc : "-", dec[0] ? dec : "-");
        }
    }
}

/* Predictions beside measurements: a cost figure NAME_pred_UNIT (such as
 * latency_pred_ms) predicts the figure NAME_UNIT that another proxy
 * measures (latency_ms). For every final model with both: the two and the
 * error, then the errors' RMSE and the rank agreement over them all. */
static void write_predicted(FILE *f, const gather *g)
{
    const char *done[ET_STORE_MAX_FIGURES];
    int ndone = 0;
    for (size_t i = 0; i < g->nf; i++)
        for (int32_t k = 0; k < g->fin[i].costs.n; k++) {
            const char *pred = g->fin[i].costs.v[k].name, *at = strstr(pred, "_pred");
            int seen = 0;
            for (int j = 0; j < ndone; j++)
                seen |= !strcmp(done[j], pred);
            if (!at || seen || ndone == ET_STORE_MAX_FIGURES)
                continue;
            done[ndone++] = pred;
            char meas[sizeof g->fin[i].costs.v[k].name];
            snprintf(meas, sizeof meas, "%.*s%s", (int)(at - pred), pred, at + strlen("_pred"));
            double *p = malloc(sizeof *p * g->nf), *m = malloc(sizeof *m * g->nf);
            if (!p || !m) {
                free(p), free(m);
                fprintf(f, "\n(Predicted against measured %s: out of memory.)\n", meas);
                return;
            }
            size_t n = 0, predicted = 0;
            for (size_t r = 0; r < g->nf; r++) {
                double pv = cost_of(&g->fin[r].costs, pred), mv = cost_of(&g->fin[r].costs, meas);
                predicted += isfinite(pv);
                if (!isfinite(pv) || !isfinite(mv))
                    continue;
                if (!n)
                    fprintf(f, "\n## Predicted against measured: %s\n\n| strategy | rank | "
                               "predicted (%s) | measured (%s) | error | error (%%) |\n"
                               "|---|---|---|---|---|---|\n",
                            meas, pred, meas);
                fprintf(f, "| %s | %d | %.4g | %.4g | %+.4g | ", label(g->fin[r].strategy),
                        g->fin[r].rank + 1, pv, mv, pv - mv);
                if (mv != 0)
                    fprintf(f, "%+.1f |\n", 100 * (pv - mv) / mv);
                else
                    fprintf(f, "- |\n");
                p[n] = pv;
                m[n++] = mv;
            }
            if (n) {
                double se = 0;
                for (size_t j = 0; j < n; j++)
                    se += (p[j] - m[j]) * (p[j] - m[j]);
                fprintf(f, "\nOver %zu final model%s: RMSE %.4g", n, n == 1 ? "" : "s",
                        sqrt(se / (double)n));
                double tau = n >= 2 ? et_kendall_tau(p, m, n) : NAN;
                if (isfinite(tau))
                    fprintf(f, ", Kendall tau %.3f", tau);
                else if (n >= 2) /* every prediction (or measurement) the same */
                    fprintf(f, ", Kendall tau undefined (all tied)");
                fprintf(f, ".\n");
            } else if (predicted) {
                fprintf(f, "\nThe final models have the prediction %s but no measured %s: add "
                           "the proxy that measures %s to compare them.\n",
                        pred, meas, meas);
            }
            free(p), free(m);
        }
}

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                      "#8c564b"};

/* metric against one cost figure: every evaluation as a dot, each
 * strategy's Pareto front as a line */
static int write_svg(const char *path, const gather *g, const char *figure, int higher)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return ET_STATUS_ERR_IO;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < g->n; i++) {
        double x = cost_of(&g->pts[i].costs, figure), y = g->pts[i].metric;
        if (!isfinite(x) || !isfinite(y))
            continue;
        x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
    }
    if (!(x1 >= x0))
        x0 = 0, x1 = 1;
    if (!(y1 >= y0))
        y0 = 0, y1 = 1;
    if (x1 == x0)
        x1 = x0 + 1;
    if (y1 == y0)
        y1 = y0 + 1;
    const double W = 640, H = 420, M = 60;
#define SX(x) (M + ((x) - x0) / (x1 - x0) * (W - 2 * M))
#define SY(y) (H - M - ((y) - y0) / (y1 - y0) * (H - 2 * M))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
               "height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"20\" text-anchor=\"middle\">validation metric against %s "
               "(lines: Pareto fronts)</text>\n",
            W / 2, figure);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", M,
            H - M, W - M, H - M);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", M, M,
            M, H - M);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">%.4g</text><text x=\"%.0f\" y=\"%.0f\" "
               "text-anchor=\"end\">%.4g</text>\n",
            M, H - M + 16, x0, W - M, H - M + 16, x1);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.4g</text><text x=\"%.0f\" "
               "y=\"%.0f\" text-anchor=\"end\">%.4g</text>\n",
            M - 4, H - M, y0, M - 4, M + 4, y1);
    int colour = 0;
    for (size_t i = 0; i < g->n; i++) {
        int first = 1;
        for (size_t j = 0; j < i; j++)
            first &= strcmp(g->pts[j].strategy, g->pts[i].strategy) != 0;
        if (!first)
            continue;
        const char *col = palette[colour++ % 6];
        size_t n = 0;
        for (size_t j = 0; j < g->n; j++)
            n += !strcmp(g->pts[j].strategy, g->pts[i].strategy);
        double *xs = malloc(sizeof *xs * n), *ys = malloc(sizeof *ys * n);
        int32_t *fr = malloc(sizeof *fr * n);
        if (!xs || !ys || !fr) {
            free(xs), free(ys), free(fr);
            fclose(f);
            return ET_STATUS_ERR_NOMEM;
        }
        size_t k = 0;
        for (size_t j = 0; j < g->n; j++)
            if (!strcmp(g->pts[j].strategy, g->pts[i].strategy)) {
                xs[k] = cost_of(&g->pts[j].costs, figure);
                ys[k] = g->pts[j].metric;
                if (isfinite(xs[k]) && isfinite(ys[k]))
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\" "
                               "fill-opacity=\"0.5\"/>\n",
                            SX(xs[k]), SY(ys[k]), col);
                k++;
            }
        et_pareto_front(ys, xs, n, higher, fr);
        /* the front in cost order */
        fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"2\" d=\"", col);
        double last = -INFINITY;
        int started = 0;
        for (;;) {
            size_t best = n;
            for (size_t j = 0; j < n; j++)
                if (fr[j] && isfinite(xs[j]) && isfinite(ys[j]) && xs[j] > last &&
                    (best == n || xs[j] < xs[best]))
                    best = j;
            if (best == n)
                break;
            fprintf(f, "%s%.1f,%.1f ", started ? "L" : "M", SX(xs[best]), SY(ys[best]));
            started = 1;
            last = xs[best];
        }
        fprintf(f, "\"/>\n<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s</text>\n", W - M - 120,
                M + 14.0 * colour, col, label(g->pts[i].strategy));
        free(xs), free(ys), free(fr);
    }
#undef SX
#undef SY
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : ET_STATUS_ERR_IO;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_figures(FILE *f, const et_store_figures *x)
{
    fputc('{', f);
    for (int32_t i = 0; i < x->n; i++) {
        fprintf(f, "%s", i ? ", " : "");
        json_string(f, x->v[i].name);
        if (isfinite(x->v[i].value))
            fprintf(f, ": %.17g", x->v[i].value);
        else
            fprintf(f, ": null");
    }
    fputc('}', f);
}

/* Plugins' own figures and notes: blobs "artifact/NAME" (NAME of
 * [A-Za-z0-9._-]) become files NAME beside the report, linked from it;
 * SVG figures are shown, and markdown pages (up to 64 KiB) are also set
 * into the report, their headings two levels down. */
typedef struct artifacts {
    const char *out_dir;
    FILE *md;
    int written;
} artifacts;

static int on_artifact(void *ctx, const char *key, const void *data, size_t n)
{
    artifacts *a = ctx;
    const char *name = key + strlen("artifact/");
    if (!*name || *name == '.')
        return 0;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-')
            return 0;
    char *path = et_strdupf("%s/%s", a->out_dir, name);
    FILE *f = path ? fopen(path, "wb") : NULL;
    free(path);
    if (!f)
        return 0;
    int ok = fwrite(data, 1, n, f) == n;
    ok &= fclose(f) == 0;
    if (!ok)
        return 0;
    if (!a->written++)
        fprintf(a->md, "\n## Plugins' own figures and notes\n");
    size_t len = strlen(name);
    if (len > 4 && !strcmp(name + len - 4, ".svg"))
        fprintf(a->md, "\n![%s](%s)\n", name, name);
    else
        fprintf(a->md, "\n- [%s](%s)\n", name, name);
    if (len > 3 && !strcmp(name + len - 3, ".md") && n <= 65536) {
        const char *p = data, *end = p + n;
        int fence = 0;
        fputc('\n', a->md);
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t line = nl ? (size_t)(nl - p) : (size_t)(end - p);
            if (line >= 3 && !memcmp(p, "```", 3))
                fence = !fence;
            if (!fence && line && *p == '#')
                fputs("##", a->md);
            fwrite(p, 1, line, a->md);
            fputc('\n', a->md);
            p += line + (nl != NULL);
        }
    }
    return 0;
}

int et_report_write(et_store *st, int64_t run, const char *out_dir, int higher, FILE *table,
                    char **err)
{
    gather g = {0};
    int rc = 0;
    if (run <= 0) {
        latest_run = 0;
        if ((rc = et_store_run_each(st, NULL, on_run, NULL, err)))
            return rc;
        if (!(run = latest_run))
            return et_fail(err, ET_STATUS_ERR_USAGE, "%s: the store holds no run",
                           et_store_path(st));
    }
    if ((rc = et_store_eval_each(st, run, on_eval, &g, err)) ||
        (rc = et_store_final_each(st, run, on_final, &g, err)))
        goto done;
    if (g.bad) {
        rc = et_fail(err, g.bad, "report: out of memory");
        goto done;
    }
    if (table) {
        write_table(table, &g, higher);
        write_ranking(table, &g);
        write_uniform(table, &g);
        write_predicted(table, &g);
    }
    char *path = et_strdupf("%s/report.md", out_dir);
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) {
        rc = et_fail(err, ET_STATUS_ERR_IO, "%s: cannot write", path ? path : out_dir);
        free(path);
        goto done;
    }
    fprintf(f, "# Run %lld of %s\n\n", (long long)run, et_store_path(st));
    write_table(f, &g, higher);
    write_ranking(f, &g);
    write_uniform(f, &g);
    write_predicted(f, &g);
    /* the cost figures, for plots */
    const char *figs[ET_STORE_MAX_FIGURES];
    int nfig = 0;
    for (size_t i = 0; i < g.n; i++)
        for (int32_t k = 0; k < g.pts[i].costs.n; k++) {
            int seen = 0;
            for (int j = 0; j < nfig; j++)
                seen |= !strcmp(figs[j], g.pts[i].costs.v[k].name);
            if (!seen && nfig < ET_STORE_MAX_FIGURES)
                figs[nfig++] = g.pts[i].costs.v[k].name;
        }
    for (int j = 0; j < nfig; j++) {
        char *svg = et_strdupf("%s/pareto_%s.svg", out_dir, figs[j]);
        if (svg && write_svg(svg, &g, figs[j], higher) == 0)
            fprintf(f, "\n![metric against %s](pareto_%s.svg)\n", figs[j], figs[j]);
        free(svg);
    }
    artifacts art = {out_dir, f, 0};
    if ((rc = et_store_blob_each(st, run, "artifact/", on_artifact, &art, err))) {
        fclose(f);
        free(path);
        goto done;
    }
    fclose(f);
    free(path);

    path = et_strdupf("%s/results.csv", out_dir);
    f = path ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "strategy,rank,evaluations,best_valid_metric,test_metric,params_m,flops_g,arch\n");
        for (size_t i = 0; i < g.nf; i++) {
            const final_row *r = &g.fin[i];
            double best;
            size_t n = strategy_stats(&g, r->strategy, higher, &best);
            fprintf(f, "%s,%d,%zu,", label(r->strategy), r->rank + 1, n);
            fmt_num(f, best, ",");
            fmt_num(f, r->test_metric, ",");
            fmt_num(f, cost_of(&r->costs, "params_m"), ",");
            fmt_num(f, cost_of(&r->costs, "flops_g"), ",");
            fprintf(f, "\"%s\"\n", r->arch);
        }
        fclose(f);
    }
    free(path);
    path = et_strdupf("%s/results.json", out_dir);
    f = path ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "{\"run\": %lld, \"final\": [", (long long)run);
        for (size_t i = 0; i < g.nf; i++) {
            fprintf(f, "%s\n  {\"strategy\": ", i ? "," : "");
            json_string(f, label(g.fin[i].strategy));
            fprintf(f, ", \"rank\": %d, \"arch\": ", g.fin[i].rank + 1);
            json_string(f, g.fin[i].arch);
            fprintf(f, ", \"test_metric\": %.17g, \"costs\": ", g.fin[i].test_metric);
            json_figures(f, &g.fin[i].costs);
            fputc('}', f);
        }
        fprintf(f, "],\n \"evaluations\": [");
        for (size_t i = 0; i < g.n; i++) {
            fprintf(f, "%s\n  {\"strategy\": ", i ? "," : "");
            json_string(f, label(g.pts[i].strategy));
            fprintf(f, ", \"arch\": ");
            json_string(f, g.pts[i].arch);
            if (isfinite(g.pts[i].metric))
                fprintf(f, ", \"valid_metric\": %.17g, \"costs\": ", g.pts[i].metric);
            else
                fprintf(f, ", \"valid_metric\": null, \"costs\": ");
            json_figures(f, &g.pts[i].costs);
            fputc('}', f);
        }
        fprintf(f, "]}\n");
        fclose(f);
    }
    free(path);
done:
    for (size_t i = 0; i < g.n; i++)
        free(g.pts[i].arch);
    for (size_t i = 0; i < g.ns; i++)
        free(g.solo[i].arch);
    free(g.solo);
    for (size_t i = 0; i < g.nf; i++)
        free(g.fin[i].arch);
    free(g.pts);
    free(g.fin);
    return rc;
}
