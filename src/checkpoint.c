/* Checkpoints (checkpoint.h). Layout, little-endian:
 *   "ETNASCKP" u32 version u32 flags(1 = optimizer state)
 *   u64 step u64 rng.key u64 rng.counter u64 n_params u32 n_tensors
 *   u32 space_len u32 arch_len, space text, arch text
 *   per tensor: u32 name_len, name, u32 rows, u32 cols, u32 crc(params) u32 crc(optimizer)
 *   u32 crc of all the above
 *   params (n floats) [m, v (n floats each), counts (n u64), u64 optimizer step]
 * The per-tensor CRCs cover that tensor's parameters and (if present) its
 * m, v and counts, so a flipped bit names the tensor it hit. */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "space.h"
#include "util.h"

static const char magic[8] = {'E', 'T', 'N', 'A', 'S', 'C', 'K', 'P'};

typedef struct wbuf {
    FILE *f;
    uLong crc;
    int bad;
} wbuf;

static void put(wbuf *w, const void *p, size_t n)
{
    if (!w->bad && fwrite(p, 1, n, w->f) != n)
        w->bad = 1;
    w->crc = crc32(w->crc, p, (uInt)n);
}

static void put_u32(wbuf *w, uint32_t v)
{
    put(w, &v, 4);
}

static void put_u64(wbuf *w, uint64_t v)
{
    put(w, &v, 8);
}

static uint32_t tensor_crc(const float *base, const et_tensor *t)
{
    return (uint32_t)crc32(0, (const Bytef *)(base + t->offset),
                           (uInt)(sizeof(float) * (size_t)t->rows * (size_t)t->cols));
}

static uint32_t optim_crc(const et_optim *o, const et_tensor *t)
{
    size_t n = (size_t)t->rows * (size_t)t->cols;
    uLong c = crc32(0, (const Bytef *)(o->m + t->offset), (uInt)(sizeof(float) * n));
    c = crc32(c, (const Bytef *)(o->v + t->offset), (uInt)(sizeof(float) * n));
    return (uint32_t)crc32(c, (const Bytef *)(o->t + t->offset), (uInt)(sizeof(int64_t) * n));
}

int et_checkpoint_save(const char *path, et_model *m, const et_optim *opt,
                       const et_checkpoint_info *info, char **err)
{
    char space[65536];
    int slen = et_space_format(et_model_space(m), space, sizeof space);
    if (slen < 0)
        return et_fail(err, ET_STATUS_ERR_INTERNAL, "%s: space text too long", path);
    char *tmp = et_strdupf("%s.tmp.%ld", path, (long)getpid());
    if (!tmp)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int rc = et_fail(err, ET_STATUS_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    int64_t n;
    float *p = et_model_params(m, &n);
    int32_t nt;
    const et_tensor *t = et_model_tensors(m, &nt);
    wbuf w = {f, crc32(0, Z_NULL, 0), 0};
    uint32_t alen = (uint32_t)strlen(info->arch);
    put(&w, magic, 8);
    put_u32(&w, ET_CHECKPOINT_VERSION);
    put_u32(&w, opt ? 1u : 0u);
    put_u64(&w, (uint64_t)info->step);
    put_u64(&w, info->rng.key);
    put_u64(&w, info->rng.counter);
    put_u64(&w, (uint64_t)n);
    put_u32(&w, (uint32_t)nt);
    put_u32(&w, (uint32_t)slen);
    put_u32(&w, alen);
    put(&w, space, (size_t)slen);
    put(&w, info->arch, alen);
    for (int32_t i = 0; i < nt; i++) {
        uint32_t nl = (uint32_t)strlen(t[i].name);
        put_u32(&w, nl);
        put(&w, t[i].name, nl);
        put_u32(&w, (uint32_t)t[i].rows);
        put_u32(&w, (uint32_t)t[i].cols);
        put_u32(&w, tensor_crc(p, &t[i]));
        put_u32(&w, opt ? optim_crc(opt, &t[i]) : 0u);
    }
    put_u32(&w, (uint32_t)w.crc);
    put(&w, p, sizeof(float) * (size_t)n);
    if (opt) {
        put(&w, opt->m, sizeof(float) * (size_t)n);
        put(&w, opt->v, sizeof(float) * (size_t)n);
        put(&w, opt->t, sizeof(int64_t) * (size_t)n);
        put_u64(&w, (uint64_t)opt->step);
    }
    int bad = w.bad || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int saved_errno = errno;
    bad |= fclose(f) != 0;
    if (!bad && rename(tmp, path) != 0) {
        bad = 1;
        saved_errno = errno;
    }
    if (bad) {
        unlink(tmp);
        int rc = et_fail(err, ET_STATUS_ERR_IO, "%s: writing the checkpoint failed: %s", path,
                         strerror(saved_errno ? saved_errno : EIO));
        free(tmp);
        return rc;
    }
    free(tmp);
    /* make the rename itself durable */
    char *dir = et_strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        int fd = open(slash ? dir : ".", O_RDONLY);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        free(dir);
    }
    return 0;
}

typedef struct rbuf {
    const char *path;
    FILE *f;
    uLong crc;
    long pos;
    char **err;
} rbuf;

static int get(rbuf *r, void *p, size_t n, const char *what)
{
    size_t got = fread(p, 1, n, r->f);
    r->pos += (long)got;
    if (got != n)
        return et_fail(r->err, ET_STATUS_ERR_FORMAT, "%s: truncated at byte %ld (reading %s)",
                       r->path, r->pos, what);
    r->crc = crc32(r->crc, p, (uInt)n);
    return 0;
}

/* The fixed header and the space text of an open checkpoint: the magic and
 * version checked, *space (malloc'd, NUL-terminated) set on success. */
typedef struct ckp_head {
    uint32_t flags, nt, slen, alen;
    uint64_t step, key, counter, n;
} ckp_head;

static int read_head(rbuf *r, ckp_head *h, char **space)
{
    char mg[8];
    uint32_t version;
    int rc;
    *space = NULL;
    if ((rc = get(r, mg, 8, "the magic")))
        return rc;
    if (memcmp(mg, magic, 8))
        return et_fail(r->err, ET_STATUS_ERR_FORMAT, "%s: not an etnas checkpoint (bad magic)",
                       r->path);
    if ((rc = get(r, &version, 4, "the version")))
        return rc;
    if (version != ET_CHECKPOINT_VERSION)
        return et_fail(r->err, ET_STATUS_ERR_FORMAT,
                       "%s: checkpoint format version %u, this etnas reads version %d", r->path,
                       version, ET_CHECKPOINT_VERSION);
    if ((rc = get(r, &h->flags, 4, "the header")) || (rc = get(r, &h->step, 8, "the header")) ||
        (rc = get(r, &h->key, 8, "the header")) || (rc = get(r, &h->counter, 8, "the header")) ||
        (rc = get(r, &h->n, 8, "the header")) || (rc = get(r, &h->nt, 4, "the header")) ||
        (rc = get(r, &h->slen, 4, "the header")) || (rc = get(r, &h->alen, 4, "the header")))
        return rc;
    if (h->slen > (1u << 20) || h->alen >= sizeof ((et_checkpoint_info *)0)->arch)
        return et_fail(r->err, ET_STATUS_ERR_FORMAT, "%s: corrupted header (text lengths %u, %u)",
                       r->path, h->slen, h->alen);
    *space = malloc((size_t)h->slen + 1);
    if (!*space)
        return et_fail(r->err, ET_STATUS_ERR_NOMEM, "%s: out of memory", r->path);
    if ((rc = get(r, *space, h->slen, "the space text"))) {
        free(*space);
        *space = NULL;
        return rc;
    }
    (*space)[h->slen] = 0;
    return 0;
}

/* 0 when text is space's canonical text, else a one-line refusal. */
static int same_space(const char *path, const et_space *space, const char *text, char **err)
{
    char mine[65536];
    et_space_format(space, mine, sizeof mine);
    if (strcmp(mine, text) != 0)
        return et_fail(err, ET_STATUS_ERR_FORMAT,
                       "%s: written for another search space than this experiment's", path);
    return 0;
}

int et_checkpoint_check_space(const char *path, const et_space *space, char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return et_fail(err, ET_STATUS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    rbuf r = {path, f, crc32(0, Z_NULL, 0), 0, err};
    ckp_head h;
    char *text;
    int rc = read_head(&r, &h, &text);
    if (!rc)
        rc = same_space(path, space, text, err);
    fclose(f);
    free(text);
    return rc;
}

int et_checkpoint_load(const char *path, et_model *m, et_optim *opt, et_checkpoint_info *info,
                       char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return et_fail(err, ET_STATUS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    rbuf r = {path, f, crc32(0, Z_NULL, 0), 0, err};
    int rc = 0;
    ckp_head h;
    int64_t have_n;
    float *p = et_model_params(m, &have_n);
    int32_t have_nt;
    const et_tensor *t = et_model_tensors(m, &have_nt);
    uint32_t *crcs = NULL;
    char *space = NULL;
    float *data = NULL;
    if ((rc = read_head(&r, &h, &space)) || (rc = get(&r, info->arch, h.alen, "the arch text")))
        goto done;
    info->arch[h.alen] = 0;
    if ((rc = same_space(path, et_model_space(m), space, err)))
        goto done;
    uint32_t flags = h.flags, nt = h.nt;
    uint64_t n = h.n;
    if (n != (uint64_t)have_n || nt != (uint32_t)have_nt) {
        rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                     "%s: written for another search space than this experiment's", path);
        goto done;
    }
    if ((flags & 1u) && !opt) {
        /* weights only are wanted: fine, the optimizer part is skipped */
    } else if (!(flags & 1u) && opt) {
        rc = et_fail(err, ET_STATUS_ERR_FORMAT, "%s: has no optimizer state to resume from", path);
        goto done;
    }
    crcs = malloc(sizeof *crcs * 2 * nt);
    if (!crcs) {
        rc = et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (uint32_t i = 0; i < nt; i++) {
        uint32_t nl, rows, cols;
        char name[256];
        if ((rc = get(&r, &nl, 4, "the tensor table")))
            goto done;
        if (nl >= sizeof name) {
            rc = et_fail(err, ET_STATUS_ERR_FORMAT, "%s: corrupted tensor table", path);
            goto done;
        }
        if ((rc = get(&r, name, nl, "the tensor table")) || (rc = get(&r, &rows, 4, "the tensor table")) ||
            (rc = get(&r, &cols, 4, "the tensor table")) ||
            (rc = get(&r, &crcs[2 * i], 4, "the tensor table")) ||
            (rc = get(&r, &crcs[2 * i + 1], 4, "the tensor table")))
            goto done;
        name[nl] = 0;
        if (strcmp(name, t[i].name) || rows != (uint32_t)t[i].rows || cols != (uint32_t)t[i].cols) {
            rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                         "%s: tensor %u is %s (%ux%u), the model expects %s (%dx%d)", path, i, name,
                         rows, cols, t[i].name, t[i].rows, t[i].cols);
            goto done;
        }
    }
    uLong header_crc = r.crc;
    uint32_t stored;
    if ((rc = get(&r, &stored, 4, "the header checksum")))
        goto done;
    if (stored != (uint32_t)header_crc) {
        rc = et_fail(err, ET_STATUS_ERR_FORMAT, "%s: corrupted header (checksum mismatch)", path);
        goto done;
    }
    /* read into scratch first so a bad file leaves the model untouched */
    size_t per = sizeof(float) * (size_t)n;
    size_t total = per + ((flags & 1u) ? 2 * per + sizeof(int64_t) * (size_t)n : 0);
    data = malloc(total ? total : 1);
    if (!data) {
        rc = et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((rc = get(&r, data, total, "the tensors")))
        goto done;
    uint64_t opt_step = 0;
    if ((flags & 1u) && (rc = get(&r, &opt_step, 8, "the optimizer step")))
        goto done;
    float *dm = data + n, *dv = data + 2 * n;
    int64_t *dt = (int64_t *)(void *)(data + 3 * n);
    for (uint32_t i = 0; i < nt; i++) {
        if (tensor_crc(data, &t[i]) != crcs[2 * i]) {
            rc = et_fail(err, ET_STATUS_ERR_FORMAT, "%s: tensor %s is corrupted (CRC mismatch)",
                         path, t[i].name);
            goto done;
        }
        if (flags & 1u) {
            et_optim tmp = {.m = dm, .v = dv, .t = dt};
            if (optim_crc(&tmp, &t[i]) != crcs[2 * i + 1]) {
                rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                             "%s: optimizer state of %s is corrupted (CRC mismatch)", path,
                             t[i].name);
                goto done;
            }
        }
    }
    memcpy(p, data, per);
    if (opt && (flags & 1u)) {
        memcpy(opt->m, dm, per);
        memcpy(opt->v, dv, per);
        memcpy(opt->t, dt, sizeof(int64_t) * (size_t)n);
        opt->step = (int64_t)opt_step;
    }
    info->step = (int64_t)h.step;
    info->rng.key = h.key;
    info->rng.counter = h.counter;
done:
    fclose(f);
    free(crcs);
    free(space);
    free(data);
    return rc;
}
