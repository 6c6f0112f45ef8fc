/* Readers of IDX and CIFAR-10 binary files for the classify task. zlib's
 * gzread reads gzip and plain files alike (it looks at the content), so one
 * path serves both; byte offsets in messages count the uncompressed data.
 * Records are counted from 0, like byte offsets. */
#include "classify_io.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* Set *err through the host and evaluate to code; needs `host` and `err` in scope. */
#define CLASSIFY_FAIL(code, ...) (*err = host->errorf(__VA_ARGS__), (code))

#define IDX_IMAGES_MAGIC UINT32_C(0x00000803)
#define IDX_LABELS_MAGIC UINT32_C(0x00000801)
/* Image sides beyond this are not images a patch model will see; the bound
 * also keeps count × rows × cols far from overflow. */
#define IDX_MAX_SIDE 4096
/* First allocation when reading a declared size: a corrupt header claiming
 * gigabytes costs memory only as data actually arrives. */
#define READ_FIRST_CHUNK (INT64_C(1) << 24)
#define GZREAD_CHUNK (1 << 20)

typedef struct reader {
    const et_host *host;
    const char *path;
    gzFile f;
    int64_t offset; /* uncompressed bytes consumed */
} reader;

void classify_images_free(classify_images *set)
{
    if (!set)
        return;
    free(set->pixels);
    free(set->labels);
    memset(set, 0, sizeof *set);
}

int classify_find_file(const et_host *host, const char *dir, const char *name, int try_gz,
                       const char *hint, char **path, char **err)
{
    *path = NULL;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    size_t n = dl + strlen(name) + 5;
    char *plain = malloc(n), *gz = malloc(n);
    if (!plain || !gz) {
        free(plain);
        free(gz);
        return CLASSIFY_FAIL(ET_STATUS_ERR_NOMEM, "classify: out of memory");
    }
    snprintf(plain, n, "%.*s/%s", (int)dl, dir, name);
    snprintf(gz, n, "%.*s/%s.gz", (int)dl, dir, name);
    char *tries[2] = {try_gz ? gz : plain, try_gz ? plain : NULL};
    for (int i = 0; i < 2 && tries[i]; i++) {
        struct stat st;
        if (stat(tries[i], &st) != 0) {
            if (errno == ENOENT)
                continue;
            int rc = CLASSIFY_FAIL(ET_STATUS_ERR_IO, "%s: cannot open: %s", tries[i],
                                   strerror(errno));
            free(plain);
            free(gz);
            return rc;
        }
        if (!S_ISREG(st.st_mode)) {
            int rc = CLASSIFY_FAIL(ET_STATUS_ERR_IO, "%s: not a regular file", tries[i]);
            free(plain);
            free(gz);
            return rc;
        }
        *path = tries[i];
        free(tries[i] == gz ? plain : gz);
        return 0;
    }
    int rc = try_gz ? CLASSIFY_FAIL(ET_STATUS_ERR_IO, "%s: missing file (nor is there %s); %s",
                                    gz, plain, hint)
                    : CLASSIFY_FAIL(ET_STATUS_ERR_IO, "%s: missing file; %s", plain, hint);
    free(plain);
    free(gz);
    return rc;
}

static int reader_open(reader *r, const et_host *host, const char *path, char **err)
{
    r->host = host;
    r->path = path;
    r->offset = 0;
    errno = 0;
    r->f = gzopen(path, "rb");
    if (!r->f)
        return CLASSIFY_FAIL(ET_STATUS_ERR_IO, "%s: cannot open: %s", path,
                             errno ? strerror(errno) : "out of memory");
    return 0;
}

static void reader_close(reader *r)
{
    if (r->f)
        gzclose_r(r->f);
    r->f = NULL;
}

/* Up to n bytes into buf; *got is fewer than n only where the data ends. A
 * gzip stream cut short also just ends (zlib's Z_BUF_ERROR), so the caller
 * reports it as the truncation it is. */
static int reader_read(reader *r, void *buf, int64_t n, int64_t *got, char **err)
{
    const et_host *host = r->host;
    int64_t done = 0;
    while (done < n) {
        int64_t want = n - done < GZREAD_CHUNK ? n - done : GZREAD_CHUNK;
        int k = gzread(r->f, (unsigned char *)buf + done, (unsigned)want);
        if (k > 0) {
            done += k;
            continue;
        }
        if (k == 0)
            break;
        int zerr;
        const char *zmsg = gzerror(r->f, &zerr);
        if (zerr == Z_BUF_ERROR)
            break;
        if (zerr == Z_ERRNO)
            return CLASSIFY_FAIL(ET_STATUS_ERR_IO, "%s: byte %" PRId64 ": read error: %s", r->path,
                                 r->offset + done, strerror(errno));
        /* zlib's message starts with the path, which ours already names. */
        size_t pl = strlen(r->path);
        if (!strncmp(zmsg, r->path, pl) && !strncmp(zmsg + pl, ": ", 2))
            zmsg += pl + 2;
        return CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                             "%s: corrupt gzip data after byte %" PRId64 " (%s)", r->path,
                             r->offset + done, zmsg);
    }
    r->offset += done;
    *got = done;
    return 0;
}

/* n declared bytes into a malloc'd *out, grown as the data arrives; *got
 * says how many there were (fewer than n: the file is truncated). */
static int reader_read_grow(reader *r, int64_t n, uint8_t **out, int64_t *got, char **err)
{
    const et_host *host = r->host;
    int64_t cap = n < READ_FIRST_CHUNK ? n : READ_FIRST_CHUNK, have = 0;
    uint8_t *buf = malloc(cap > 0 ? (size_t)cap : 1);
    *out = NULL;
    *got = 0;
    if (!buf)
        return CLASSIFY_FAIL(ET_STATUS_ERR_NOMEM, "%s: out of memory reading it", r->path);
    for (;;) {
        int64_t k;
        int rc = reader_read(r, buf + have, cap - have, &k, err);
        if (rc) {
            free(buf);
            return rc;
        }
        have += k;
        if (have < cap || cap == n)
            break;
        int64_t next = cap * 2 < n ? cap * 2 : n;
        uint8_t *grown = realloc(buf, (size_t)next);
        if (!grown) {
            free(buf);
            return CLASSIFY_FAIL(ET_STATUS_ERR_NOMEM, "%s: out of memory reading it", r->path);
        }
        buf = grown;
        cap = next;
    }
    *out = buf;
    *got = have;
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* The header of an IDX file: magic, then `dims` big-endian counts. */
static int idx_header(reader *r, uint32_t magic, const char *what, int dims, uint32_t *sizes,
                      char **err)
{
    const et_host *host = r->host;
    uint8_t head[16];
    int64_t want = 4 + 4 * (int64_t)dims, got;
    int rc = reader_read(r, head, want, &got, err);
    if (rc)
        return rc;
    if (got >= 4 && be32(head) != magic)
        return CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                             "%s: byte 0: wrong magic 0x%08" PRIx32 " (expected 0x%08" PRIx32
                             ", an IDX %s file)",
                             r->path, be32(head), magic, what);
    if (got < want)
        return CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                             "%s: byte %" PRId64 ": truncated header (%" PRId64 " of %" PRId64
                             " bytes)",
                             r->path, got, got, want);
    for (int i = 0; i < dims; i++)
        sizes[i] = be32(head + 4 + 4 * i);
    if (sizes[0] == 0)
        return CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT, "%s: byte 4: no records (count 0)", r->path);
    if (sizes[0] > INT32_MAX)
        return CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                             "%s: byte 4: count %" PRIu32 " is beyond what classify holds",
                             r->path, sizes[0]);
    return 0;
}

/* After the declared records the file must end. */
static int expect_end(reader *r, const char *what, int64_t count, char **err)
{
    const et_host *host = r->host;
    uint8_t extra;
    int64_t got;
    int64_t at = r->offset;
    int rc = reader_read(r, &extra, 1, &got, err);
    if (rc)
        return rc;
    if (got)
        return CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                             "%s: byte %" PRId64 ": data after the last of the %" PRId64
                             " %s the header declares (size is not a whole number of records)",
                             r->path, at, count, what);
    return 0;
}

static int idx_labels(const et_host *host, const char *path, int32_t num_classes,
                      uint8_t **labels, int64_t *count, char **err)
{
    reader r;
    uint32_t sizes[1];
    int64_t got;
    uint8_t *buf = NULL;
    int rc = reader_open(&r, host, path, err);
    if (rc)
        return rc;
    if ((rc = idx_header(&r, IDX_LABELS_MAGIC, "label", 1, sizes, err)))
        goto out;
    int64_t n = sizes[0];
    if ((rc = reader_read_grow(&r, n, &buf, &got, err)))
        goto out;
    if (got < n) {
        rc = CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                           "%s: label %" PRId64 " at byte %" PRId64
                           ": truncated record (the header declares %" PRId64 " labels)",
                           path, got, 8 + got, n);
        goto out;
    }
    if ((rc = expect_end(&r, "labels", n, err)))
        goto out;
    for (int64_t i = 0; i < n; i++)
        if (buf[i] >= num_classes) {
            rc = CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                               "%s: label %" PRId64 " at byte %" PRId64
                               ": %u is out of range (classes = %d: labels 0..%d)",
                               path, i, 8 + i, (unsigned)buf[i], (int)num_classes,
                               (int)num_classes - 1);
            goto out;
        }
    *labels = buf;
    *count = n;
    buf = NULL;
out:
    free(buf);
    reader_close(&r);
    return rc;
}

int classify_read_idx(const et_host *host, const char *images_path, const char *labels_path,
                      int32_t num_classes, classify_images *out, char **err)
{
    reader r = {0};
    uint32_t sizes[3];
    uint8_t *labels = NULL, *pixels = NULL;
    int64_t n_labels = 0, got;
    int rc = idx_labels(host, labels_path, num_classes, &labels, &n_labels, err);
    if (rc)
        return rc;
    if ((rc = reader_open(&r, host, images_path, err)))
        goto out;
    if ((rc = idx_header(&r, IDX_IMAGES_MAGIC, "image", 3, sizes, err)))
        goto out;
    if (sizes[1] == 0 || sizes[2] == 0 || sizes[1] > IDX_MAX_SIDE || sizes[2] > IDX_MAX_SIDE) {
        rc = CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                           "%s: byte 8: image size %" PRIu32 "x%" PRIu32
                           " is not one classify takes (sides 1..%d)",
                           images_path, sizes[1], sizes[2], IDX_MAX_SIDE);
        goto out;
    }
    if ((int64_t)sizes[0] != n_labels) {
        rc = CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                           "%s has %" PRIu32 " images but %s has %" PRId64
                           " labels (the counts must match)",
                           images_path, sizes[0], labels_path, n_labels);
        goto out;
    }
    int64_t record = (int64_t)sizes[1] * sizes[2], n = sizes[0];
    if ((rc = reader_read_grow(&r, n * record, &pixels, &got, err)))
        goto out;
    if (got < n * record) {
        rc = CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                           "%s: image %" PRId64 " at byte %" PRId64
                           ": truncated record (%" PRId64 " of %" PRId64
                           " bytes; the header declares %" PRId64 " images)",
                           images_path, got / record, 16 + got / record * record, got % record,
                           record, n);
        goto out;
    }
    if ((rc = expect_end(&r, "images", n, err)))
        goto out;
    out->count = out->capacity = n;
    out->channels = 1;
    out->height = (int32_t)sizes[1];
    out->width = (int32_t)sizes[2];
    out->pixels = pixels;
    out->labels = labels;
    pixels = labels = NULL;
out:
    free(pixels);
    free(labels);
    reader_close(&r);
    return rc;
}

static int images_reserve(classify_images *set, int64_t need)
{
    if (need <= set->capacity)
        return 0;
    int64_t cap = set->capacity ? set->capacity : 1024;
    while (cap < need)
        cap *= 2;
    size_t image = (size_t)set->channels * (size_t)set->height * (size_t)set->width;
    uint8_t *pixels = realloc(set->pixels, (size_t)cap * image);
    if (!pixels)
        return ET_STATUS_ERR_NOMEM;
    set->pixels = pixels;
    uint8_t *labels = realloc(set->labels, (size_t)cap);
    if (!labels)
        return ET_STATUS_ERR_NOMEM;
    set->labels = labels;
    set->capacity = cap;
    return 0;
}

int classify_read_cifar(const et_host *host, const char *path, int32_t num_classes,
                        classify_images *set, char **err)
{
    enum { image = CLASSIFY_CIFAR_RECORD - 1 };
    reader r;
    uint8_t rec[CLASSIFY_CIFAR_RECORD];
    if (set->count == 0) {
        set->channels = 3;
        set->height = set->width = CLASSIFY_CIFAR_SIDE;
    }
    int rc = reader_open(&r, host, path, err);
    if (rc)
        return rc;
    for (int64_t k = 0;; k++) {
        int64_t got, at = r.offset;
        if ((rc = reader_read(&r, rec, CLASSIFY_CIFAR_RECORD, &got, err)))
            break;
        if (got == 0) {
            if (k == 0)
                rc = CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT, "%s: no records (empty file)", path);
            break;
        }
        if (got < CLASSIFY_CIFAR_RECORD) {
            rc = CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                               "%s: record %" PRId64 " at byte %" PRId64
                               ": truncated record (%" PRId64
                               " of %d bytes; the file size is not a multiple of %d)",
                               path, k, at, got, CLASSIFY_CIFAR_RECORD, CLASSIFY_CIFAR_RECORD);
            break;
        }
        if (rec[0] >= num_classes) {
            rc = CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                               "%s: record %" PRId64 " at byte %" PRId64
                               ": label %u is out of range (classes = %d: labels 0..%d)",
                               path, k, at, (unsigned)rec[0], (int)num_classes,
                               (int)num_classes - 1);
            break;
        }
        if (set->count >= INT32_MAX) {
            rc = CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                               "%s: record %" PRId64 ": more images than classify holds", path, k);
            break;
        }
        if (images_reserve(set, set->count + 1)) {
            rc = CLASSIFY_FAIL(ET_STATUS_ERR_NOMEM, "%s: out of memory reading it", path);
            break;
        }
        set->labels[set->count] = rec[0];
        memcpy(set->pixels + set->count * (int64_t)image, rec + 1, image);
        set->count++;
    }
    reader_close(&r);
    return rc;
}
