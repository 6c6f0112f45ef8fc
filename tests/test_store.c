/* The result store: round trips of every record kind, the never-twice rule,
 * reopening, resume checks, processes killed between and inside transactions,
 * the one-writer lock across processes, schema versions and read-only use.
 * Each test works in its own directory under /tmp and removes it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/etnas-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/store.sqlite", dir);
}

static void teardown(void)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal", ".lock", ".txt"};
    for (int i = 0; i < 6; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
}

TestSuite(store, .init = setup, .fini = teardown);

static et_store *open_ok(int32_t mode)
{
    et_store *st = NULL;
    char *err = NULL;
    int rc = et_store_open(path, mode, &st, &err);
    cr_assert_eq(rc, 0, "open: %s", err);
    cr_assert_not_null(st);
    return st;
}

/* An open that must fail with `code`; returns the message (malloc'd). */
static char *open_fails(int32_t mode, int code)
{
    et_store *st = NULL;
    char *err = NULL;
    int rc = et_store_open(path, mode, &st, &err);
    cr_assert_eq(rc, code, "open gave %d (%s), not %d", rc, err ? err : "", code);
    cr_assert_null(st);
    cr_assert_not_null(err);
    cr_assert_null(strchr(err, '\n'), "one line: %s", err);
    cr_assert_not_null(strstr(err, path), "names the file: %s", err);
    return err;
}

static void assert_has(const char *msg, const char *part)
{
    cr_assert_not_null(strstr(msg, part), "'%s' not in: %s", part, msg);
}

static int64_t query(et_store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(et_store_db(st), sql, -1, &s, NULL), SQLITE_OK, "%s", sql);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW, "%s", sql);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void assert_intact(et_store *st)
{
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(et_store_db(st), "PRAGMA integrity_check", -1, &s, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
    cr_assert_eq(query(st, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
}

static const et_store_run_info info1 = {
    .experiment = "quick",
    .ini_text = "[experiment]\nseed = 5\n[train]\nsteps = 10\n",
    .seed = 5,
    .threads = 2,
    .code_version = "etnas 0.1.0",
};

static int64_t add_run(et_store *st, const et_store_run_info *info)
{
    int64_t id = 0;
    char *err = NULL;
    cr_assert_eq(et_store_run_add(st, info, &id, &err), 0, "%s", err);
    cr_assert_gt(id, 0);
    return id;
}

/* Arch i: a distinct hash and text. */
typedef struct arch_key {
    char text[64];
    et_store_eval_key key;
} arch_key;

static void make_key(arch_key *a, int64_t run, const char *strategy, const char *conditions,
                     int i)
{
    snprintf(a->text, sizeof a->text, "enc(E=%d,L=1)[ffn=64]", 64 + i);
    a->key = (et_store_eval_key){
        .run = run,
        .strategy = strategy,
        .split = "valid",
        .conditions = conditions,
        .arch_hash = UINT64_C(0x9e3779b97f4a7c15) * (uint64_t)(i + 1),
        .arch_text = a->text,
    };
}

static et_store_eval make_eval(int i)
{
    et_store_eval v;
    memset(&v, 0, sizeof v);
    snprintf(v.stage, sizeof v.stage, "supernet");
    cr_assert_eq(et_store_figures_add(&v.metrics, "accuracy", 0.5 + i / 1024.0), 0);
    cr_assert_eq(et_store_figures_add(&v.metrics, "loss", 1.0 / (i + 3)), 0);
    cr_assert_eq(et_store_figures_add(&v.costs, "params_m", 1e6 * i + 0.125), 0);
    cr_assert_eq(et_store_figures_add(&v.costs, "flops_g", 3.0 * i), 0);
    v.wall = 0.25 * i;
    return v;
}

static void assert_same_figures(const et_store_figures *a, const et_store_figures *b)
{
    cr_assert_eq(a->n, b->n);
    for (int32_t i = 0; i < a->n; i++) {
        cr_assert_str_eq(a->v[i].name, b->v[i].name, "order kept");
        if (isnan(a->v[i].value))
            cr_assert(isnan(b->v[i].value), "%s NaN", a->v[i].name);
        else
            cr_assert(memcmp(&a->v[i].value, &b->v[i].value, sizeof(double)) == 0,
                      "%s: %.17g vs %.17g", a->v[i].name, a->v[i].value, b->v[i].value);
    }
}

static void assert_same_eval(const et_store_eval *a, const et_store_eval *b)
{
    cr_assert_str_eq(a->stage, b->stage);
    cr_assert_eq(a->wall, b->wall);
    cr_assert_eq(a->seq, b->seq);
    assert_same_figures(&a->metrics, &b->metrics);
    assert_same_figures(&a->costs, &b->costs);
}

static void put_ok(et_store *st, const et_store_eval_key *k, et_store_eval *v, size_t n)
{
    char *err = NULL;
    cr_assert_eq(et_store_eval_put(st, k, v, n, &err), 0, "%s", err);
}

static int64_t evals_in(et_store *st)
{
    return query(st, "SELECT count(*) FROM eval");
}

/* ---------------------------------------------------------------- runs */

typedef struct run_list {
    int n;
    et_store_run r[4];
    char experiment[4][32], ini[4][128], code[4][32], cpu[4][256], blas[4][512];
} run_list;

static int collect_run(void *ctx, const et_store_run *r)
{
    run_list *l = ctx;
    cr_assert_lt(l->n, 4);
    int i = l->n++;
    l->r[i] = *r;
    snprintf(l->experiment[i], sizeof l->experiment[i], "%s", r->info.experiment);
    snprintf(l->ini[i], sizeof l->ini[i], "%s", r->info.ini_text);
    snprintf(l->code[i], sizeof l->code[i], "%s", r->info.code_version);
    snprintf(l->cpu[i], sizeof l->cpu[i], "%s", r->cpu_model);
    snprintf(l->blas[i], sizeof l->blas[i], "%s", r->blas);
    return 0;
}

Test(store, run_round_trip)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    int64_t t0 = (int64_t)time(NULL);
    int64_t a = add_run(st, &info1);
    et_store_run_info other = info1;
    other.experiment = "other";
    other.seed = 9;
    other.threads = 1;
    int64_t b = add_run(st, &other);
    int64_t t1 = (int64_t)time(NULL);
    cr_assert_neq(a, b);

    run_list all = {0}, some = {0};
    char *err = NULL;
    cr_assert_eq(et_store_run_each(st, NULL, collect_run, &all, &err), 0, "%s", err);
    cr_assert_eq(et_store_run_each(st, "other", collect_run, &some, &err), 0, "%s", err);
    cr_assert_eq(all.n, 2);
    cr_assert_eq(some.n, 1);
    cr_assert_eq(some.r[0].id, b);
    cr_assert_eq(all.r[0].id, a);
    cr_assert_str_eq(all.experiment[0], "quick");
    cr_assert_str_eq(all.ini[0], info1.ini_text);
    cr_assert_str_eq(all.code[0], "etnas 0.1.0");
    cr_assert_eq(all.r[0].info.seed, 5);
    cr_assert_eq(all.r[0].info.threads, 2);
    cr_assert_eq(all.r[1].info.seed, 9);
    cr_assert_eq(all.r[1].info.threads, 1);
    cr_assert_eq(all.r[0].resumes, 0);
    cr_assert(all.r[0].started >= t0 && all.r[0].started <= t1);

    /* the host fingerprint */
    cr_assert_eq(all.r[0].cores, (int32_t)sysconf(_SC_NPROCESSORS_ONLN));
    cr_assert_eq(strncmp(all.blas[0], "OpenBLAS ", 9), 0, "BLAS: %s", all.blas[0]);
    cr_assert_gt(strlen(all.cpu[0]), 0);
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            cr_assert_not_null(strstr(line, all.cpu[0]), "cpu '%s' from '%s'", all.cpu[0], line);
            break;
        }
    }
    if (f)
        fclose(f);
    et_store_close(st);
}

static int stop_at_first(void *ctx, const et_store_run *r)
{
    (*(int *)ctx)++;
    return r->id > 0 ? 7 : 0;
}

Test(store, walk_stops_on_nonzero)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    add_run(st, &info1);
    add_run(st, &info1);
    int calls = 0;
    char *err = NULL;
    cr_assert_eq(et_store_run_each(st, NULL, stop_at_first, &calls, &err), 7);
    cr_assert_eq(calls, 1);
    et_store_close(st);
}

/* ---------------------------------------------------------------- evaluations */

typedef struct eval_list {
    int n;
    et_store_eval v[16];
    uint64_t hash[16];
    char text[16][64], strategy[16][32], split[16][16], conditions[16][64];
    int32_t rank[16];
} eval_list;

static void keep_eval(eval_list *l, const et_store_eval_key *k, const et_store_eval *v)
{
    cr_assert_lt(l->n, 16);
    int i = l->n++;
    l->v[i] = *v;
    l->hash[i] = k->arch_hash;
    snprintf(l->text[i], sizeof l->text[i], "%s", k->arch_text);
    snprintf(l->strategy[i], sizeof l->strategy[i], "%s", k->strategy);
    snprintf(l->split[i], sizeof l->split[i], "%s", k->split);
    snprintf(l->conditions[i], sizeof l->conditions[i], "%s", k->conditions);
}

static int collect_eval(void *ctx, const et_store_eval_key *k, const et_store_eval *v)
{
    keep_eval(ctx, k, v);
    return 0;
}

static int collect_final(void *ctx, int32_t rank, const et_store_eval_key *k,
                         const et_store_eval *v)
{
    eval_list *l = ctx;
    l->rank[l->n] = rank;
    keep_eval(l, k, v);
    return 0;
}

Test(store, eval_round_trip)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    int64_t run = add_run(st, &info1);
    arch_key a;
    make_key(&a, run, "search evolution", "supernet step=4000", 1);
    et_store_eval v = make_eval(1);
    /* values that a text or float round trip would damage */
    cr_assert_eq(et_store_figures_add(&v.metrics, "third", 1.0 / 3.0), 0);
    cr_assert_eq(et_store_figures_add(&v.metrics, "diverged", NAN), 0);
    cr_assert_eq(et_store_figures_add(&v.metrics, "up", INFINITY), 0);
    cr_assert_eq(et_store_figures_add(&v.metrics, "down", -INFINITY), 0);
    cr_assert_eq(et_store_figures_add(&v.costs, "tiny", 4.9e-324), 0);
    cr_assert_eq(et_store_figures_add(&v.costs, "huge", 1.7976931348623157e308), 0);
    put_ok(st, &a.key, &v, 1);
    cr_assert_eq(v.seq, 1);

    et_store_eval got;
    memset(&got, 0xab, sizeof got);
    char *err = NULL;
    cr_assert_eq(et_store_eval_get(st, &a.key, &got, &err), 1, "%s", err);
    assert_same_eval(&v, &got);

    /* any part of the key changed is another evaluation */
    et_store_eval_key k = a.key;
    k.strategy = "search random";
    cr_assert_eq(et_store_eval_get(st, &k, &got, &err), 0, "%s", err);
    k = a.key;
    k.split = "test";
    cr_assert_eq(et_store_eval_get(st, &k, &got, &err), 0, "%s", err);
    k = a.key;
    k.conditions = "supernet step=8000";
    cr_assert_eq(et_store_eval_get(st, &k, &got, &err), 0, "%s", err);
    k = a.key;
    k.arch_hash ^= 1;
    cr_assert_eq(et_store_eval_get(st, &k, &got, &err), 0, "%s", err);
    k = a.key;
    k.run = add_run(st, &info1);
    cr_assert_eq(et_store_eval_get(st, &k, &got, &err), 0, "%s", err);

    /* a batch: one transaction, seqs follow on */
    arch_key b[3];
    et_store_eval bv[3];
    et_store_eval_key bk[3];
    for (int i = 0; i < 3; i++) {
        make_key(&b[i], run, i == 1 ? "search random" : "search evolution", "", 10 + i);
        bk[i] = b[i].key;
        bv[i] = make_eval(10 + i);
    }
    bk[2].split = "test";
    snprintf(bv[2].stage, sizeof bv[2].stage, "final");
    bv[2].costs.n = 0;
    put_ok(st, bk, bv, 3);
    cr_assert_eq(bv[0].seq, 2);
    cr_assert_eq(bv[1].seq, 3);
    cr_assert_eq(bv[2].seq, 4);

    eval_list l = {0};
    cr_assert_eq(et_store_eval_each(st, run, collect_eval, &l, &err), 0, "%s", err);
    cr_assert_eq(l.n, 4);
    assert_same_eval(&l.v[0], &v);
    cr_assert_eq(l.hash[0], a.key.arch_hash);
    cr_assert_str_eq(l.text[0], a.text);
    cr_assert_str_eq(l.conditions[0], "supernet step=4000");
    for (int i = 0; i < 3; i++) {
        assert_same_eval(&l.v[i + 1], &bv[i]);
        cr_assert_eq(l.hash[i + 1], bk[i].arch_hash);
        cr_assert_str_eq(l.strategy[i + 1], bk[i].strategy);
        cr_assert_str_eq(l.split[i + 1], bk[i].split);
        cr_assert_str_eq(l.conditions[i + 1], "");
    }
    eval_list none = {0};
    cr_assert_eq(et_store_eval_each(st, k.run, collect_eval, &none, &err), 0, "%s", err);
    cr_assert_eq(none.n, 0, "the other run has no evaluations");
    et_store_close(st);
}

Test(store, never_stores_an_evaluation_twice)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    int64_t run = add_run(st, &info1);
    arch_key a;
    make_key(&a, run, "search evolution", "supernet step=4000", 1);
    et_store_eval v = make_eval(1);
    put_ok(st, &a.key, &v, 1);

    et_store_eval again = make_eval(2);
    char *err = NULL;
    cr_assert_eq(et_store_eval_put(st, &a.key, &again, 1, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, path);
    assert_has(err, "already holds evaluation #1");
    assert_has(err, "search evolution");
    cr_assert_eq(again.seq, 0);
    cr_assert_eq(evals_in(st), 1);
    et_store_eval got;
    cr_assert_eq(et_store_eval_get(st, &a.key, &got, &err), 1, "%s", err);
    assert_same_eval(&got, &v);

    /* a batch whose second key is stored already: none of it is kept */
    arch_key b;
    make_key(&b, run, "search evolution", "supernet step=4000", 2);
    et_store_eval_key keys[2] = {b.key, a.key};
    et_store_eval vals[2] = {make_eval(3), make_eval(4)};
    cr_assert_eq(et_store_eval_put(st, keys, vals, 2, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "already holds");
    cr_assert_eq(evals_in(st), 1);
    cr_assert_eq(query(st, "SELECT count(*) FROM eval_figure"), 4);
    cr_assert_eq(et_store_eval_get(st, &b.key, &got, &err), 0, "%s", err);

    /* the same new key twice in one batch */
    keys[1] = b.key;
    cr_assert_eq(et_store_eval_put(st, keys, vals, 2, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "twice");
    cr_assert_eq(evals_in(st), 1);

    /* the same hash for another arch text is a collision, not a hit */
    arch_key c = a;
    snprintf(c.text, sizeof c.text, "enc(E=999,L=1)[ffn=64]");
    c.key.arch_text = c.text;
    cr_assert_eq(et_store_eval_get(st, &c.key, &got, &err), ET_STATUS_ERR_INTERNAL);
    assert_has(err, "names two archs");
    cr_assert_eq(et_store_eval_put(st, &c.key, &vals[0], 1, &err), ET_STATUS_ERR_INTERNAL);
    assert_has(err, "names two archs");
    cr_assert_eq(evals_in(st), 1);
    free(err);
    et_store_close(st);
}

Test(store, refuses_bad_records)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    int64_t run = add_run(st, &info1);
    arch_key a;
    make_key(&a, run, "search evolution", "", 1);
    char *err = NULL;

    et_store_eval v = make_eval(1);
    v.stage[0] = 0;
    cr_assert_eq(et_store_eval_put(st, &a.key, &v, 1, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "stage");
    v = make_eval(1);
    memset(v.stage, 'x', sizeof v.stage);
    cr_assert_eq(et_store_eval_put(st, &a.key, &v, 1, &err), ET_STATUS_ERR_USAGE);
    v = make_eval(1);
    v.wall = NAN;
    cr_assert_eq(et_store_eval_put(st, &a.key, &v, 1, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "wall time");
    v = make_eval(1);
    v.metrics.n = ET_STORE_MAX_FIGURES + 1;
    cr_assert_eq(et_store_eval_put(st, &a.key, &v, 1, &err), ET_STATUS_ERR_USAGE);
    v = make_eval(1);
    snprintf(v.costs.v[1].name, sizeof v.costs.v[1].name, "%s", v.costs.v[0].name);
    cr_assert_eq(et_store_eval_put(st, &a.key, &v, 1, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "appears twice");

    v = make_eval(1);
    et_store_eval_key k = a.key;
    k.strategy = NULL;
    cr_assert_eq(et_store_eval_put(st, &k, &v, 1, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "strategy");
    k = a.key;
    k.arch_text = "";
    cr_assert_eq(et_store_eval_put(st, &k, &v, 1, &err), ET_STATUS_ERR_USAGE);
    k = a.key;
    k.run = run + 41;
    cr_assert_eq(et_store_eval_put(st, &k, &v, 1, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "no run");
    cr_assert_eq(evals_in(st), 0);

    et_store_run_info bad = info1;
    bad.threads = 0;
    int64_t id = 0;
    cr_assert_eq(et_store_run_add(st, &bad, &id, &err), ET_STATUS_ERR_USAGE);
    bad = info1;
    bad.experiment = "";
    cr_assert_eq(et_store_run_add(st, &bad, &id, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, path);

    /* the figure helpers */
    et_store_figures f = {0};
    cr_assert_eq(et_store_figures_add(&f, "a", 1), 0);
    cr_assert_eq(et_store_figures_add(&f, "a", 2), ET_STATUS_ERR_USAGE);
    cr_assert_eq(et_store_figures_add(&f, "", 2), ET_STATUS_ERR_USAGE);
    char long_name[ET_STORE_NAME_MAX + 1];
    memset(long_name, 'n', ET_STORE_NAME_MAX);
    long_name[ET_STORE_NAME_MAX] = 0;
    cr_assert_eq(et_store_figures_add(&f, long_name, 2), ET_STATUS_ERR_USAGE);
    for (int i = 1; i < ET_STORE_MAX_FIGURES; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%d", i);
        cr_assert_eq(et_store_figures_add(&f, name, i), 0);
    }
    cr_assert_eq(et_store_figures_add(&f, "one_more", 2), ET_STATUS_ERR_USAGE);
    cr_assert_eq(f.n, ET_STORE_MAX_FIGURES);
    cr_assert_eq(et_store_figures_find(&f, "f7")->value, 7);
    cr_assert_null(et_store_figures_find(&f, "f99"));
    free(err);
    et_store_close(st);
}

/* ---------------------------------------------------------------- checkpoints and finals */

static et_store_checkpoint make_checkpoint(const char *name, int64_t step)
{
    et_store_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    snprintf(ck.name, sizeof ck.name, "%s", name);
    ck.step = step;
    snprintf(ck.path, sizeof ck.path, "runs/quick/%s-%" PRId64 ".ckpt", name, step);
    ck.size = 1000 + step;
    ck.crc32 = 0xfedcba98u - (uint32_t)step;
    return ck;
}

Test(store, checkpoint_round_trip)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    int64_t run = add_run(st, &info1);
    int64_t other = add_run(st, &info1);
    char *err = NULL;
    et_store_checkpoint out;
    cr_assert_eq(et_store_checkpoint_latest(st, run, "supernet", &out, &err), 0, "%s", err);
    static const int64_t steps[] = {100, 300, 200};
    for (int i = 0; i < 3; i++) {
        et_store_checkpoint ck = make_checkpoint("supernet", steps[i]);
        cr_assert_eq(et_store_checkpoint_put(st, run, &ck, &err), 0, "%s", err);
    }
    et_store_checkpoint ck = make_checkpoint("predictor", 500);
    cr_assert_eq(et_store_checkpoint_put(st, run, &ck, &err), 0, "%s", err);
    ck = make_checkpoint("supernet", 900);
    cr_assert_eq(et_store_checkpoint_put(st, other, &ck, &err), 0, "%s", err);

    memset(&out, 0, sizeof out);
    cr_assert_eq(et_store_checkpoint_latest(st, run, "supernet", &out, &err), 1, "%s", err);
    et_store_checkpoint want = make_checkpoint("supernet", 300);
    cr_assert_str_eq(out.name, want.name);
    cr_assert_eq(out.step, 300);
    cr_assert_str_eq(out.path, want.path);
    cr_assert_eq(out.size, want.size);
    cr_assert_eq(out.crc32, want.crc32);
    cr_assert_eq(et_store_checkpoint_latest(st, run, "predictor", &out, &err), 1, "%s", err);
    cr_assert_eq(out.step, 500);
    cr_assert_eq(et_store_checkpoint_latest(st, run, "nothing", &out, &err), 0, "%s", err);

    ck = make_checkpoint("supernet", 200);
    cr_assert_eq(et_store_checkpoint_put(st, run, &ck, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "already has checkpoint 'supernet' at step 200");
    cr_assert_eq(et_store_checkpoint_put(st, run + 40, &ck, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "no run");
    ck.path[0] = 0;
    cr_assert_eq(et_store_checkpoint_put(st, other, &ck, &err), ET_STATUS_ERR_USAGE);
    cr_assert_eq(query(st, "SELECT count(*) FROM checkpoint"), 5);
    free(err);
    et_store_close(st);
}

Test(store, final_round_trip)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    int64_t run = add_run(st, &info1);
    arch_key a[3];
    et_store_eval v[3];
    char *err = NULL;
    for (int i = 0; i < 3; i++) {
        make_key(&a[i], run, i == 2 ? "search random" : "search evolution", "retrained steps=50",
                 i);
        a[i].key.split = "test";
        v[i] = make_eval(i);
        snprintf(v[i].stage, sizeof v[i].stage, "final");
        put_ok(st, &a[i].key, &v[i], 1);
    }
    cr_assert_eq(et_store_final_put(st, &a[1].key, 0, &err), 0, "%s", err);
    cr_assert_eq(et_store_final_put(st, &a[0].key, 1, &err), 0, "%s", err);
    cr_assert_eq(et_store_final_put(st, &a[2].key, 0, &err), 0, "%s", err);

    eval_list l = {0};
    cr_assert_eq(et_store_final_each(st, run, collect_final, &l, &err), 0, "%s", err);
    cr_assert_eq(l.n, 3);
    cr_assert_str_eq(l.strategy[0], "search evolution");
    cr_assert_eq(l.rank[0], 0);
    cr_assert_eq(l.hash[0], a[1].key.arch_hash);
    assert_same_eval(&l.v[0], &v[1]);
    cr_assert_eq(l.rank[1], 1);
    cr_assert_eq(l.hash[1], a[0].key.arch_hash);
    assert_same_eval(&l.v[1], &v[0]);
    cr_assert_str_eq(l.strategy[2], "search random");
    cr_assert_str_eq(l.split[2], "test");
    cr_assert_str_eq(l.text[2], a[2].text);
    assert_same_eval(&l.v[2], &v[2]);

    cr_assert_eq(et_store_final_put(st, &a[0].key, 0, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "already has final result 0");
    cr_assert_eq(et_store_final_put(st, &a[0].key, 5, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "already a final result");
    arch_key missing;
    make_key(&missing, run, "search evolution", "retrained steps=50", 7);
    cr_assert_eq(et_store_final_put(st, &missing.key, 2, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "store the evaluation first");
    cr_assert_eq(et_store_final_put(st, &a[0].key, -1, &err), ET_STATUS_ERR_USAGE);
    cr_assert_eq(query(st, "SELECT count(*) FROM final"), 3);
    free(err);
    et_store_close(st);
}

/* ---------------------------------------------------------------- reopen and resume */

static void fill(et_store *st, int64_t *run)
{
    *run = add_run(st, &info1);
    char *err = NULL;
    for (int i = 0; i < 5; i++) {
        arch_key a;
        make_key(&a, *run, "search evolution", "supernet step=100", i);
        et_store_eval v = make_eval(i);
        put_ok(st, &a.key, &v, 1);
    }
    arch_key f;
    make_key(&f, *run, "search evolution", "supernet step=100", 3);
    cr_assert_eq(et_store_final_put(st, &f.key, 0, &err), 0, "%s", err);
    et_store_checkpoint ck = make_checkpoint("supernet", 100);
    cr_assert_eq(et_store_checkpoint_put(st, *run, &ck, &err), 0, "%s", err);
}

static void check_filled(et_store *st, int64_t run)
{
    char *err = NULL;
    run_list runs = {0};
    cr_assert_eq(et_store_run_each(st, "quick", collect_run, &runs, &err), 0, "%s", err);
    cr_assert_eq(runs.n, 1);
    cr_assert_str_eq(runs.ini[0], info1.ini_text);
    eval_list l = {0};
    cr_assert_eq(et_store_eval_each(st, run, collect_eval, &l, &err), 0, "%s", err);
    cr_assert_eq(l.n, 5);
    for (int i = 0; i < 5; i++) {
        et_store_eval want = make_eval(i);
        want.seq = i + 1;
        assert_same_eval(&l.v[i], &want);
    }
    arch_key a;
    make_key(&a, run, "search evolution", "supernet step=100", 2);
    et_store_eval got;
    cr_assert_eq(et_store_eval_get(st, &a.key, &got, &err), 1, "%s", err);
    cr_assert_eq(got.seq, 3);
    eval_list fin = {0};
    cr_assert_eq(et_store_final_each(st, run, collect_final, &fin, &err), 0, "%s", err);
    cr_assert_eq(fin.n, 1);
    cr_assert_eq(fin.v[0].seq, 4);
    et_store_checkpoint ck;
    cr_assert_eq(et_store_checkpoint_latest(st, run, "supernet", &ck, &err), 1, "%s", err);
    cr_assert_eq(ck.step, 100);
}

Test(store, reopen_keeps_everything)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    int64_t run;
    fill(st, &run);
    et_store_close(st);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "the store file stays");
    char lock[160];
    snprintf(lock, sizeof lock, "%s.lock", path);
    cr_assert_eq(stat(lock, &sb), -1, "close removes the lock file");

    st = open_ok(ET_STORE_MODE_WRITE);
    check_filled(st, run);
    assert_intact(st);
    et_store_close(st);
    st = open_ok(ET_STORE_MODE_READ);
    check_filled(st, run);
    et_store_close(st);
}

Test(store, resume_checks_the_experiment)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    char *err = NULL;
    int64_t id = 0;
    cr_assert_eq(et_store_run_resume(st, &info1, &id, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "no run of experiment 'quick' to resume");
    int64_t first = add_run(st, &info1);
    cr_assert_eq(et_store_run_resume(st, &info1, &id, &err), 0, "%s", err);
    cr_assert_eq(id, first);

    et_store_run_info changed = info1;
    changed.ini_text = "[experiment]\nseed = 5\n[train]\nsteps = 20\n";
    cr_assert_eq(et_store_run_resume(st, &changed, &id, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, path);
    assert_has(err, "line 4 is 'steps = 10' in run 1 but 'steps = 20' now");
    cr_assert_null(strchr(err, '\n'));
    changed.ini_text = "[experiment]\nseed = 5\n";
    cr_assert_eq(et_store_run_resume(st, &changed, &id, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "line 3 is '[train]' in run 1 but (absent) now");
    changed = info1;
    changed.seed = 6;
    cr_assert_eq(et_store_run_resume(st, &changed, &id, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "run 1 has seed 5, this one 6");
    changed = info1;
    changed.threads = 4;
    cr_assert_eq(et_store_run_resume(st, &changed, &id, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "run 1 used 2 threads, this one 4");

    /* the latest run of the experiment is the one resumed */
    changed = info1;
    changed.seed = 6;
    int64_t second = add_run(st, &changed);
    id = 0;
    cr_assert_eq(et_store_run_resume(st, &changed, &id, &err), 0, "%s", err);
    cr_assert_eq(id, second);
    cr_assert_eq(et_store_run_resume(st, &info1, &id, &err), ET_STATUS_ERR_USAGE);
    run_list l = {0};
    cr_assert_eq(et_store_run_each(st, "quick", collect_run, &l, &err), 0, "%s", err);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.r[0].resumes, 1);
    cr_assert_eq(l.r[1].resumes, 1);
    free(err);
    et_store_close(st);
}

/* a run that recorded nothing is dropped, so --resume takes the last run
 * with work; a run with an evaluation or a blob stays */
Test(store, drop_empty_keeps_runs_with_work)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    char *err = NULL;
    int dropped = -1;
    int64_t worked = add_run(st, &info1);
    arch_key a;
    make_key(&a, worked, "search evolution", "", 1);
    et_store_eval v = make_eval(1);
    put_ok(st, &a.key, &v, 1);
    cr_assert_eq(et_store_run_drop_empty(st, worked, &dropped, &err), 0, "%s", err);
    cr_assert_eq(dropped, 0);
    int64_t kept = add_run(st, &info1);
    cr_assert_eq(et_store_blob_put(st, kept, "k", "x", 1, &err), 0, "%s", err);
    cr_assert_eq(et_store_run_drop_empty(st, kept, &dropped, &err), 0, "%s", err);
    cr_assert_eq(dropped, 0);
    int64_t empty = add_run(st, &info1);
    cr_assert_eq(et_store_run_drop_empty(st, empty, &dropped, &err), 0, "%s", err);
    cr_assert_eq(dropped, 1);
    cr_assert_eq(query(st, "SELECT count(*) FROM run"), 2);
    int64_t id = 0;
    cr_assert_eq(et_store_run_resume(st, &info1, &id, &err), 0, "%s", err);
    cr_assert_eq(id, kept);
    free(err);
    et_store_close(st);
}

static const char *query_text(et_store *st, const char *sql, char *buf, size_t n)
{
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(et_store_db(st), sql, -1, &s, NULL), SQLITE_OK, "%s", sql);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW, "%s", sql);
    snprintf(buf, n, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return buf;
}

/* What the kill tests cannot show: a commit is synced to disk (FULL = 2),
 * so an OS crash keeps it too. */
Test(store, writer_settings)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    char buf[16];
    cr_assert_str_eq(query_text(st, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    cr_assert_eq(query(st, "PRAGMA synchronous"), 2);
    cr_assert_eq(query(st, "PRAGMA foreign_keys"), 1);
    cr_assert_eq(query(st, "PRAGMA application_id"), 0x45544e41);
    et_store_close(st);
    st = open_ok(ET_STORE_MODE_WRITE);
    cr_assert_eq(query(st, "PRAGMA synchronous"), 2, "on every open");
    cr_assert_str_eq(query_text(st, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    et_store_close(st);
}

/* ---------------------------------------------------------------- killed writers */

static void wait_killed(pid_t pid)
{
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "the child should die by SIGKILL (exit status %d)",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static int64_t file_size(const char *suffix)
{
    char p[160];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    struct stat sb;
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* Child side: open the store and add a run, or die with a distinct code. */
static et_store *child_open(int64_t *run)
{
    et_store *st = NULL;
    char *err = NULL;
    if (et_store_open(path, ET_STORE_MODE_WRITE, &st, &err))
        _exit(3);
    if (run && et_store_run_add(st, &info1, run, &err))
        _exit(4);
    return st;
}

static void child_put_one(et_store *st, int64_t run, int i)
{
    arch_key a;
    make_key(&a, run, "search evolution", "supernet step=100", i);
    et_store_eval v = make_eval(i);
    char *err = NULL;
    if (et_store_eval_put(st, &a.key, &v, 1, &err))
        _exit(5);
}

Test(store, killed_between_transactions_keeps_every_commit)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int64_t run;
        et_store *st = child_open(&run);
        for (int i = 0; i < 20; i++)
            child_put_one(st, run, i);
        raise(SIGKILL);
        _exit(6);
    }
    wait_killed(pid);
    cr_assert_gt(file_size("-wal"), 0, "the child died with its WAL not checkpointed");
    cr_assert_geq(file_size(".lock"), 0, "and left its lock file behind");

    /* a reader first: it must recover the WAL on its own */
    et_store *st = open_ok(ET_STORE_MODE_READ);
    assert_intact(st);
    cr_assert_eq(evals_in(st), 20);
    cr_assert_eq(query(st, "SELECT count(*) FROM eval_figure"), 80);
    et_store_close(st);

    st = open_ok(ET_STORE_MODE_WRITE);
    assert_intact(st);
    char *err = NULL;
    arch_key a;
    make_key(&a, 1, "search evolution", "supernet step=100", 19);
    et_store_eval got, want = make_eval(19);
    want.seq = 20;
    cr_assert_eq(et_store_eval_get(st, &a.key, &got, &err), 1, "%s", err);
    assert_same_eval(&got, &want);
    make_key(&a, 1, "search evolution", "supernet step=100", 20);
    et_store_eval v = make_eval(20);
    put_ok(st, &a.key, &v, 1);
    cr_assert_eq(v.seq, 21);
    et_store_close(st);
}

static void kill_on_insert(void *ctx, int op, const char *db, const char *table,
                           sqlite3_int64 row)
{
    int *left = ctx;
    if (op == SQLITE_INSERT && !strcmp(table, "eval") && --*left == 0)
        raise(SIGKILL);
}

Test(store, killed_inside_a_transaction_keeps_no_part_of_it)
{
    enum { BATCH = 300, KILL_AT = 150 };
    int sizes[2];
    cr_assert_eq(pipe(sizes), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(sizes[0]);
        int64_t run;
        et_store *st = child_open(&run);
        for (int i = 0; i < 5; i++)
            child_put_one(st, run, i);
        /* A tiny page cache spills the open transaction into the WAL, so the
         * kill leaves uncommitted frames on disk for recovery to ignore. */
        if (sqlite3_exec(et_store_db(st), "PRAGMA cache_size = 1", NULL, NULL, NULL))
            _exit(7);
        int64_t before = file_size("-wal");
        if (write(sizes[1], &before, sizeof before) != sizeof before)
            _exit(8);
        static arch_key keys[BATCH];
        static et_store_eval_key k[BATCH];
        static et_store_eval v[BATCH];
        for (int i = 0; i < BATCH; i++) {
            make_key(&keys[i], run, "search evolution", "big batch", 100 + i);
            k[i] = keys[i].key;
            v[i] = make_eval(100 + i);
        }
        int left = KILL_AT;
        sqlite3_update_hook(et_store_db(st), kill_on_insert, &left);
        char *err = NULL;
        et_store_eval_put(st, k, v, BATCH, &err);
        _exit(6);
    }
    close(sizes[1]);
    int64_t before = 0;
    cr_assert_eq(read(sizes[0], &before, sizeof before), (ssize_t)sizeof before);
    close(sizes[0]);
    wait_killed(pid);
    cr_assert_gt(file_size("-wal"), before, "the open transaction reached the WAL (%" PRId64
                 " -> %" PRId64 " bytes)", before, file_size("-wal"));

    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    assert_intact(st);
    cr_assert_eq(evals_in(st), 5);
    cr_assert_eq(query(st, "SELECT count(*) FROM eval WHERE conditions = 'big batch'"), 0);
    cr_assert_eq(query(st, "SELECT count(*) FROM eval_figure"), 20);
    cr_assert_eq(query(st, "SELECT max(seq) FROM eval"), 5);
    et_store_close(st);
}

Test(store, killed_at_random_moments_stays_whole)
{
    static const int delay_ms[] = {3, 11, 23, 37, 5, 17};
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    int64_t run = add_run(st, &info1);
    et_store_close(st);
    int64_t seen = 0;
    for (int round = 0; round < 6; round++) {
        int ready[2];
        cr_assert_eq(pipe(ready), 0);
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) {
            close(ready[0]);
            et_store *cst = child_open(NULL);
            /* batches of 7, each named by its conditions; the parent hears
             * of the first commit */
            for (int b = 0; b < 100000; b++) {
                char cond[32];
                snprintf(cond, sizeof cond, "r%d b%d", round, b);
                arch_key a[7];
                et_store_eval_key k[7];
                et_store_eval v[7];
                for (int j = 0; j < 7; j++) {
                    make_key(&a[j], run, "search evolution", cond, j);
                    k[j] = a[j].key;
                    v[j] = make_eval(j);
                }
                char *err = NULL;
                if (et_store_eval_put(cst, k, v, 7, &err))
                    _exit(5);
                if (b == 0 && write(ready[1], "c", 1) != 1)
                    _exit(8);
            }
            _exit(6);
        }
        close(ready[1]);
        char c;
        cr_assert_eq(read(ready[0], &c, 1), 1, "the child committed a batch");
        close(ready[0]);
        struct timespec ts = {0, delay_ms[round] * 1000000L};
        nanosleep(&ts, NULL);
        cr_assert_eq(kill(pid, SIGKILL), 0);
        wait_killed(pid);

        st = open_ok(ET_STORE_MODE_WRITE);
        assert_intact(st);
        int64_t n = evals_in(st);
        cr_assert_geq(n, seen + 7, "round %d lost committed rows (%" PRId64 " after %" PRId64 ")",
                      round, n, seen);
        cr_assert_eq(n % 7, 0, "round %d: %" PRId64 " rows, not whole batches", round, n);
        cr_assert_eq(query(st, "SELECT count(*) FROM (SELECT conditions FROM eval "
                               "GROUP BY conditions HAVING count(*) != 7)"),
                     0, "every batch whole");
        cr_assert_eq(query(st, "SELECT count(*) FROM eval_figure"), 4 * n);
        cr_assert_eq(query(st, "SELECT coalesce(max(seq), 0) FROM eval"), n, "seq has no gaps");
        seen = n;
        et_store_close(st);
    }
}

/* ---------------------------------------------------------------- one writer */

static void read_all(int fd, char *buf, size_t n)
{
    size_t got = 0;
    ssize_t k;
    while (got + 1 < n && (k = read(fd, buf + got, n - 1 - got)) > 0)
        got += (size_t)k;
    buf[got] = 0;
}

Test(store, second_writer_is_refused)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    add_run(st, &info1);

    /* another process, while this one writes */
    int out[2];
    cr_assert_eq(pipe(out), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(out[0]);
        et_store *other = NULL;
        char *err = NULL;
        int rc = et_store_open(path, ET_STORE_MODE_WRITE, &other, &err);
        char msg[1024];
        int n = snprintf(msg, sizeof msg, "%d|%s", rc, err ? err : "");
        _exit(write(out[1], msg, (size_t)n) == n ? 0 : 1);
    }
    close(out[1]);
    char msg[1024];
    read_all(out[0], msg, sizeof msg);
    close(out[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char want[160];
    snprintf(want, sizeof want, "%d|", ET_STATUS_ERR_USAGE);
    cr_assert_eq(strncmp(msg, want, strlen(want)), 0, "refused: %s", msg);
    assert_has(msg, path);
    snprintf(want, sizeof want, "another etnas process (pid %ld) is writing this store",
             (long)getpid());
    assert_has(msg, want);
    cr_assert_null(strchr(msg, '\n'));

    /* this process again; a reader is welcome */
    char *err = open_fails(ET_STORE_MODE_WRITE, ET_STATUS_ERR_USAGE);
    assert_has(err, "this process already has the store open for writing");
    free(err);
    et_store *ro = open_ok(ET_STORE_MODE_READ);
    cr_assert_eq(query(ro, "SELECT count(*) FROM run"), 1);
    et_store_close(ro);
    et_store_close(st);

    /* a child holds it: refused, naming the child; free again once it dies */
    int ready[2], hold[2];
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(hold), 0);
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        child_open(NULL);
        if (write(ready[1], "r", 1) != 1)
            _exit(8);
        char c;
        while (read(hold[0], &c, 1) != 0)
            ;
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1, "the child opened the store");
    close(ready[0]);
    err = open_fails(ET_STORE_MODE_WRITE, ET_STATUS_ERR_USAGE);
    snprintf(want, sizeof want, "(pid %ld)", (long)pid);
    assert_has(err, want);
    free(err);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    wait_killed(pid);
    close(hold[1]);
    st = open_ok(ET_STORE_MODE_WRITE);
    cr_assert_eq(query(st, "SELECT count(*) FROM run"), 1);
    et_store_close(st);
}

/* ---------------------------------------------------------------- versions and modes */

static void raw_exec(const char *sql)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

Test(store, refuses_other_schema_versions)
{
    et_store_close(open_ok(ET_STORE_MODE_WRITE));
    raw_exec("UPDATE meta SET value = '2' WHERE key = 'schema_version'");
    char *err = open_fails(ET_STORE_MODE_WRITE, ET_STATUS_ERR_FORMAT);
    assert_has(err, "store schema version 2 is newer than this etnas reads (version 1)");
    free(err);
    err = open_fails(ET_STORE_MODE_READ, ET_STATUS_ERR_FORMAT);
    assert_has(err, "version 2");
    free(err);
    raw_exec("UPDATE meta SET value = '0' WHERE key = 'schema_version'");
    err = open_fails(ET_STORE_MODE_WRITE, ET_STATUS_ERR_FORMAT);
    assert_has(err, "unknown store schema version 0 (this etnas reads version 1)");
    free(err);
    raw_exec("UPDATE meta SET value = 'one' WHERE key = 'schema_version'");
    err = open_fails(ET_STORE_MODE_WRITE, ET_STATUS_ERR_FORMAT);
    assert_has(err, "unknown store schema version 'one'");
    free(err);
    raw_exec("DELETE FROM meta");
    err = open_fails(ET_STORE_MODE_READ, ET_STATUS_ERR_FORMAT);
    assert_has(err, "no schema version");
    free(err);
    raw_exec("INSERT INTO meta VALUES ('schema_version', '1')");
    et_store_close(open_ok(ET_STORE_MODE_WRITE));
}

Test(store, refuses_files_that_are_not_stores)
{
    raw_exec("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine')");
    char *err = open_fails(ET_STORE_MODE_WRITE, ET_STATUS_ERR_FORMAT);
    assert_has(err, "not an etnas store");
    free(err);
    err = open_fails(ET_STORE_MODE_READ, ET_STATUS_ERR_FORMAT);
    assert_has(err, "not an etnas store");
    free(err);
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(s, 0), "delete",
                     "the refused file is left as it was");
    sqlite3_finalize(s);
    sqlite3_close(db);
    cr_assert_eq(unlink(path), 0);

    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 64; i++)
        fputs("this is a text file, not a database\n", f);
    fclose(f);
    err = open_fails(ET_STORE_MODE_WRITE, ET_STATUS_ERR_FORMAT);
    assert_has(err, "not a database");
    free(err);
    err = open_fails(ET_STORE_MODE_READ, ET_STATUS_ERR_FORMAT);
    assert_has(err, "not a database");
    free(err);

    snprintf(path, sizeof path, "%s/missing/store.sqlite", dir);
    err = open_fails(ET_STORE_MODE_WRITE, ET_STATUS_ERR_IO);
    assert_has(err, "No such file or directory");
    free(err);
    snprintf(path, sizeof path, "%s/store.sqlite", dir);
}

Test(store, read_only_open)
{
    char *err = open_fails(ET_STORE_MODE_READ, ET_STATUS_ERR_IO);
    assert_has(err, "No such file or directory");
    free(err);
    struct stat sb;
    cr_assert_neq(stat(path, &sb), 0, "a reader creates nothing");

    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    int64_t run;
    fill(st, &run);
    et_store *ro = open_ok(ET_STORE_MODE_READ);
    check_filled(ro, run);

    err = NULL;
    int64_t id = 0;
    arch_key a;
    make_key(&a, run, "search evolution", "", 99);
    et_store_eval v = make_eval(99);
    cr_assert_eq(et_store_eval_put(ro, &a.key, &v, 1, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, path);
    assert_has(err, "read-only");
    cr_assert_eq(et_store_run_add(ro, &info1, &id, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "read-only");
    cr_assert_eq(et_store_run_resume(ro, &info1, &id, &err), ET_STATUS_ERR_USAGE);
    et_store_checkpoint ck = make_checkpoint("supernet", 7);
    cr_assert_eq(et_store_checkpoint_put(ro, run, &ck, &err), ET_STATUS_ERR_USAGE);
    make_key(&a, run, "search evolution", "supernet step=100", 1);
    cr_assert_eq(et_store_final_put(ro, &a.key, 3, &err), ET_STATUS_ERR_USAGE);
    assert_has(err, "read-only");
    cr_assert_neq(sqlite3_exec(et_store_db(ro), "DELETE FROM eval_figure", NULL, NULL, NULL),
                  SQLITE_OK, "SQLite refuses writes too");
    free(err);
    et_store_close(st);

    char lock[160];
    snprintf(lock, sizeof lock, "%s.lock", path);
    cr_assert_neq(stat(lock, &sb), 0, "a reader takes no lock");
    check_filled(ro, run);
    et_store_close(ro);
}

Test(store, blobs_are_kept_per_run_and_replaced)
{
    et_store *st = open_ok(ET_STORE_MODE_WRITE);
    int64_t run = add_run(st, &info1);
    char *err = NULL;
    void *data;
    size_t n;
    cr_assert_eq(et_store_blob_get(st, run, "ranker/metric", &data, &n, &err), 0, "%s", err);
    cr_assert_null(data);
    const char bytes[5] = {1, 0, 2, 0, 3};
    cr_assert_eq(et_store_blob_put(st, run, "ranker/metric", bytes, sizeof bytes, &err), 0, "%s",
                 err);
    cr_assert_eq(et_store_blob_put(st, run, "empty", "", 0, &err), 0, "%s", err);
    et_store_close(st);
    st = open_ok(ET_STORE_MODE_WRITE);
    cr_assert_eq(et_store_blob_get(st, run, "ranker/metric", &data, &n, &err), 1, "%s", err);
    cr_assert_eq(n, sizeof bytes);
    cr_assert_arr_eq(data, bytes, sizeof bytes);
    free(data);
    cr_assert_eq(et_store_blob_put(st, run, "ranker/metric", "xy", 2, &err), 0, "%s", err);
    cr_assert_eq(et_store_blob_get(st, run, "ranker/metric", &data, &n, &err), 1, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_arr_eq(data, "xy", 2);
    free(data);
    cr_assert_eq(et_store_blob_get(st, run, "empty", &data, &n, &err), 1, "%s", err);
    cr_assert_eq(n, 0);
    free(data);
    cr_assert_eq(et_store_blob_get(st, run + 1, "ranker/metric", &data, &n, &err), 0);
    cr_assert_eq(et_store_blob_put(st, run, "", "x", 1, &err), ET_STATUS_ERR_USAGE);
    free(err);
    err = NULL;
    cr_assert_eq(et_store_blob_put(st, run + 7, "k", "x", 1, &err) < 0, 1);
    free(err);
    assert_intact(st);
    et_store_close(st);
}
