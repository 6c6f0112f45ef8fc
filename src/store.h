/* The result store: one SQLite file holding the provenance of every run, every
 * evaluation of an architecture, supernet checkpoints (by reference) and the
 * final results, so that a killed run resumes without recomputing anything.
 *
 * Rules the store enforces:
 * - every write is a transaction committed (synchronous=FULL) before the call
 *   returns, so a SIGKILL at any moment keeps every returned write and no
 *   partial one;
 * - an evaluation is keyed by (run, strategy, split, conditions, arch hash)
 *   and never stored twice: callers ask et_store_eval_get first;
 * - one writer at a time: opening for writing takes an exclusive lock held
 *   until close (a second writer is refused, naming the holder's pid);
 *   readers (`etnas report`) need no lock and may run beside the writer.
 *
 * Every failure returns a negative et_status and a one-line message through
 * `char **err` (malloc'd, freed by the caller) naming the store file. */
#ifndef ETNAS_CORE_STORE_H
#define ETNAS_CORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <etnas/plugin.h>

/* The schema this build reads and writes; a store with any other version is
 * refused rather than guessed at. */
#define ET_STORE_SCHEMA_VERSION 1

#define ET_STORE_NAME_MAX 64     /* stage, figure and checkpoint names, with the NUL */
#define ET_STORE_MAX_FIGURES 32  /* metrics (or costs) per evaluation */
#define ET_STORE_PATH_MAX 4096   /* checkpoint file paths, with the NUL */

typedef struct et_store et_store;
struct sqlite3;

typedef enum et_store_mode {
    ET_STORE_MODE_WRITE = 0, /* create when missing; exclusive writer */
    ET_STORE_MODE_READ = 1   /* existing store only; no lock, no writes */
} et_store_mode;

int et_store_open(const char *path, int32_t mode, et_store **out, char **err);
/* Closes and releases the writer lock; NULL is fine. */
void et_store_close(et_store *st);
const char *et_store_path(const et_store *st);
/* The SQLite handle, for read-only queries (reports) and tests; writes go
 * through the et_store_* functions so that the rules above hold. */
struct sqlite3 *et_store_db(et_store *st);

/* ---------------------------------------------------------------- runs */

/* What identifies a run for --resume. `ini_text` is the effective
 * experiment text (the file plus any overrides), compared byte for byte. */
typedef struct et_store_run_info {
    const char *experiment;
    const char *ini_text;
    int64_t seed;
    int32_t threads;
    const char *code_version;
} et_store_run_info;

/* A stored run: its info, and the host fingerprint the store took when the
 * run was added. */
typedef struct et_store_run {
    int64_t id;
    et_store_run_info info;
    const char *cpu_model; /* /proc/cpuinfo model name, or the machine type */
    int32_t cores;         /* online processors */
    const char *blas;      /* BLAS name, version and build (openblas_get_config) */
    int64_t started;       /* Unix seconds */
    int32_t resumes;       /* times et_store_run_resume picked it up */
} et_store_run;

/* A new run (with this host's fingerprint); *run_id gets its id. */
int et_store_run_add(et_store *st, const et_store_run_info *info, int64_t *run_id, char **err);
/* Deletes run `run_id` when nothing was recorded in it (no evaluation,
 * checkpoint, final result, blob or resume): a run whose set-up failed
 * leaves no row that a later --resume would take for the latest run. Sets
 * *dropped to 1 when it deleted the run. */
int et_store_run_drop_empty(et_store *st, int64_t run_id, int *dropped, char **err);
/* The latest run of info->experiment, for --resume: refused (with the first
 * differing INI line, or both seeds or thread counts) unless its INI text,
 * seed and thread count equal info's. Records the resume with this host's
 * fingerprint and info->code_version. */
int et_store_run_resume(et_store *st, const et_store_run_info *info, int64_t *run_id,
                        char **err);

/* Callbacks of the *_each walks: records are valid during the call only and
 * the callback must not write to the store; a nonzero return stops the walk
 * and becomes the walk's return value. */
typedef int (*et_store_run_fn)(void *ctx, const et_store_run *run);
/* Runs of `experiment` (NULL: all), oldest first. */
int et_store_run_each(et_store *st, const char *experiment, et_store_run_fn fn, void *ctx,
                      char **err);

/* ---------------------------------------------------------------- evaluations */

/* Named numbers: metrics (accuracy, loss, BLEU) or costs (params, FLOPs,
 * latency). Names are unique within a set; NaN and infinities round-trip. */
typedef struct et_store_figure {
    char name[ET_STORE_NAME_MAX];
    double value;
} et_store_figure;

typedef struct et_store_figures {
    int32_t n;
    et_store_figure v[ET_STORE_MAX_FIGURES];
} et_store_figures;

/* Append (name, value); ET_STATUS_ERR_USAGE when full, the name is empty or
 * too long, or already present. */
int et_store_figures_add(et_store_figures *f, const char *name, double value);
/* The figure called `name`, or NULL. */
const et_store_figure *et_store_figures_find(const et_store_figures *f, const char *name);

/* What an evaluation's result depends on. `conditions` says everything else
 * that does (e.g. "supernet step=4000", "standalone steps=20000"); equal keys
 * mean the stored result stands for a new evaluation. The hash identifies the
 * arch; its canonical text is kept beside it and checked on lookup. */
typedef struct et_store_eval_key {
    int64_t run;
    const char *strategy;   /* the search section, e.g. "search evolution" */
    const char *split;      /* "valid", "test" */
    const char *conditions; /* may be empty */
    uint64_t arch_hash;
    const char *arch_text;
} et_store_eval_key;

typedef struct et_store_eval {
    char stage[ET_STORE_NAME_MAX]; /* "supernet", "standalone", "final" */
    et_store_figures metrics, costs;
    double wall;                   /* seconds the evaluation took */
    int64_t seq;                   /* order within the run, from 1; set by put */
} et_store_eval;

/* Commit n evaluations in one transaction (all or none) and set each
 * vals[i].seq. A key already stored (or twice in the batch) refuses the
 * whole batch with ET_STATUS_ERR_USAGE and a message naming it. */
int et_store_eval_put(et_store *st, const et_store_eval_key *keys, et_store_eval *vals,
                      size_t n, char **err);
/* 1 and *out when `key` is stored, 0 when not. A stored hash whose arch text
 * differs from key->arch_text is a hash collision: ET_STATUS_ERR_INTERNAL. */
int et_store_eval_get(et_store *st, const et_store_eval_key *key, et_store_eval *out,
                      char **err);

typedef int (*et_store_eval_fn)(void *ctx, const et_store_eval_key *key,
                                const et_store_eval *val);
/* Evaluations of a run in seq order. */
int et_store_eval_each(et_store *st, int64_t run, et_store_eval_fn fn, void *ctx, char **err);

/* ---------------------------------------------------------------- checkpoints */

/* A checkpoint file written elsewhere (atomically, before it is put here):
 * the store keeps where it is and how to recognise it. */
typedef struct et_store_checkpoint {
    char name[ET_STORE_NAME_MAX]; /* what was saved, e.g. "supernet" */
    int64_t step;
    char path[ET_STORE_PATH_MAX];
    int64_t size;  /* bytes */
    uint32_t crc32;
} et_store_checkpoint;

/* One checkpoint per (run, name, step): a second is refused. */
int et_store_checkpoint_put(et_store *st, int64_t run, const et_store_checkpoint *ck,
                            char **err);
/* 1 and the checkpoint `name` of `run` with the highest step, 0 when none. */
int et_store_checkpoint_latest(et_store *st, int64_t run, const char *name,
                               et_store_checkpoint *out, char **err);

/* ---------------------------------------------------------------- plugins' data */

/* Bytes a plugin keeps with a run (a trained predictor, measured samples),
 * under a key; a second put of the key replaces the first. */
int et_store_blob_put(et_store *st, int64_t run, const char *key, const void *data, size_t n,
                      char **err);
/* 1 and a malloc'd copy (free it) when the key is there, 0 when not. */
int et_store_blob_get(et_store *st, int64_t run, const char *key, void **data, size_t *n,
                      char **err);

typedef int (*et_store_blob_fn)(void *ctx, const char *key, const void *data, size_t n);
/* Every blob of `run` whose key starts with prefix, in key order; a
 * non-zero return of fn stops and is returned. */
int et_store_blob_each(et_store *st, int64_t run, const char *prefix, et_store_blob_fn fn,
                       void *ctx, char **err);

/* ---------------------------------------------------------------- final results */

/* Mark the stored evaluation `key` (typically stage "final", split "test") as
 * result number `rank` (from 0) of key->strategy in key->run. The evaluation
 * must be stored; a rank or an evaluation marked twice is refused. */
int et_store_final_put(et_store *st, const et_store_eval_key *key, int32_t rank, char **err);

typedef int (*et_store_final_fn)(void *ctx, int32_t rank, const et_store_eval_key *key,
                                 const et_store_eval *val);
/* Final results of a run, by strategy name then rank. */
int et_store_final_each(et_store *st, int64_t run, et_store_final_fn fn, void *ctx,
                        char **err);

#endif
