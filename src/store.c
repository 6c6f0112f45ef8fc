/* The SQLite result store (store.h): schema and its version, the one-writer
 * lock, and the records (runs, evaluations, checkpoints, final results).
 *
 * Durability: WAL journal with synchronous=FULL, every write in a transaction
 * that commits before the call returns. A process killed mid-transaction
 * leaves uncommitted WAL frames that SQLite ignores on the next open.
 *
 * The writer lock is a flock(2) on "<store>.lock", taken before SQLite opens
 * the file and held until close. flock belongs to the open file description,
 * so the kernel drops it when the holder dies (SIGKILL included), a second
 * open in the same process conflicts like any other, and SQLite's own POSIX
 * locks on the database are left alone. The holder writes its pid into the
 * file so that a refused writer can name it. */
#include "store.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* "ETNA" in the SQLite header, so that a glance at a file tells what it is. */
#define STORE_APPLICATION_ID 0x45544e41

#define STR_(x) #x
#define STR(x) STR_(x)

struct et_store {
    sqlite3 *db;
    char *path;
    char *lock_path;
    int lock_fd;
    int32_t mode;
};

static const char schema_sql[] =
    "PRAGMA application_id = " STR(STORE_APPLICATION_ID) ";"
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL);"
    "INSERT INTO meta (key, value) VALUES ('schema_version', '" STR(ET_STORE_SCHEMA_VERSION) "');"
    "CREATE TABLE run ("
    "  id INTEGER PRIMARY KEY,"
    "  experiment TEXT NOT NULL,"
    "  ini_text TEXT NOT NULL,"
    "  seed INTEGER NOT NULL,"
    "  threads INTEGER NOT NULL,"
    "  code_version TEXT NOT NULL,"
    "  cpu_model TEXT NOT NULL,"
    "  cores INTEGER NOT NULL,"
    "  blas TEXT NOT NULL,"
    "  started INTEGER NOT NULL);"
    "CREATE INDEX run_experiment ON run (experiment, id);"
    "CREATE TABLE resume ("
    "  run_id INTEGER NOT NULL REFERENCES run (id),"
    "  at INTEGER NOT NULL,"
    "  code_version TEXT NOT NULL,"
    "  cpu_model TEXT NOT NULL,"
    "  cores INTEGER NOT NULL,"
    "  blas TEXT NOT NULL);"
    "CREATE INDEX resume_run ON resume (run_id);"
    "CREATE TABLE eval ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES run (id),"
    "  seq INTEGER NOT NULL,"
    "  strategy TEXT NOT NULL,"
    "  split TEXT NOT NULL,"
    "  conditions TEXT NOT NULL,"
    "  arch_hash TEXT NOT NULL,"
    "  arch_text TEXT NOT NULL,"
    "  stage TEXT NOT NULL,"
    "  wall REAL NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  UNIQUE (run_id, strategy, split, conditions, arch_hash),"
    "  UNIQUE (run_id, seq));"
    /* value NULL is NaN: SQLite stores a bound NaN as NULL. */
    "CREATE TABLE eval_figure ("
    "  eval_id INTEGER NOT NULL REFERENCES eval (id),"
    "  kind TEXT NOT NULL CHECK (kind IN ('metric', 'cost')),"
    "  pos INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  value REAL,"
    "  PRIMARY KEY (eval_id, kind, name)) WITHOUT ROWID;"
    "CREATE TABLE checkpoint ("
    "  run_id INTEGER NOT NULL REFERENCES run (id),"
    "  name TEXT NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  path TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  crc32 INTEGER NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY (run_id, name, step));"
    "CREATE TABLE final ("
    "  run_id INTEGER NOT NULL REFERENCES run (id),"
    "  strategy TEXT NOT NULL,"
    "  rank INTEGER NOT NULL CHECK (rank >= 0),"
    "  eval_id INTEGER NOT NULL UNIQUE REFERENCES eval (id),"
    "  PRIMARY KEY (run_id, strategy, rank));";

/* Plugins' own bytes (trained predictors, measured samples), per run. */
static const char blob_sql[] =
    "CREATE TABLE IF NOT EXISTS blob ("
    "  run_id INTEGER NOT NULL REFERENCES run (id),"
    "  key TEXT NOT NULL,"
    "  data BLOB NOT NULL,"
    "  PRIMARY KEY (run_id, key));";

/* ---------------------------------------------------------------- SQLite helpers */

static int status_of(int sqlite_code)
{
    switch (sqlite_code & 0xff) {
    case SQLITE_NOMEM:
        return ET_STATUS_ERR_NOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_SCHEMA:
        return ET_STATUS_ERR_FORMAT;
    case SQLITE_CONSTRAINT:
    case SQLITE_READONLY:
        return ET_STATUS_ERR_USAGE;
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
        return ET_STATUS_ERR_INTERNAL;
    default:
        return ET_STATUS_ERR_IO;
    }
}

/* The message of SQLite's last error, formatted at once: a later rollback or
 * finalize would replace it. */
static int db_error(et_store *st, char **err, const char *what)
{
    return et_fail(err, status_of(sqlite3_extended_errcode(st->db)), "%s: %s: %s", st->path, what,
                   sqlite3_errmsg(st->db));
}

static int exec(et_store *st, const char *sql, const char *what, char **err)
{
    if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_error(st, err, what);
    return 0;
}

/* Undo an open transaction; SQLite has already rolled back after some
 * errors (a full disk, I/O), hence the check. */
static void rollback(et_store *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

static int prep(et_store *st, const char *sql, sqlite3_stmt **s, char **err)
{
    if (sqlite3_prepare_v2(st->db, sql, -1, s, NULL) != SQLITE_OK)
        return db_error(st, err, "cannot prepare a query");
    return 0;
}

static int bind_text(sqlite3_stmt *s, int i, const char *text)
{
    return sqlite3_bind_text(s, i, text, -1, SQLITE_STATIC);
}

static int bind_hash(sqlite3_stmt *s, int i, uint64_t hash)
{
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, hash);
    return sqlite3_bind_text(s, i, hex, -1, SQLITE_TRANSIENT);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

/* One integer from a query without parameters. */
static int query_int(et_store *st, const char *sql, int64_t *out, char **err)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(st, sql, &s, err);
    if (!rc) {
        if (sqlite3_step(s) == SQLITE_ROW)
            *out = sqlite3_column_int64(s, 0);
        else
            rc = db_error(st, err, "cannot read the store");
    }
    sqlite3_finalize(s);
    return rc;
}

static int need_write(et_store *st, const char *what, char **err)
{
    if (st->mode != ET_STORE_MODE_WRITE)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: cannot %s: the store is open read-only",
                       st->path, what);
    return 0;
}

/* ---------------------------------------------------------------- the writer lock */

static int lock_refuse(et_store *st, int fd, char **err)
{
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
    if (pid == (long)getpid())
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "%s: this process already has the store open for writing", st->path);
    if (pid > 0)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "%s: another etnas process (pid %ld) is writing this store; wait for it to "
                       "end, or give this run its own store ([experiment] store)",
                       st->path, pid);
    return et_fail(err, ET_STATUS_ERR_USAGE,
                   "%s: another etnas process is writing this store; wait for it to end, or give "
                   "this run its own store ([experiment] store)",
                   st->path);
}

static int lock_take(et_store *st, char **err)
{
    st->lock_path = et_strdupf("%s.lock", st->path);
    if (!st->lock_path)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", st->path);
    /* A holder unlinks the file at close; whoever locked the unlinked file
     * in the meantime sees a different inode under the name and tries again. */
    for (int attempt = 0; attempt < 16; attempt++) {
        int fd = open(st->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return et_fail(err, ET_STATUS_ERR_IO, "%s: cannot create the lock file %s: %s",
                           st->path, st->lock_path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            int rc = e == EWOULDBLOCK
                         ? lock_refuse(st, fd, err)
                         : et_fail(err, ET_STATUS_ERR_IO, "%s: cannot lock %s: %s", st->path,
                                   st->lock_path, strerror(e));
            close(fd);
            return rc;
        }
        struct stat held, named;
        if (fstat(fd, &held) == 0 && stat(st->lock_path, &named) == 0 &&
            held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
            char pid[32];
            int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
                int e = errno;
                close(fd);
                return et_fail(err, ET_STATUS_ERR_IO, "%s: cannot write the lock file %s: %s",
                               st->path, st->lock_path, strerror(e));
            }
            st->lock_fd = fd;
            return 0;
        }
        close(fd);
    }
    return et_fail(err, ET_STATUS_ERR_IO, "%s: cannot lock %s: it keeps being replaced", st->path,
                   st->lock_path);
}

/* ---------------------------------------------------------------- open and close */

static int schema_check(et_store *st, char **err)
{
    int64_t app = 0, has_meta = 0;
    int rc = query_int(st, "PRAGMA application_id", &app, err);
    if (!rc)
        rc = query_int(st,
                       "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                       &has_meta, err);
    if (rc)
        return rc;
    if (app != STORE_APPLICATION_ID || !has_meta)
        return et_fail(err, ET_STATUS_ERR_FORMAT,
                       "%s: not an etnas store (an SQLite file without etnas's tables); choose "
                       "another file",
                       st->path);
    sqlite3_stmt *s = NULL;
    rc = prep(st, "SELECT value FROM meta WHERE key = 'schema_version'", &s, err);
    if (rc)
        return rc;
    if (sqlite3_step(s) != SQLITE_ROW) {
        rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                     "%s: the store has no schema version (this etnas reads version %d)",
                     st->path, ET_STORE_SCHEMA_VERSION);
        sqlite3_finalize(s);
        return rc;
    }
    const char *text = col_text(s, 0);
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno)
        rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                     "%s: unknown store schema version '%s' (this etnas reads version %d)",
                     st->path, text, ET_STORE_SCHEMA_VERSION);
    else if (v > ET_STORE_SCHEMA_VERSION)
        rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                     "%s: store schema version %lld is newer than this etnas reads (version %d); "
                     "use a newer etnas, or another store",
                     st->path, v, ET_STORE_SCHEMA_VERSION);
    else if (v != ET_STORE_SCHEMA_VERSION)
        rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                     "%s: unknown store schema version %lld (this etnas reads version %d)",
                     st->path, v, ET_STORE_SCHEMA_VERSION);
    sqlite3_finalize(s);
    return rc;
}

/* Create the tables of a new (empty) file, then check the version; under
 * the writer lock and in one transaction, so a half-made schema never exists.
 * Then switch the journal to WAL. */
static int schema_prepare(et_store *st, char **err)
{
    int rc = exec(st, "BEGIN IMMEDIATE", "cannot open the store", err);
    if (rc)
        return rc;
    int64_t objects = 0;
    rc = query_int(st, "SELECT count(*) FROM sqlite_master", &objects, err);
    if (!rc && objects == 0)
        rc = exec(st, schema_sql, "cannot create the store", err);
    if (!rc)
        rc = schema_check(st, err);
    /* added within schema version 1: older files gain it on their first write */
    if (!rc)
        rc = exec(st, blob_sql, "cannot create the store", err);
    if (!rc)
        rc = exec(st, "COMMIT", "cannot create the store", err);
    if (rc) {
        rollback(st);
        return rc;
    }
    /* Only now that the file is known to be a store (a refused file is left
     * as it was); the mode is persistent, so this is a no-op after creation. */
    return exec(st, "PRAGMA journal_mode = WAL", "cannot open the store", err);
}

static int db_open(et_store *st, char **err)
{
    int write = st->mode == ET_STORE_MODE_WRITE;
    int flags = write ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
    int rc = sqlite3_open_v2(st->path, &st->db, flags, NULL);
    if (rc != SQLITE_OK) {
        rc = et_fail(err, status_of(rc), "%s: cannot open the store: %s", st->path,
                     st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        return rc;
    }
    /* Readers wait out a writer's WAL recovery or checkpoint rather than fail. */
    sqlite3_busy_timeout(st->db, 10000);
    if (!write)
        return 0;
    rc = exec(st, "PRAGMA synchronous = FULL", "cannot open the store", err);
    if (!rc)
        rc = exec(st, "PRAGMA foreign_keys = ON", "cannot open the store", err);
    return rc;
}

int et_store_open(const char *path, int32_t mode, et_store **out, char **err)
{
    *out = NULL;
    if (!path || !*path)
        return et_fail(err, ET_STATUS_ERR_USAGE, "the result store needs a file name");
    if (mode != ET_STORE_MODE_WRITE && mode != ET_STORE_MODE_READ)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: unknown store mode %d", path, (int)mode);
    et_store *st = calloc(1, sizeof *st);
    if (!st || !(st->path = et_strdup(path))) {
        free(st);
        return et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", path);
    }
    st->lock_fd = -1;
    st->mode = mode;
    int rc = 0;
    if (mode == ET_STORE_MODE_WRITE) {
        rc = lock_take(st, err);
    } else {
        /* SQLite would only say "unable to open database file". */
        struct stat sb;
        if (stat(path, &sb) != 0)
            rc = et_fail(err, ET_STATUS_ERR_IO, "%s: cannot open the store: %s", path,
                         strerror(errno));
    }
    if (!rc)
        rc = db_open(st, err);
    if (!rc)
        rc = mode == ET_STORE_MODE_WRITE ? schema_prepare(st, err) : schema_check(st, err);
    if (rc) {
        et_store_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

void et_store_close(et_store *st)
{
    if (!st)
        return;
    sqlite3_close_v2(st->db);
    /* Unlink while still holding the lock (see lock_take). */
    if (st->lock_fd >= 0) {
        unlink(st->lock_path);
        close(st->lock_fd);
    }
    free(st->lock_path);
    free(st->path);
    free(st);
}

const char *et_store_path(const et_store *st)
{
    return st->path;
}

struct sqlite3 *et_store_db(et_store *st)
{
    return st->db;
}

/* ---------------------------------------------------------------- host fingerprint */

typedef struct fingerprint {
    char cpu_model[256];
    int32_t cores;
    char blas[512];
} fingerprint;

/* The CPU's name from /proc/cpuinfo; its key differs between architectures,
 * so take the first present in order of preference. */
static void cpu_model(char *buf, size_t n)
{
    static const char *const keys[] = {"model name", "cpu model", "Model", "cpu"};
    int best = 4;
    buf[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (best > 0 && fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (!colon)
                continue;
            *colon = 0;
            const char *key = et_trim(line);
            for (int k = 0; k < best; k++) {
                if (!strcmp(key, keys[k])) {
                    snprintf(buf, n, "%s", et_trim(colon + 1));
                    best = k;
                    break;
                }
            }
        }
        fclose(f);
    }
    if (!buf[0]) {
        struct utsname u;
        snprintf(buf, n, "unknown %s", uname(&u) == 0 ? u.machine : "machine");
    }
}

static void fingerprint_take(fingerprint *fp)
{
    cpu_model(fp->cpu_model, sizeof fp->cpu_model);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    fp->cores = cores > 0 ? (int32_t)cores : 1;
    /* The config string is "OpenBLAS <version> <build options> <core>"; the
     * core is named separately when the build did not include it. */
    const char *config = openblas_get_config();
    const char *core = openblas_get_corename();
    if (!config)
        config = "OpenBLAS (unknown version)";
    if (core && *core && !strstr(config, core))
        snprintf(fp->blas, sizeof fp->blas, "%s core=%s", config, core);
    else
        snprintf(fp->blas, sizeof fp->blas, "%s", config);
}

/* ---------------------------------------------------------------- runs */

static int check_text(et_store *st, const char *what, const char *s, int may_be_empty, char **err)
{
    if (!s || (!may_be_empty && !*s))
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: %s is %s", st->path, what,
                       s ? "empty" : "missing");
    return 0;
}

static int check_run_info(et_store *st, const et_store_run_info *info, char **err)
{
    int rc = check_text(st, "the experiment name", info->experiment, 0, err);
    if (!rc)
        rc = check_text(st, "the experiment text", info->ini_text, 1, err);
    if (!rc)
        rc = check_text(st, "the code version", info->code_version, 1, err);
    if (!rc && info->threads < 1)
        rc = et_fail(err, ET_STATUS_ERR_USAGE, "%s: a run needs at least one thread, not %d",
                     st->path, (int)info->threads);
    return rc;
}

int et_store_run_add(et_store *st, const et_store_run_info *info, int64_t *run_id, char **err)
{
    int rc = need_write(st, "add a run", err);
    if (!rc)
        rc = check_run_info(st, info, err);
    if (rc)
        return rc;
    fingerprint fp;
    fingerprint_take(&fp);
    sqlite3_stmt *s = NULL;
    rc = prep(st,
              "INSERT INTO run (experiment, ini_text, seed, threads, code_version, cpu_model, "
              "cores, blas, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
              &s, err);
    if (rc)
        return rc;
    bind_text(s, 1, info->experiment);
    bind_text(s, 2, info->ini_text);
    sqlite3_bind_int64(s, 3, info->seed);
    sqlite3_bind_int(s, 4, info->threads);
    bind_text(s, 5, info->code_version);
    bind_text(s, 6, fp.cpu_model);
    sqlite3_bind_int(s, 7, fp.cores);
    bind_text(s, 8, fp.blas);
    sqlite3_bind_int64(s, 9, (int64_t)time(NULL));
    if (sqlite3_step(s) == SQLITE_DONE)
        *run_id = sqlite3_last_insert_rowid(st->db);
    else
        rc = db_error(st, err, "cannot add the run");
    sqlite3_finalize(s);
    return rc;
}

int et_store_run_drop_empty(et_store *st, int64_t run_id, int *dropped, char **err)
{
    *dropped = 0;
    int rc = need_write(st, "drop an empty run", err);
    if (rc)
        return rc;
    sqlite3_stmt *s = NULL;
    rc = prep(st,
              "DELETE FROM run WHERE id = ?1 "
              "AND NOT EXISTS (SELECT 1 FROM eval WHERE run_id = ?1) "
              "AND NOT EXISTS (SELECT 1 FROM checkpoint WHERE run_id = ?1) "
              "AND NOT EXISTS (SELECT 1 FROM final WHERE run_id = ?1) "
              "AND NOT EXISTS (SELECT 1 FROM blob WHERE run_id = ?1) "
              "AND NOT EXISTS (SELECT 1 FROM resume WHERE run_id = ?1)",
              &s, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run_id);
    if (sqlite3_step(s) == SQLITE_DONE)
        *dropped = sqlite3_changes(st->db) > 0;
    else
        rc = db_error(st, err, "cannot drop the empty run");
    sqlite3_finalize(s);
    return rc;
}

/* "line N is 'a' in run R but 'b' now", for the first line that differs. */
static void describe_difference(const char *stored, const char *now, int64_t run, char *buf,
                                size_t n)
{
    const char *a = stored, *b = now, *la = stored, *lb = now;
    int line = 1;
    while (*a && *a == *b) {
        if (*a == '\n') {
            line++;
            la = a + 1;
            lb = b + 1;
        }
        a++;
        b++;
    }
    int na = (int)strcspn(la, "\r\n"), nb = (int)strcspn(lb, "\r\n");
    /* a text that ended says so, rather than showing an empty line */
    snprintf(buf, n, "line %d is %s%.*s%s%s in run %" PRId64 " but %s%.*s%s%s now", line,
             *la ? "'" : "", na > 60 ? 60 : na, la, na > 60 ? "..." : "", *la ? "'" : "(absent)",
             run, *lb ? "'" : "", nb > 60 ? 60 : nb, lb, nb > 60 ? "..." : "",
             *lb ? "'" : "(absent)");
}

int et_store_run_resume(et_store *st, const et_store_run_info *info, int64_t *run_id, char **err)
{
    int rc = need_write(st, "resume a run", err);
    if (!rc)
        rc = check_run_info(st, info, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = NULL;
    rc = prep(st,
              "SELECT id, ini_text, seed, threads FROM run WHERE experiment = ? "
              "ORDER BY id DESC LIMIT 1",
              &s, err);
    if (rc)
        return rc;
    bind_text(s, 1, info->experiment);
    int step = sqlite3_step(s);
    int64_t id = 0;
    if (step == SQLITE_DONE) {
        rc = et_fail(err, ET_STATUS_ERR_USAGE,
                     "%s: no run of experiment '%s' to resume; start it without --resume",
                     st->path, info->experiment);
    } else if (step != SQLITE_ROW) {
        rc = db_error(st, err, "cannot find the run to resume");
    } else {
        id = sqlite3_column_int64(s, 0);
        const char *ini = col_text(s, 1);
        int64_t seed = sqlite3_column_int64(s, 2);
        int32_t threads = sqlite3_column_int(s, 3);
        char why[256] = "";
        if (strcmp(ini, info->ini_text))
            describe_difference(ini, info->ini_text, id, why, sizeof why);
        else if (seed != info->seed)
            snprintf(why, sizeof why, "run %" PRId64 " has seed %" PRId64 ", this one %" PRId64,
                     id, seed, info->seed);
        else if (threads != info->threads)
            snprintf(why, sizeof why,
                     "run %" PRId64 " used %d threads, this one %d (results depend on them)", id,
                     (int)threads, (int)info->threads);
        if (why[0])
            rc = et_fail(err, ET_STATUS_ERR_USAGE,
                         "%s: cannot resume experiment '%s': %s; resume with the same file, "
                         "overrides and seed, or start a new run without --resume",
                         st->path, info->experiment, why);
    }
    sqlite3_finalize(s);
    if (rc)
        return rc;
    fingerprint fp;
    fingerprint_take(&fp);
    rc = prep(st,
              "INSERT INTO resume (run_id, at, code_version, cpu_model, cores, blas) "
              "VALUES (?, ?, ?, ?, ?, ?)",
              &s, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, (int64_t)time(NULL));
    bind_text(s, 3, info->code_version);
    bind_text(s, 4, fp.cpu_model);
    sqlite3_bind_int(s, 5, fp.cores);
    bind_text(s, 6, fp.blas);
    if (sqlite3_step(s) == SQLITE_DONE)
        *run_id = id;
    else
        rc = db_error(st, err, "cannot record the resume");
    sqlite3_finalize(s);
    return rc;
}

int et_store_run_each(et_store *st, const char *experiment, et_store_run_fn fn, void *ctx,
                      char **err)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(st,
                  "SELECT id, experiment, ini_text, seed, threads, code_version, cpu_model, cores, "
                  "blas, started, (SELECT count(*) FROM resume WHERE run_id = run.id) "
                  "FROM run WHERE ?1 IS NULL OR experiment = ?1 ORDER BY id",
                  &s, err);
    if (rc)
        return rc;
    if (experiment)
        bind_text(s, 1, experiment);
    int step = SQLITE_DONE;
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        et_store_run r = {
            .id = sqlite3_column_int64(s, 0),
            .info = {.experiment = col_text(s, 1),
                     .ini_text = col_text(s, 2),
                     .seed = sqlite3_column_int64(s, 3),
                     .threads = sqlite3_column_int(s, 4),
                     .code_version = col_text(s, 5)},
            .cpu_model = col_text(s, 6),
            .cores = sqlite3_column_int(s, 7),
            .blas = col_text(s, 8),
            .started = sqlite3_column_int64(s, 9),
            .resumes = sqlite3_column_int(s, 10),
        };
        rc = fn(ctx, &r);
    }
    if (!rc && step != SQLITE_DONE)
        rc = db_error(st, err, "cannot read the runs");
    sqlite3_finalize(s);
    return rc;
}

/* ---------------------------------------------------------------- figures */

static int name_ok(const char *name)
{
    return name[0] && memchr(name, 0, ET_STORE_NAME_MAX) != NULL;
}

int et_store_figures_add(et_store_figures *f, const char *name, double value)
{
    if (f->n < 0 || f->n >= ET_STORE_MAX_FIGURES || !name || !*name ||
        strlen(name) >= ET_STORE_NAME_MAX || et_store_figures_find(f, name))
        return ET_STATUS_ERR_USAGE;
    et_store_figure *g = &f->v[f->n++];
    memset(g->name, 0, sizeof g->name);
    memcpy(g->name, name, strlen(name));
    g->value = value;
    return 0;
}

const et_store_figure *et_store_figures_find(const et_store_figures *f, const char *name)
{
    for (int32_t i = 0; i < f->n && i < ET_STORE_MAX_FIGURES; i++)
        if (!strncmp(f->v[i].name, name, ET_STORE_NAME_MAX))
            return &f->v[i];
    return NULL;
}

static int check_figures(et_store *st, const et_store_figures *f, const char *kind, char **err)
{
    if (f->n < 0 || f->n > ET_STORE_MAX_FIGURES)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: %d %s figures (at most %d)", st->path,
                       (int)f->n, kind, ET_STORE_MAX_FIGURES);
    for (int32_t i = 0; i < f->n; i++) {
        if (!name_ok(f->v[i].name))
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "%s: %s figure %d has an empty or unterminated name", st->path, kind,
                           (int)i);
        for (int32_t j = 0; j < i; j++)
            if (!strcmp(f->v[i].name, f->v[j].name))
                return et_fail(err, ET_STATUS_ERR_USAGE, "%s: %s figure '%s' appears twice",
                               st->path, kind, f->v[i].name);
    }
    return 0;
}

/* Both sets of an evaluation, in the order they were put. */
static int load_figures(et_store *st, sqlite3_stmt *q, int64_t eval_id, et_store_eval *out,
                        char **err)
{
    out->metrics.n = 0;
    out->costs.n = 0;
    sqlite3_reset(q);
    sqlite3_bind_int64(q, 1, eval_id);
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        et_store_figures *f = !strcmp(col_text(q, 0), "cost") ? &out->costs : &out->metrics;
        if (f->n >= ET_STORE_MAX_FIGURES)
            return et_fail(err, ET_STATUS_ERR_FORMAT,
                           "%s: evaluation %" PRId64 " has more than %d %s figures", st->path,
                           eval_id, ET_STORE_MAX_FIGURES, col_text(q, 0));
        et_store_figure *g = &f->v[f->n++];
        snprintf(g->name, sizeof g->name, "%s", col_text(q, 1));
        g->value = sqlite3_column_type(q, 2) == SQLITE_NULL ? NAN : sqlite3_column_double(q, 2);
    }
    if (step != SQLITE_DONE)
        return db_error(st, err, "cannot read an evaluation");
    return 0;
}

static const char figures_sql[] =
    "SELECT kind, name, value FROM eval_figure WHERE eval_id = ? ORDER BY kind, pos";

/* ---------------------------------------------------------------- evaluations */

static int check_key(et_store *st, const et_store_eval_key *key, char **err)
{
    if (key->run < 1)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: no run %" PRId64 " (run ids start at 1)",
                       st->path, key->run);
    int rc = check_text(st, "the strategy of an evaluation", key->strategy, 0, err);
    if (!rc)
        rc = check_text(st, "the split of an evaluation", key->split, 0, err);
    if (!rc)
        rc = check_text(st, "the conditions of an evaluation", key->conditions, 1, err);
    if (!rc)
        rc = check_text(st, "the arch text of an evaluation", key->arch_text, 0, err);
    return rc;
}

static int check_eval(et_store *st, const et_store_eval *v, char **err)
{
    if (!name_ok(v->stage))
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "%s: the stage of an evaluation is empty or longer than %d bytes",
                       st->path, ET_STORE_NAME_MAX - 1);
    if (!isfinite(v->wall) || v->wall < 0)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "%s: the wall time of an evaluation is %g, not a duration", st->path,
                       v->wall);
    int rc = check_figures(st, &v->metrics, "metric", err);
    if (!rc)
        rc = check_figures(st, &v->costs, "cost", err);
    return rc;
}

/* The row of `key`: 1 with its id and seq, 0 when absent. A different arch
 * text under the same hash is refused as a collision. */
static int find_eval(et_store *st, const et_store_eval_key *key, int64_t *id, et_store_eval *out,
                     char **err)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(st,
                  "SELECT id, seq, arch_text, stage, wall FROM eval WHERE run_id = ? AND "
                  "strategy = ? AND split = ? AND conditions = ? AND arch_hash = ?",
                  &s, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, key->run);
    bind_text(s, 2, key->strategy);
    bind_text(s, 3, key->split);
    bind_text(s, 4, key->conditions);
    bind_hash(s, 5, key->arch_hash);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        const char *text = col_text(s, 2);
        if (strcmp(text, key->arch_text)) {
            rc = et_fail(err, ET_STATUS_ERR_INTERNAL,
                         "%s: arch hash %016" PRIx64 " names two archs: '%.80s' (stored) and "
                         "'%.80s'",
                         st->path, key->arch_hash, text, key->arch_text);
        } else {
            *id = sqlite3_column_int64(s, 0);
            if (out) {
                out->seq = sqlite3_column_int64(s, 1);
                snprintf(out->stage, sizeof out->stage, "%s", col_text(s, 3));
                out->wall = sqlite3_column_double(s, 4);
            }
            rc = 1;
        }
    } else if (step != SQLITE_DONE) {
        rc = db_error(st, err, "cannot look up an evaluation");
    }
    sqlite3_finalize(s);
    return rc;
}

int et_store_eval_get(et_store *st, const et_store_eval_key *key, et_store_eval *out, char **err)
{
    int rc = check_key(st, key, err);
    if (rc)
        return rc;
    int64_t id = 0;
    rc = find_eval(st, key, &id, out, err);
    if (rc != 1)
        return rc;
    sqlite3_stmt *q = NULL;
    rc = prep(st, figures_sql, &q, err);
    if (!rc)
        rc = load_figures(st, q, id, out, err);
    sqlite3_finalize(q);
    return rc ? rc : 1;
}

static int refuse_duplicate(et_store *st, const et_store_eval_key *key, char **err)
{
    int64_t id = 0;
    et_store_eval old;
    int found = find_eval(st, key, &id, &old, err);
    if (found < 0)
        return found; /* the same hash for another arch */
    if (found == 1)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "%s: run %" PRId64 " already holds evaluation #%" PRId64
                       " of arch %016" PRIx64 " by '%s' on split '%s' under '%s'; an arch is "
                       "never scored twice under the same conditions",
                       st->path, key->run, old.seq, key->arch_hash, key->strategy, key->split,
                       key->conditions);
    return et_fail(err, ET_STATUS_ERR_USAGE,
                   "%s: the batch holds arch %016" PRIx64 " twice for '%s' on split '%s' under "
                   "'%s' in run %" PRId64 "; an arch is never scored twice under the same "
                   "conditions",
                   st->path, key->arch_hash, key->strategy, key->split, key->conditions, key->run);
}

static int insert_figures(et_store *st, sqlite3_stmt *ins, int64_t eval_id, const char *kind,
                          const et_store_figures *f, char **err)
{
    for (int32_t i = 0; i < f->n; i++) {
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, eval_id);
        bind_text(ins, 2, kind);
        sqlite3_bind_int(ins, 3, i);
        bind_text(ins, 4, f->v[i].name);
        sqlite3_bind_double(ins, 5, f->v[i].value);
        if (sqlite3_step(ins) != SQLITE_DONE)
            return db_error(st, err, "cannot store an evaluation");
    }
    return 0;
}

int et_store_eval_put(et_store *st, const et_store_eval_key *keys, et_store_eval *vals, size_t n,
                      char **err)
{
    int rc = need_write(st, "store evaluations", err);
    for (size_t i = 0; i < n && !rc; i++) {
        rc = check_key(st, &keys[i], err);
        if (!rc)
            rc = check_eval(st, &vals[i], err);
    }
    if (rc || n == 0)
        return rc;
    sqlite3_stmt *next = NULL, *ins = NULL, *fig = NULL;
    rc = prep(st, "SELECT COALESCE(MAX(seq), 0) + 1 FROM eval WHERE run_id = ?", &next, err);
    if (!rc)
        rc = prep(st,
                  "INSERT INTO eval (run_id, seq, strategy, split, conditions, arch_hash, "
                  "arch_text, stage, wall, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  &ins, err);
    if (!rc)
        rc = prep(st,
                  "INSERT INTO eval_figure (eval_id, kind, pos, name, value) "
                  "VALUES (?, ?, ?, ?, ?)",
                  &fig, err);
    if (!rc)
        rc = exec(st, "BEGIN IMMEDIATE", "cannot store evaluations", err);
    size_t dup = n, no_run = n;
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < n && !rc; i++) {
        const et_store_eval_key *k = &keys[i];
        sqlite3_reset(next);
        sqlite3_bind_int64(next, 1, k->run);
        if (sqlite3_step(next) != SQLITE_ROW) {
            rc = db_error(st, err, "cannot store evaluations");
            break;
        }
        vals[i].seq = sqlite3_column_int64(next, 0);
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, k->run);
        sqlite3_bind_int64(ins, 2, vals[i].seq);
        bind_text(ins, 3, k->strategy);
        bind_text(ins, 4, k->split);
        bind_text(ins, 5, k->conditions);
        bind_hash(ins, 6, k->arch_hash);
        bind_text(ins, 7, k->arch_text);
        bind_text(ins, 8, vals[i].stage);
        sqlite3_bind_double(ins, 9, vals[i].wall);
        sqlite3_bind_int64(ins, 10, now);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            int ext = sqlite3_extended_errcode(st->db);
            if (ext == SQLITE_CONSTRAINT_UNIQUE)
                dup = i;
            else if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
                no_run = i;
            rc = db_error(st, err, "cannot store an evaluation");
            break;
        }
        int64_t id = sqlite3_last_insert_rowid(st->db);
        rc = insert_figures(st, fig, id, "metric", &vals[i].metrics, err);
        if (!rc)
            rc = insert_figures(st, fig, id, "cost", &vals[i].costs, err);
    }
    sqlite3_finalize(next);
    sqlite3_finalize(ins);
    sqlite3_finalize(fig);
    if (!rc)
        rc = exec(st, "COMMIT", "cannot commit evaluations", err);
    if (!rc)
        return 0;
    rollback(st);
    for (size_t i = 0; i < n; i++)
        vals[i].seq = 0;
    if (dup < n)
        return refuse_duplicate(st, &keys[dup], err);
    if (no_run < n)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: no run %" PRId64 " in the store", st->path,
                       keys[no_run].run);
    return rc;
}

/* Key and value of the eval row at columns [c, c + 9) of s: id, seq,
 * strategy, split, conditions, arch_hash, arch_text, stage, wall. */
static int row_eval(et_store *st, sqlite3_stmt *s, int c, int64_t run, sqlite3_stmt *figs,
                    et_store_eval_key *key, et_store_eval *val, char **err)
{
    int64_t id = sqlite3_column_int64(s, c);
    key->run = run;
    key->strategy = col_text(s, c + 2);
    key->split = col_text(s, c + 3);
    key->conditions = col_text(s, c + 4);
    key->arch_hash = strtoull(col_text(s, c + 5), NULL, 16);
    key->arch_text = col_text(s, c + 6);
    val->seq = sqlite3_column_int64(s, c + 1);
    snprintf(val->stage, sizeof val->stage, "%s", col_text(s, c + 7));
    val->wall = sqlite3_column_double(s, c + 8);
    return load_figures(st, figs, id, val, err);
}

/* Every row of `sql` (bound to run), its eval row at columns [c, c + 9),
 * handed to emit(ctx, s, key, val) until it returns non-zero; `what` names
 * the rows in a read error. */
typedef int (*eval_row_fn)(void *ctx, sqlite3_stmt *s, const et_store_eval_key *key,
                           const et_store_eval *val);

static int eval_rows(et_store *st, int64_t run, const char *sql, int c, const char *what,
                     eval_row_fn emit, void *ctx, char **err)
{
    sqlite3_stmt *s = NULL, *figs = NULL;
    int rc = prep(st, sql, &s, err);
    if (!rc)
        rc = prep(st, figures_sql, &figs, err);
    if (!rc)
        sqlite3_bind_int64(s, 1, run);
    int step = SQLITE_DONE;
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        et_store_eval_key key;
        et_store_eval val;
        rc = row_eval(st, s, c, run, figs, &key, &val, err);
        if (!rc)
            rc = emit(ctx, s, &key, &val);
    }
    if (!rc && step != SQLITE_DONE)
        rc = db_error(st, err, what);
    sqlite3_finalize(s);
    sqlite3_finalize(figs);
    return rc;
}

typedef struct each_eval {
    et_store_eval_fn fn;
    void *ctx;
} each_eval;

static int emit_eval(void *ctx, sqlite3_stmt *s, const et_store_eval_key *key,
                     const et_store_eval *val)
{
    each_eval *e = ctx;
    (void)s;
    return e->fn(e->ctx, key, val);
}

int et_store_eval_each(et_store *st, int64_t run, et_store_eval_fn fn, void *ctx, char **err)
{
    each_eval e = {fn, ctx};
    return eval_rows(st, run,
                     "SELECT id, seq, strategy, split, conditions, arch_hash, arch_text, stage, "
                     "wall FROM eval WHERE run_id = ? ORDER BY seq",
                     0, "cannot read the evaluations", emit_eval, &e, err);
}

/* ---------------------------------------------------------------- checkpoints */

int et_store_checkpoint_put(et_store *st, int64_t run, const et_store_checkpoint *ck, char **err)
{
    int rc = need_write(st, "record a checkpoint", err);
    if (rc)
        return rc;
    if (!name_ok(ck->name) || !ck->path[0] || !memchr(ck->path, 0, sizeof ck->path) ||
        ck->step < 0 || ck->size < 0)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "%s: a checkpoint needs a name (under %d bytes), a path, and a step and "
                       "size of at least 0",
                       st->path, ET_STORE_NAME_MAX);
    sqlite3_stmt *s = NULL;
    rc = prep(st,
              "INSERT INTO checkpoint (run_id, name, step, path, size, crc32, created) "
              "VALUES (?, ?, ?, ?, ?, ?, ?)",
              &s, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run);
    bind_text(s, 2, ck->name);
    sqlite3_bind_int64(s, 3, ck->step);
    bind_text(s, 4, ck->path);
    sqlite3_bind_int64(s, 5, ck->size);
    sqlite3_bind_int64(s, 6, ck->crc32);
    sqlite3_bind_int64(s, 7, (int64_t)time(NULL));
    if (sqlite3_step(s) != SQLITE_DONE) {
        int ext = sqlite3_extended_errcode(st->db);
        if (ext == SQLITE_CONSTRAINT_PRIMARYKEY)
            rc = et_fail(err, ET_STATUS_ERR_USAGE,
                         "%s: run %" PRId64 " already has checkpoint '%s' at step %" PRId64,
                         st->path, run, ck->name, ck->step);
        else if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
            rc = et_fail(err, ET_STATUS_ERR_USAGE, "%s: no run %" PRId64 " in the store",
                         st->path, run);
        else
            rc = db_error(st, err, "cannot record a checkpoint");
    }
    sqlite3_finalize(s);
    return rc;
}

int et_store_checkpoint_latest(et_store *st, int64_t run, const char *name,
                               et_store_checkpoint *out, char **err)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(st,
                  "SELECT step, path, size, crc32 FROM checkpoint WHERE run_id = ? AND name = ? "
                  "ORDER BY step DESC LIMIT 1",
                  &s, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run);
    bind_text(s, 2, name);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        snprintf(out->name, sizeof out->name, "%s", name);
        out->step = sqlite3_column_int64(s, 0);
        snprintf(out->path, sizeof out->path, "%s", col_text(s, 1));
        out->size = sqlite3_column_int64(s, 2);
        out->crc32 = (uint32_t)sqlite3_column_int64(s, 3);
        rc = 1;
    } else if (step != SQLITE_DONE) {
        rc = db_error(st, err, "cannot read the checkpoints");
    }
    sqlite3_finalize(s);
    return rc;
}

/* ---------------------------------------------------------------- final results */

int et_store_final_put(et_store *st, const et_store_eval_key *key, int32_t rank, char **err)
{
    int rc = need_write(st, "record a final result", err);
    if (!rc)
        rc = check_key(st, key, err);
    if (!rc && rank < 0)
        rc = et_fail(err, ET_STATUS_ERR_USAGE, "%s: final result rank %d is below 0", st->path,
                     (int)rank);
    if (rc)
        return rc;
    int64_t id = 0;
    rc = find_eval(st, key, &id, NULL, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "%s: run %" PRId64 " has no evaluation of arch %016" PRIx64 " by '%s' on "
                       "split '%s' under '%s' to make final; store the evaluation first",
                       st->path, key->run, key->arch_hash, key->strategy, key->split,
                       key->conditions);
    sqlite3_stmt *s = NULL;
    rc = prep(st, "INSERT INTO final (run_id, strategy, rank, eval_id) VALUES (?, ?, ?, ?)", &s,
              err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, key->run);
    bind_text(s, 2, key->strategy);
    sqlite3_bind_int(s, 3, rank);
    sqlite3_bind_int64(s, 4, id);
    if (sqlite3_step(s) != SQLITE_DONE) {
        int ext = sqlite3_extended_errcode(st->db);
        if (ext == SQLITE_CONSTRAINT_PRIMARYKEY)
            rc = et_fail(err, ET_STATUS_ERR_USAGE,
                         "%s: run %" PRId64 " already has final result %d of '%s'", st->path,
                         key->run, (int)rank, key->strategy);
        else if (ext == SQLITE_CONSTRAINT_UNIQUE)
            rc = et_fail(err, ET_STATUS_ERR_USAGE,
                         "%s: the evaluation of arch %016" PRIx64 " by '%s' in run %" PRId64
                         " is already a final result",
                         st->path, key->arch_hash, key->strategy, key->run);
        else
            rc = db_error(st, err, "cannot record a final result");
    }
    sqlite3_finalize(s);
    return rc;
}

typedef struct each_final {
    et_store_final_fn fn;
    void *ctx;
} each_final;

static int emit_final(void *ctx, sqlite3_stmt *s, const et_store_eval_key *key,
                      const et_store_eval *val)
{
    each_final *e = ctx;
    return e->fn(e->ctx, sqlite3_column_int(s, 0), key, val);
}

int et_store_final_each(et_store *st, int64_t run, et_store_final_fn fn, void *ctx, char **err)
{
    each_final e = {fn, ctx};
    return eval_rows(st, run,
                     "SELECT f.rank, e.id, e.seq, e.strategy, e.split, e.conditions, "
                     "e.arch_hash, e.arch_text, e.stage, e.wall FROM final f JOIN eval e ON "
                     "e.id = f.eval_id WHERE f.run_id = ? ORDER BY f.strategy, f.rank",
                     1, "cannot read the final results", emit_final, &e, err);
}

/* ---------------------------------------------------------------- blobs */

int et_store_blob_put(et_store *st, int64_t run, const char *key, const void *data, size_t n,
                      char **err)
{
    int rc = need_write(st, "keep a plugin's data", err);
    if (rc)
        return rc;
    if (!key || !*key || strlen(key) >= ET_STORE_NAME_MAX * 2)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: a blob needs a key of 1..%d bytes",
                       st->path, ET_STORE_NAME_MAX * 2 - 1);
    sqlite3_stmt *s = NULL;
    rc = prep(st, "INSERT OR REPLACE INTO blob (run_id, key, data) VALUES (?, ?, ?)", &s, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run);
    bind_text(s, 2, key);
    sqlite3_bind_blob64(s, 3, n ? data : "", (sqlite3_uint64)n, SQLITE_TRANSIENT);
    if (sqlite3_step(s) != SQLITE_DONE)
        rc = db_error(st, err, "cannot keep a plugin's data");
    sqlite3_finalize(s);
    return rc;
}

int et_store_blob_get(et_store *st, int64_t run, const char *key, void **data, size_t *n,
                      char **err)
{
    *data = NULL;
    *n = 0;
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "SELECT data FROM blob WHERE run_id = ? AND key = ?", &s, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run);
    bind_text(s, 2, key);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        void *copy = malloc(len ? len : 1);
        if (!copy) {
            rc = et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", st->path);
        } else {
            if (len)
                memcpy(copy, sqlite3_column_blob(s, 0), len);
            *data = copy;
            *n = len;
            rc = 1;
        }
    } else if (step != SQLITE_DONE) {
        rc = db_error(st, err, "cannot read a plugin's data");
    }
    sqlite3_finalize(s);
    return rc;
}

int et_store_blob_each(et_store *st, int64_t run, const char *prefix, et_store_blob_fn fn,
                       void *ctx, char **err)
{
    int64_t tables = 0;
    int rc = query_int(st, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                           "name = 'blob'",
                       &tables, err);
    if (rc || !tables)
        return rc; /* a store written before blobs existed has none */
    sqlite3_stmt *s = NULL;
    /* prefix match without LIKE's wildcards: substr */
    rc = prep(st,
              "SELECT key, data FROM blob WHERE run_id = ? AND substr(key, 1, ?) = ? "
              "ORDER BY key",
              &s, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)strlen(prefix));
    bind_text(s, 3, prefix);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(s, 0);
        const void *data = sqlite3_column_blob(s, 1);
        size_t n = (size_t)sqlite3_column_bytes(s, 1);
        if ((rc = fn(ctx, key ? key : "", data, n)))
            break;
    }
    if (!rc && step != SQLITE_DONE)
        rc = db_error(st, err, "cannot read plugins' data");
    sqlite3_finalize(s);
    return rc;
}
