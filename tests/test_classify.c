/* The classify task: IDX and CIFAR-10 readers on small files written here in
 * the real formats (plain and gzip), every bad-file message, the patch
 * layout, normalisation, the seeded split, shuffling and augmentation by
 * (seed, epoch), and the real Fashion-MNIST from Debian (a declared
 * dependency, so its absence is a failure).
 * Each test works in its own directory under /tmp and removes it. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <etnas/etnas.h>

#include "../plugins/tasks/classify_io.h"
#include "../plugins/tasks/classify_patch.h"
#include "testutil.h"

const et_plugin_descriptor *etnas_plugin(void);

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static char tdir[64];

static void setup(void)
{
    snprintf(tdir, sizeof tdir, "/tmp/etnas-classify-XXXXXX");
    cr_assert_not_null(mkdtemp(tdir));
}

static void teardown(void)
{
    DIR *d = opendir(tdir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", tdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tdir);
}

TestSuite(classify, .init = setup, .fini = teardown);

/* ------------------------------------------------------------ a host by hand */

static void quiet_log(void *ctx, int32_t level, const char *fmt, ...)
{
    (void)ctx;
    (void)level;
    (void)fmt;
}

static et_host test_host(uint64_t seed)
{
    return tu_host(seed, quiet_log);
}

/* ------------------------------------------------------------ writing files */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_be32(buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

typedef uint8_t (*pixel_fn)(int64_t i, int c, int y, int x);
typedef uint8_t (*label_fn)(int64_t i);

static buf idx_images(uint32_t count, uint32_t rows, uint32_t cols, pixel_fn pix, int64_t first)
{
    buf b = {0};
    put_be32(&b, 0x803);
    put_be32(&b, count);
    put_be32(&b, rows);
    put_be32(&b, cols);
    for (uint32_t i = 0; i < count; i++)
        for (uint32_t y = 0; y < rows; y++)
            for (uint32_t x = 0; x < cols; x++) {
                uint8_t v = pix(first + i, 0, (int)y, (int)x);
                put(&b, &v, 1);
            }
    return b;
}

static buf idx_labels(uint32_t count, label_fn lab, int64_t first)
{
    buf b = {0};
    put_be32(&b, 0x801);
    put_be32(&b, count);
    for (uint32_t i = 0; i < count; i++) {
        uint8_t v = lab(first + i);
        put(&b, &v, 1);
    }
    return b;
}

static buf cifar_records(int count, pixel_fn pix, label_fn lab, int64_t first)
{
    buf b = {0};
    for (int i = 0; i < count; i++) {
        uint8_t v = lab(first + i);
        put(&b, &v, 1);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) {
                    v = pix(first + i, c, y, x);
                    put(&b, &v, 1);
                }
    }
    return b;
}

/* Write b as tdir/name, gzip-compressed when gz; b is freed. */
static void write_buf(const char *name, buf b, int gz)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tdir, name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(gzwrite(f, b.p, (unsigned)b.n), (int)b.n);
        cr_assert_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(p, "wb");
        cr_assert_not_null(f);
        if (b.n)
            cr_assert_eq(fwrite(b.p, 1, b.n, f), b.n);
        cr_assert_eq(fclose(f), 0);
    }
    free(b.p);
}

static void remove_file(const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tdir, name);
    cr_assert_eq(unlink(p), 0, "%s", p);
}

static uint8_t label_mod10(int64_t i)
{
    return (uint8_t)(i % 10);
}

/* Names every example: the value of pixel (0, 0) and (0, 1) spell its index. */
static uint8_t pixel_id(int64_t i, int c, int y, int x)
{
    (void)c;
    if (y == 0 && x == 0)
        return (uint8_t)(i & 255);
    if (y == 0 && x == 1)
        return (uint8_t)(i >> 8);
    return 0;
}

/* Distinct in every pixel of the first 16 images of 4×4: 16·i + 4·y + x. */
static uint8_t pixel_unique(int64_t i, int c, int y, int x)
{
    (void)c;
    return (uint8_t)(i * 16 + y * 4 + x);
}

/* A different value per example, channel and pixel. */
static uint8_t pixel_mixed(int64_t i, int c, int y, int x)
{
    return (uint8_t)((i * 37 + c * 101 + y * 7 + x * 3 + (i * y * x) % 11) & 255);
}

/* A small IDX data set: n_train and n_test images of rows × cols. */
static void make_idx(uint32_t n_train, uint32_t n_test, uint32_t rows, uint32_t cols,
                     pixel_fn pix, int gz)
{
    write_buf(gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte",
              idx_images(n_train, rows, cols, pix, 0), gz);
    write_buf(gz ? "train-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte",
              idx_labels(n_train, label_mod10, 0), gz);
    write_buf(gz ? "t10k-images-idx3-ubyte.gz" : "t10k-images-idx3-ubyte",
              idx_images(n_test, rows, cols, pix, 1000), gz);
    write_buf(gz ? "t10k-labels-idx1-ubyte.gz" : "t10k-labels-idx1-ubyte",
              idx_labels(n_test, label_mod10, 1000), gz);
}

/* A small CIFAR-10 set: per_batch records in each of the five training
 * batches (examples numbered on across them), n_test in the test batch. */
static void make_cifar(int per_batch, int n_test, pixel_fn pix)
{
    for (int k = 0; k < 5; k++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", k + 1);
        write_buf(name, cifar_records(per_batch, pix, label_mod10, (int64_t)k * per_batch), 0);
    }
    write_buf("test_batch.bin", cifar_records(n_test, pix, label_mod10, 1000), 0);
}

/* ------------------------------------------------------------ running the task */

static const et_task_vtable *vt(void)
{
    return etnas_plugin()->vtable;
}

/* Options as the host would bind them: kv is "key", "value", ..., NULL;
 * missing keys take their declared defaults. */
static void bind_options(const char *const *kv, et_option_value *vals)
{
    const et_option_decl *d = etnas_plugin()->options;
    for (int i = 0; d[i].key; i++) {
        const char *text = d[i].default_value;
        for (int j = 0; kv && kv[j]; j += 2)
            if (!strcmp(kv[j], d[i].key))
                text = kv[j + 1];
        cr_assert_not_null(text, "option %s needs a value", d[i].key);
        memset(&vals[i], 0, sizeof vals[i]);
        switch (d[i].type) {
        case ET_OPTION_TYPE_INT:
            vals[i].i = strtoll(text, NULL, 10);
            vals[i].f = (double)vals[i].i;
            break;
        case ET_OPTION_TYPE_BOOL:
            vals[i].i = !strcmp(text, "true");
            break;
        case ET_OPTION_TYPE_CHOICE: {
            const char *c = d[i].choices;
            size_t tl = strlen(text);
            int idx = 0, found = -1;
            while (c && *c) {
                const char *bar = strchr(c, '|');
                size_t cl = bar ? (size_t)(bar - c) : strlen(c);
                if (cl == tl && !strncmp(c, text, tl))
                    found = idx;
                idx++;
                c = bar ? bar + 1 : c + cl;
            }
            cr_assert_geq(found, 0, "%s is not a choice of %s", text, d[i].key);
            vals[i].i = found;
            vals[i].s = text;
            break;
        }
        default:
            vals[i].s = text;
            break;
        }
    }
}

typedef struct task {
    et_host host;
    et_option_value vals[16];
    void *st;
    et_task_info info;
} task;

/* Create and load; returns the status, leaving the message in *err. */
static int task_open(task *t, uint64_t seed, const char *const *kv, char **err)
{
    memset(t, 0, sizeof *t);
    t->host = test_host(seed);
    bind_options(kv, t->vals);
    *err = NULL;
    int rc = vt()->create(&t->host, t->vals, &t->st, err);
    if (rc)
        return rc;
    return vt()->load(t->st, &t->info, err);
}

static void task_open_ok(task *t, uint64_t seed, const char *const *kv)
{
    char *err = NULL;
    int rc = task_open(t, seed, kv, &err);
    cr_assert_eq(rc, 0, "load failed: %s", err ? err : "(no message)");
}

static void task_close(task *t)
{
    vt()->destroy(t->st);
    t->st = NULL;
}

/* Every example of a split in batch order: values (n, T·D) and labels (n). */
static void collect(task *t, int32_t split, int64_t epoch, int32_t bs, float **vals,
                    int32_t **labels)
{
    int64_t n = t->info.split_size[split], per = (int64_t)t->info.max_src_len * t->info.input_dim;
    *vals = malloc((size_t)(n * per + 1) * sizeof **vals);
    *labels = malloc((size_t)(n + 1) * sizeof **labels);
    int64_t count = vt()->batch_count(t->st, split, bs), at = 0;
    cr_assert_eq(count, (n + bs - 1) / bs);
    for (int64_t b = 0; b < count; b++) {
        et_batch out;
        char *err = NULL;
        cr_assert_eq(vt()->batch(t->st, split, epoch, bs, b, &out, &err), 0, "%s", err);
        cr_assert_eq(out.size, b + 1 < count ? bs : n - b * bs);
        cr_assert_eq(out.src_len, t->info.max_src_len);
        cr_assert_null(out.src_lens);
        memcpy(*vals + at * per, out.src_vec, (size_t)(out.size * per) * sizeof(float));
        memcpy(*labels + at, out.labels, (size_t)out.size * sizeof(int32_t));
        at += out.size;
    }
    cr_assert_eq(at, n);
}

static int byte_of(float v)
{
    return (int)lrintf(v * 255.0f);
}

/* The index named by pixel_id in an example's values (patch 1, one channel). */
static int64_t id_of(const float *v)
{
    return byte_of(v[0]) + 256 * byte_of(v[1]);
}

static void expect_error(const char *const *kv, int code, const char *expected)
{
    task t;
    char *err = NULL;
    int rc = task_open(&t, 1, kv, &err);
    cr_assert_eq(rc, code, "status %d (want %d): %s", rc, code, err ? err : "(no message)");
    cr_assert_not_null(err);
    cr_assert_str_eq(err, expected);
    cr_assert_null(strchr(err, '\n'));
    free(err);
    task_close(&t);
}

/* ------------------------------------------------------------ descriptor, lifecycle */

Test(classify, descriptor_declares_its_options)
{
    const et_plugin_descriptor *d = etnas_plugin();
    cr_assert_eq(d->abi_version, ET_ABI_VERSION);
    cr_assert_eq(d->kind, ET_PLUGIN_KIND_TASK);
    cr_assert_str_eq(d->name, "classify");
    static const char *const want[][2] = {
        {"format", "idx"},   {"data", FASHION_DIR}, {"valid_size", "5000"},
        {"patch", "4"},      {"normalize", "true"}, {"crop_pad", "0"},
        {"flip", "false"},   {"max_train", "0"},    {"classes", "10"},
    };
    int n = 0;
    for (; d->options[n].key; n++) {
        cr_assert_lt(n, 9);
        cr_assert_str_eq(d->options[n].key, want[n][0]);
        cr_assert_str_eq(d->options[n].default_value, want[n][1]);
        cr_assert_not_null(d->options[n].help);
    }
    cr_assert_eq(n, 9);
    const et_task_vtable *v = d->vtable;
    cr_assert(v->create && v->destroy && v->load && v->batch_count && v->batch);
}

Test(classify, destroy_is_safe_and_bad_calls_are_refused)
{
    vt()->destroy(NULL);
    et_host h = test_host(1);
    et_option_value vals[16];
    const char *kv[] = {"data", tdir, "patch", "0", NULL};
    bind_options(kv, vals);
    void *st = (void *)1;
    char *err = NULL;
    cr_assert_eq(vt()->create(&h, vals, &st, &err), ET_STATUS_ERR_USAGE);
    cr_assert_null(st);
    cr_assert_not_null(err);
    free(err);
    vt()->destroy(st);

    make_idx(10, 3, 2, 2, pixel_id, 0);
    const char *ok[] = {"data", tdir, "patch", "1", "valid_size", "2", NULL};
    bind_options(ok, vals);
    cr_assert_eq(vt()->create(&h, vals, &st, &err), 0);
    et_batch out;
    err = NULL;
    cr_assert_eq(vt()->batch(st, ET_SPLIT_TEST, 0, 2, 0, &out, &err), ET_STATUS_ERR_USAGE);
    cr_assert_str_eq(err, "classify: batch called before load");
    free(err);
    cr_assert_lt(vt()->batch_count(st, ET_SPLIT_TEST, 2), 0);
    et_task_info info;
    cr_assert_eq(vt()->load(st, &info, &err), 0);
    cr_assert_lt(vt()->batch_count(st, 3, 2), 0);
    cr_assert_lt(vt()->batch_count(st, ET_SPLIT_TEST, 0), 0);
    cr_assert_eq(vt()->batch_count(st, ET_SPLIT_TEST, 2), 2);
    cr_assert_eq(vt()->batch(st, ET_SPLIT_TEST, 0, 2, 1, &out, &err), 0);
    cr_assert_eq(out.size, 1); /* the last batch is the rest */
    err = NULL;
    cr_assert_eq(vt()->batch(st, ET_SPLIT_TEST, 0, 2, 2, &out, &err), ET_STATUS_ERR_USAGE);
    cr_assert_str_eq(err, "classify: batch 2 of split 2 does not exist (2 batches of 2)");
    free(err);
    err = NULL;
    cr_assert_eq(vt()->load(st, &info, &err), ET_STATUS_ERR_USAGE);
    free(err);
    vt()->destroy(st);
}

/* ------------------------------------------------------------ readers */

/* Test examples in file order with their bytes where the layout says. */
static void check_idx_test_split(task *t, int rows, int cols, int p)
{
    float *v;
    int32_t *lab;
    collect(t, ET_SPLIT_TEST, 0, 3, &v, &lab);
    int gw = cols / p, dim = p * p, per = rows * cols;
    for (int64_t i = 0; i < t->info.split_size[ET_SPLIT_TEST]; i++) {
        cr_assert_eq(lab[i], (1000 + i) % 10);
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < cols; x++) {
                float got = v[i * per + ((y / p) * gw + x / p) * dim + (y % p) * p + x % p];
                cr_assert_eq(byte_of(got), pixel_mixed(1000 + i, 0, y, x), "example %" PRId64
                             " pixel (%d, %d)", i, y, x);
                cr_assert_float_eq(got, pixel_mixed(1000 + i, 0, y, x) / 255.0f, 1e-7);
            }
    }
    free(v);
    free(lab);
}

Test(classify, idx_plain_and_gzip_read_alike)
{
    for (int gz = 0; gz < 2; gz++) {
        make_idx(20, 7, 4, 6, pixel_mixed, gz);
        task t;
        const char *kv[] = {"data", tdir, "patch", "2", "valid_size", "0",
                            "normalize", "false", NULL};
        task_open_ok(&t, 3, kv);
        cr_assert_eq(t.info.model_kind, ET_MODEL_KIND_ENCODER);
        cr_assert_eq(t.info.num_classes, 10);
        cr_assert_eq(t.info.input_dim, 4);
        cr_assert_eq(t.info.max_src_len, 6);
        cr_assert_eq(t.info.split_size[ET_SPLIT_TRAIN], 20);
        cr_assert_eq(t.info.split_size[ET_SPLIT_VALID], 0);
        cr_assert_eq(t.info.split_size[ET_SPLIT_TEST], 7);
        cr_assert_str_eq(t.info.metric, "accuracy");
        cr_assert_eq(t.info.higher_is_better, 1);
        cr_assert_eq(t.info.src_vocab, 0);
        check_idx_test_split(&t, 4, 6, 2);
        task_close(&t);
        teardown();
        setup();
    }
}

Test(classify, gzip_is_told_by_content_not_name)
{
    /* gzip data under the plain names, plain data under the .gz names. */
    write_buf("train-images-idx3-ubyte", idx_images(12, 4, 6, pixel_mixed, 0), 1);
    write_buf("train-labels-idx1-ubyte.gz", idx_labels(12, label_mod10, 0), 0);
    write_buf("t10k-images-idx3-ubyte", idx_images(5, 4, 6, pixel_mixed, 1000), 1);
    write_buf("t10k-labels-idx1-ubyte.gz", idx_labels(5, label_mod10, 1000), 0);
    task t;
    const char *kv[] = {"data", tdir, "patch", "2", "valid_size", "2",
                        "normalize", "false", NULL};
    task_open_ok(&t, 3, kv);
    cr_assert_eq(t.info.split_size[ET_SPLIT_TRAIN], 10);
    cr_assert_eq(t.info.split_size[ET_SPLIT_TEST], 5);
    check_idx_test_split(&t, 4, 6, 2);
    task_close(&t);
}

Test(classify, cifar_planes_become_interleaved_patches)
{
    make_cifar(3, 4, pixel_mixed);
    /* The test batch gzip-compressed under its usual name reads the same. */
    write_buf("test_batch.bin", cifar_records(4, pixel_mixed, label_mod10, 1000), 1);
    task t;
    const char *kv[] = {"format", "cifar10", "data", tdir, "patch", "8", "valid_size", "5",
                        "normalize", "false", NULL};
    task_open_ok(&t, 3, kv);
    cr_assert_eq(t.info.input_dim, 8 * 8 * 3);
    cr_assert_eq(t.info.max_src_len, 16);
    cr_assert_eq(t.info.split_size[ET_SPLIT_TRAIN], 10);
    cr_assert_eq(t.info.split_size[ET_SPLIT_VALID], 5);
    cr_assert_eq(t.info.split_size[ET_SPLIT_TEST], 4);
    float *v;
    int32_t *lab;
    collect(&t, ET_SPLIT_TEST, 0, 3, &v, &lab);
    for (int64_t i = 0; i < 4; i++) {
        cr_assert_eq(lab[i], (1000 + i) % 10);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) {
                    int64_t at = i * 3072 + ((y / 8) * 4 + x / 8) * 192 +
                                 ((y % 8) * 8 + x % 8) * 3 + c;
                    cr_assert_eq(byte_of(v[at]), pixel_mixed(1000 + i, c, y, x));
                }
    }
    free(v);
    free(lab);
    /* Validation keeps file order across the five batch files. */
    collect(&t, ET_SPLIT_VALID, 0, 2, &v, &lab);
    int64_t last = -1;
    for (int64_t i = 0; i < 5; i++) {
        int64_t id = -1;
        for (int64_t k = 0; k < 15; k++)
            if (byte_of(v[i * 3072]) == pixel_mixed(k, 0, 0, 0) &&
                byte_of(v[i * 3072 + 1]) == pixel_mixed(k, 1, 0, 0) &&
                byte_of(v[i * 3072 + 3]) == pixel_mixed(k, 0, 0, 1))
                id = k;
        cr_assert_gt(id, last);
        cr_assert_eq(lab[i], id % 10);
        last = id;
    }
    free(v);
    free(lab);
    task_close(&t);
}

Test(classify, patches_of_a_hand_made_image)
{
    /* 4×4, pixel value 10·(4y + x); P = 2 gives four patches of four. */
    buf im = {0};
    put_be32(&im, 0x803);
    put_be32(&im, 1);
    put_be32(&im, 4);
    put_be32(&im, 4);
    for (int k = 0; k < 16; k++) {
        uint8_t b = (uint8_t)(10 * k);
        put(&im, &b, 1);
    }
    buf copy = {0};
    put(&copy, im.p, im.n);
    write_buf("train-images-idx3-ubyte", im, 0);
    write_buf("t10k-images-idx3-ubyte", copy, 0);
    write_buf("train-labels-idx1-ubyte", idx_labels(1, label_mod10, 3), 0);
    write_buf("t10k-labels-idx1-ubyte", idx_labels(1, label_mod10, 3), 0);
    task t;
    const char *kv[] = {"data", tdir, "patch", "2", "valid_size", "0", "normalize", "false",
                        NULL};
    task_open_ok(&t, 1, kv);
    et_batch out;
    char *err = NULL;
    cr_assert_eq(vt()->batch(t.st, ET_SPLIT_TEST, 0, 8, 0, &out, &err), 0);
    static const int want[16] = {0,  10, 40,  50,  20,  30,  60,  70,
                                 80, 90, 120, 130, 100, 110, 140, 150};
    cr_assert_eq(out.size, 1);
    cr_assert_eq(out.labels[0], 3);
    for (int k = 0; k < 16; k++)
        cr_assert_eq(byte_of(out.src_vec[k]), want[k], "value %d", k);
    task_close(&t);

    /* Colour: a 2×2 RGB image, channels interleaved within each pixel. */
    static const uint8_t rgb[12] = {1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24};
    float lut[3 * 256], o[12];
    classify_lut_fill(3, NULL, NULL, lut);
    classify_patchify(rgb, 3, 2, 2, 2, NULL, lut, o);
    static const int whole[12] = {1, 11, 21, 2, 12, 22, 3, 13, 23, 4, 14, 24};
    for (int k = 0; k < 12; k++)
        cr_assert_eq(byte_of(o[k]), whole[k], "P=2 value %d", k);
    classify_patchify(rgb, 3, 2, 2, 1, NULL, lut, o);
    for (int k = 0; k < 12; k++)
        cr_assert_eq(byte_of(o[k]), whole[k], "P=1 value %d", k);
}

Test(classify, crop_and_flip_pixels_on_a_tiny_image)
{
    /* 3×3 image 1..9, P = 1, so the output is the view row-major. */
    static const uint8_t img[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float lut[256], o[9];
    classify_lut_fill(1, NULL, NULL, lut);
    static const struct {
        classify_view v;
        int want[9];
    } cases[] = {
        {{1, 1, 1, 0}, {1, 2, 3, 4, 5, 6, 7, 8, 9}},  /* centred window: the image */
        {{1, 0, 2, 0}, {0, 0, 0, 2, 3, 0, 5, 6, 0}},  /* up one, right one */
        {{1, 0, 2, 1}, {0, 0, 0, 0, 3, 2, 0, 6, 5}},  /* that, mirrored */
        {{1, 1, 1, 1}, {3, 2, 1, 6, 5, 4, 9, 8, 7}},  /* flip only */
        {{2, 4, 0, 0}, {0, 0, 7, 0, 0, 0, 0, 0, 0}},  /* corner of a wide pad */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        classify_patchify(img, 1, 3, 3, 1, &cases[k].v, lut, o);
        for (int j = 0; j < 9; j++)
            cr_assert_eq(byte_of(o[j]), cases[k].want[j], "case %zu value %d", k, j);
    }
    /* Padding is byte 0 before normalisation: −mean/std, not 0. */
    double mean = 0.5, std = 0.25;
    classify_lut_fill(1, &mean, &std, lut);
    classify_patchify(img, 1, 3, 3, 1, &cases[1].v, lut, o);
    cr_assert_float_eq(o[0], -2.0f, 1e-6);
    cr_assert_float_eq(o[3], (float)((2 / 255.0 - 0.5) / 0.25), 1e-6);
}

/* ------------------------------------------------------------ bad files */

static const char idx_hint[] =
    "format = idx reads train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each maybe .gz) from data = DIR";

static char want_msg[2048];

#define WANT(...) (snprintf(want_msg, sizeof want_msg, __VA_ARGS__), want_msg)

Test(classify, idx_bad_files_are_named_with_offset_and_cause)
{
    const char *kv[] = {"data", tdir, "patch", "2", "valid_size", "1", NULL};
    const char *kv3[] = {"data", tdir, "patch", "2", "valid_size", "1", "classes", "3", NULL};

    make_idx(5, 3, 2, 2, pixel_mixed, 0);
    buf b = idx_images(5, 2, 2, pixel_mixed, 0);
    b.p[3] = 0x01;
    write_buf("train-images-idx3-ubyte", b, 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/train-images-idx3-ubyte: byte 0: wrong magic 0x00000801 (expected "
                      "0x00000803, an IDX image file)", tdir));
    make_idx(5, 3, 2, 2, pixel_mixed, 0);

    b = idx_labels(3, label_mod10, 1000);
    b.p[3] = 0x03;
    write_buf("t10k-labels-idx1-ubyte", b, 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/t10k-labels-idx1-ubyte: byte 0: wrong magic 0x00000803 (expected "
                      "0x00000801, an IDX label file)", tdir));
    make_idx(5, 3, 2, 2, pixel_mixed, 0);

    b = idx_images(5, 2, 2, pixel_mixed, 0);
    b.n = 10;
    write_buf("train-images-idx3-ubyte", b, 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/train-images-idx3-ubyte: byte 10: truncated header (10 of 16 bytes)",
                      tdir));

    b = idx_images(5, 2, 2, pixel_mixed, 0);
    b.n -= 2;
    write_buf("train-images-idx3-ubyte", b, 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/train-images-idx3-ubyte: image 4 at byte 32: truncated record (2 of 4 "
                      "bytes; the header declares 5 images)", tdir));

    b = idx_images(5, 2, 2, pixel_mixed, 0);
    put(&b, "xy", 2);
    write_buf("train-images-idx3-ubyte", b, 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/train-images-idx3-ubyte: byte 36: data after the last of the 5 images "
                      "the header declares (size is not a whole number of records)", tdir));

    b = idx_images(0, 2, 2, pixel_mixed, 0);
    write_buf("train-images-idx3-ubyte", b, 0);
    write_buf("train-labels-idx1-ubyte", idx_labels(0, label_mod10, 0), 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/train-labels-idx1-ubyte: byte 4: no records (count 0)", tdir));
    make_idx(5, 3, 2, 2, pixel_mixed, 0);

    b = idx_labels(5, label_mod10, 0);
    b.n -= 2;
    write_buf("train-labels-idx1-ubyte", b, 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/train-labels-idx1-ubyte: label 3 at byte 11: truncated record (the "
                      "header declares 5 labels)", tdir));

    b = idx_labels(5, label_mod10, 0);
    b.p[8 + 2] = 10;
    write_buf("train-labels-idx1-ubyte", b, 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/train-labels-idx1-ubyte: label 2 at byte 10: 10 is out of range "
                      "(classes = 10: labels 0..9)", tdir));
    /* Labels 0..4 are fine for 10 classes, not for 3. */
    write_buf("train-labels-idx1-ubyte", idx_labels(5, label_mod10, 0), 0);
    expect_error(kv3, ET_STATUS_ERR_FORMAT,
                 WANT("%s/train-labels-idx1-ubyte: label 3 at byte 11: 3 is out of range "
                      "(classes = 3: labels 0..2)", tdir));

    write_buf("train-labels-idx1-ubyte", idx_labels(4, label_mod10, 0), 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/train-images-idx3-ubyte has 5 images but %s/train-labels-idx1-ubyte "
                      "has 4 labels (the counts must match)", tdir, tdir));
    make_idx(5, 3, 2, 2, pixel_mixed, 0);

    write_buf("t10k-images-idx3-ubyte", idx_images(3, 2, 4, pixel_mixed, 0), 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/train-images-idx3-ubyte has 2x2 images but %s/t10k-images-idx3-ubyte "
                      "has 2x4 (train and test must match)", tdir, tdir));
    make_idx(5, 3, 2, 2, pixel_mixed, 0);

    remove_file("t10k-labels-idx1-ubyte");
    expect_error(kv, ET_STATUS_ERR_IO,
                 WANT("%s/t10k-labels-idx1-ubyte.gz: missing file (nor is there "
                      "%s/t10k-labels-idx1-ubyte); %s", tdir, tdir, idx_hint));
}

/* Bytes a gzip reader gets out of a file before it ends or breaks. */
static int64_t gz_readable(const char *path)
{
    gzFile f = gzopen(path, "rb");
    cr_assert_not_null(f);
    uint8_t chunk[4096];
    int64_t total = 0;
    int k;
    while ((k = gzread(f, chunk, sizeof chunk)) > 0)
        total += k;
    gzclose(f);
    return total;
}

Test(classify, gzip_cut_short_or_corrupt)
{
    const char *kv[] = {"data", tdir, "patch", "2", "valid_size", "1", NULL};
    make_idx(400, 3, 8, 8, pixel_mixed, 1);
    char path[512];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", tdir);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    uint8_t whole[1 << 16];
    size_t n = fread(whole, 1, sizeof whole, f);
    fclose(f);
    cr_assert_gt(n, 200);
    buf b = {0};
    put(&b, whole, n / 2);
    write_buf("train-images-idx3-ubyte.gz", b, 0);
    int64_t got = gz_readable(path) - 16;
    cr_assert_lt(got, 400 * 64);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s: image %" PRId64 " at byte %" PRId64 ": truncated record (%" PRId64
                      " of 64 bytes; the header declares 400 images)",
                      path, got / 64, 16 + got / 64 * 64, got % 64));

    /* A damaged deflate stream is a format error after the bytes it gave. */
    b = (buf){0};
    put(&b, whole, n);
    for (size_t k = n / 3; k < n / 3 + 16; k++)
        b.p[k] ^= 0x5a;
    write_buf("train-images-idx3-ubyte.gz", b, 0);
    task t;
    char *err = NULL;
    cr_assert_eq(task_open(&t, 1, kv, &err), ET_STATUS_ERR_FORMAT, "%s", err);
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s: ", path);
    cr_assert_eq(strncmp(err, prefix, strlen(prefix)), 0, "%s", err);
    cr_assert_not_null(strstr(err, ": corrupt gzip data after byte "), "%s", err);
    free(err);
    task_close(&t);
}

static const char cifar_hint[] = "format = cifar10 reads data_batch_1.bin .. data_batch_5.bin and "
                                 "test_batch.bin (CIFAR-10 binary version) from data = DIR";

Test(classify, cifar_bad_files_are_named_with_record_and_cause)
{
    const char *kv[] = {"format", "cifar10", "data", tdir, "valid_size", "1", NULL};
    make_cifar(2, 2, pixel_mixed);

    buf b = cifar_records(2, pixel_mixed, label_mod10, 4);
    uint8_t part[100];
    memcpy(part, b.p, sizeof part);
    put(&b, part, sizeof part);
    write_buf("data_batch_3.bin", b, 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/data_batch_3.bin: record 2 at byte 6146: truncated record (100 of 3073 "
                      "bytes; the file size is not a multiple of 3073)", tdir));
    write_buf("data_batch_3.bin", cifar_records(2, pixel_mixed, label_mod10, 4), 0);

    b = cifar_records(2, pixel_mixed, label_mod10, 2);
    b.p[3073] = 10;
    write_buf("data_batch_2.bin", b, 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/data_batch_2.bin: record 1 at byte 3073: label 10 is out of range "
                      "(classes = 10: labels 0..9)", tdir));
    write_buf("data_batch_2.bin", cifar_records(2, pixel_mixed, label_mod10, 2), 0);

    write_buf("test_batch.bin", (buf){0}, 0);
    expect_error(kv, ET_STATUS_ERR_FORMAT,
                 WANT("%s/test_batch.bin: no records (empty file)", tdir));
    write_buf("test_batch.bin", cifar_records(2, pixel_mixed, label_mod10, 1000), 0);

    remove_file("data_batch_4.bin");
    expect_error(kv, ET_STATUS_ERR_IO,
                 WANT("%s/data_batch_4.bin: missing file; %s", tdir, cifar_hint));
}

Test(classify, bad_directory_split_and_patch_are_refused)
{
    char missing[128];
    snprintf(missing, sizeof missing, "%s/nowhere", tdir);
    const char *kv_missing[] = {"data", missing, NULL};
    expect_error(kv_missing, ET_STATUS_ERR_IO,
                 WANT("classify: data = %s: No such file or directory", missing));

    make_idx(10, 3, 4, 6, pixel_mixed, 0);
    char file[128];
    snprintf(file, sizeof file, "%s/train-images-idx3-ubyte", tdir);
    const char *kv_file[] = {"data", file, NULL};
    expect_error(kv_file, ET_STATUS_ERR_IO, WANT("classify: data = %s: not a directory", file));

    const char *kv_patch[] = {"data", tdir, "patch", "4", "valid_size", "1", NULL};
    expect_error(kv_patch, ET_STATUS_ERR_USAGE,
                 WANT("classify: patch = 4 does not divide the 4x6 images of %s; choose a divisor "
                      "of both sides", tdir));

    const char *kv_valid[] = {"data", tdir, "patch", "2", "valid_size", "10", NULL};
    expect_error(kv_valid, ET_STATUS_ERR_USAGE,
                 "classify: valid_size = 10 leaves no training examples (the training files hold "
                 "10); lower valid_size");
}

/* ------------------------------------------------------------ split, order, augmentation */

static void split_ids(uint64_t seed, const char *max_train, int64_t **train, int64_t *nt,
                      int64_t **valid, int64_t *nv)
{
    task t;
    const char *kv[] = {"data", tdir, "patch", "1", "valid_size", "50", "normalize", "false",
                        "max_train", max_train, NULL};
    task_open_ok(&t, seed, kv);
    float *v;
    int32_t *lab;
    int64_t *ids[2];
    for (int s = 0; s < 2; s++) {
        int64_t n = t.info.split_size[s];
        collect(&t, s, 0, 16, &v, &lab);
        ids[s] = malloc((size_t)(n + 1) * sizeof(int64_t));
        for (int64_t i = 0; i < n; i++) {
            ids[s][i] = id_of(v + i * 4);
            cr_assert_eq(lab[i], ids[s][i] % 10);
        }
        free(v);
        free(lab);
    }
    *train = ids[0];
    *nt = t.info.split_size[0];
    *valid = ids[1];
    *nv = t.info.split_size[1];
    task_close(&t);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

Test(classify, split_is_seeded_deterministic_and_disjoint)
{
    make_idx(300, 4, 2, 2, pixel_id, 0);
    int64_t *tr, *va, *tr2, *va2, *tr3, *va3, *trm, *vam, nt, nv, n2, n3, nm, m;
    split_ids(11, "0", &tr, &nt, &va, &nv);
    cr_assert_eq(nt, 250);
    cr_assert_eq(nv, 50);
    for (int64_t i = 1; i < nv; i++)
        cr_assert_lt(va[i - 1], va[i], "validation keeps file order");
    qsort(tr, (size_t)nt, sizeof *tr, cmp_i64);
    uint8_t seen[300] = {0};
    for (int64_t i = 0; i < nt; i++)
        seen[tr[i]]++;
    for (int64_t i = 0; i < nv; i++)
        seen[va[i]]++;
    for (int i = 0; i < 300; i++)
        cr_assert_eq(seen[i], 1, "example %d in %d splits", i, seen[i]);

    split_ids(11, "0", &tr2, &n2, &va2, &m);
    cr_assert_eq(memcmp(va, va2, (size_t)nv * sizeof *va), 0, "same seed, same split");
    split_ids(12, "0", &tr3, &n3, &va3, &m);
    cr_assert_neq(memcmp(va, va3, (size_t)nv * sizeof *va), 0, "another seed, another split");

    /* max_train keeps the first N training examples of the same split. */
    split_ids(11, "20", &trm, &nm, &vam, &m);
    cr_assert_eq(nm, 20);
    cr_assert_eq(memcmp(va, vam, (size_t)nv * sizeof *va), 0);
    qsort(trm, (size_t)nm, sizeof *trm, cmp_i64);
    cr_assert_eq(memcmp(tr, trm, 20 * sizeof *tr), 0);
    free(tr);
    free(va);
    free(tr2);
    free(va2);
    free(tr3);
    free(va3);
    free(trm);
    free(vam);
}

static void epoch_ids(task *t, int64_t epoch, int32_t bs, int64_t *ids)
{
    float *v;
    int32_t *lab;
    collect(t, ET_SPLIT_TRAIN, epoch, bs, &v, &lab);
    for (int64_t i = 0; i < t->info.split_size[ET_SPLIT_TRAIN]; i++)
        ids[i] = id_of(v + i * 4);
    free(v);
    free(lab);
}

Test(classify, shuffling_depends_on_seed_and_epoch_only)
{
    make_idx(40, 4, 2, 2, pixel_id, 0);
    const char *kv[] = {"data", tdir, "patch", "1", "valid_size", "0", "normalize", "false",
                        NULL};
    task a, b, c;
    task_open_ok(&a, 5, kv);
    task_open_ok(&b, 5, kv);
    task_open_ok(&c, 6, kv);
    int64_t e0[40], e1[40], again[40], other[40], sorted[40];
    epoch_ids(&a, 0, 7, e0);
    epoch_ids(&a, 1, 7, e1);
    cr_assert_neq(memcmp(e0, e1, sizeof e0), 0, "epochs differ");
    memcpy(sorted, e0, sizeof e0);
    qsort(sorted, 40, sizeof *sorted, cmp_i64);
    for (int i = 0; i < 40; i++)
        cr_assert_eq(sorted[i], i, "an epoch visits every example once");
    int identity = 1;
    for (int i = 0; i < 40; i++)
        identity &= e0[i] == i;
    cr_assert_not(identity, "training batches are shuffled");

    epoch_ids(&b, 1, 7, again);
    cr_assert_eq(memcmp(e1, again, sizeof e1), 0, "same seed and epoch, same order");
    epoch_ids(&b, 0, 40, again);
    cr_assert_eq(memcmp(e0, again, sizeof e0), 0, "the order does not depend on batch size");
    epoch_ids(&c, 0, 7, other);
    cr_assert_neq(memcmp(e0, other, sizeof e0), 0, "another seed, another order");

    /* A batch rebuilt on its own, as a resumed run asks for it. */
    et_batch out;
    char *err = NULL;
    cr_assert_eq(vt()->batch(a.st, ET_SPLIT_TRAIN, 0, 7, 3, &out, &err), 0);
    for (int j = 0; j < out.size; j++)
        cr_assert_eq(id_of(out.src_vec + j * 4), e0[21 + j]);
    task_close(&a);
    task_close(&b);
    task_close(&c);
}

/* The train example behind an output of pixel_unique images (4×4, P = 2):
 * the view it matches; -1 if none. Views are numbered dy·6 + dx·2 + flip. */
static int match_view(const float *o, int64_t *id_out)
{
    /* Pixel (1, 1) is never padding with a pad of 1; its value names the image. */
    int64_t id = -1;
    static const int at[4] = {3, 6, 9, 12}; /* inner pixels in patch layout */
    for (int k = 0; k < 4 && id < 0; k++) {
        int b = byte_of(o[at[k]]);
        if (b != 0)
            id = b / 16;
    }
    cr_assert_geq(id, 0);
    uint8_t img[16];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            img[y * 4 + x] = pixel_unique(id, 0, y, x);
    float lut[256], cand[16];
    classify_lut_fill(1, NULL, NULL, lut);
    *id_out = id;
    for (int dy = 0; dy < 3; dy++)
        for (int dx = 0; dx < 3; dx++)
            for (int flip = 0; flip < 2; flip++) {
                classify_view v = {1, dy, dx, flip};
                classify_patchify(img, 1, 4, 4, 2, &v, lut, cand);
                if (!memcmp(cand, o, sizeof cand))
                    return dy * 6 + dx * 2 + flip;
            }
    return -1;
}

/* Per example: the values it got in an epoch (16 floats each). */
static void epoch_by_id(task *t, int64_t epoch, int32_t bs, float *by_id, int *views)
{
    float *v;
    int32_t *lab;
    collect(t, ET_SPLIT_TRAIN, epoch, bs, &v, &lab);
    for (int64_t i = 0; i < 16; i++) {
        int64_t id;
        int view = match_view(v + i * 16, &id);
        cr_assert_geq(view, 0, "example %" PRId64 " is no crop/flip of its image", id);
        memcpy(by_id + id * 16, v + i * 16, 16 * sizeof(float));
        views[id] = view;
    }
    free(v);
    free(lab);
}

Test(classify, augmentation_repeats_by_seed_epoch_and_example)
{
    make_idx(16, 16, 4, 4, pixel_unique, 0);
    const char *kv[] = {"data", tdir, "patch", "2", "valid_size", "0", "normalize", "false",
                        "crop_pad", "1", "flip", "true", NULL};
    task a, b;
    task_open_ok(&a, 9, kv);
    task_open_ok(&b, 9, kv);
    float e0[256], e0b[256], e1[256];
    int v0[16], v0b[16], v1[16], used[18] = {0}, flips = 0;
    for (int64_t epoch = 0; epoch < 6; epoch++) {
        epoch_by_id(&a, epoch, 5, e1, v1);
        for (int i = 0; i < 16; i++) {
            used[v1[i]] = 1;
            flips += v1[i] & 1;
        }
    }
    int distinct = 0;
    for (int k = 0; k < 18; k++)
        distinct += used[k];
    cr_assert_geq(distinct, 10, "crops and flips vary (%d of 18 views seen)", distinct);
    cr_assert(flips > 0 && flips < 96, "flips happen about half the time (%d of 96)", flips);

    epoch_by_id(&a, 0, 5, e0, v0);
    epoch_by_id(&b, 0, 16, e0b, v0b);
    cr_assert_eq(memcmp(e0, e0b, sizeof e0), 0, "same seed and epoch, same augmentation");
    epoch_by_id(&b, 1, 3, e1, v1);
    cr_assert_neq(memcmp(v0, v1, sizeof v0), 0, "another epoch, other crops");

    /* Validation and test are never augmented. */
    float *v;
    int32_t *lab;
    collect(&a, ET_SPLIT_TEST, 0, 16, &v, &lab);
    for (int64_t i = 0; i < 16; i++) {
        int64_t id;
        cr_assert_eq(match_view(v + i * 16, &id), 1 * 6 + 1 * 2 + 0, "test example %" PRId64, i);
        cr_assert_eq(id, (1000 + i) % 16);
    }
    free(v);
    free(lab);
    task_close(&a);
    task_close(&b);
}

/* ------------------------------------------------------------ normalisation */

Test(classify, normalisation_uses_training_statistics_per_channel)
{
    /* Red varies, green varies otherwise, blue is constant (std 0). */
    make_cifar(4, 3, pixel_mixed);
    for (int k = 0; k < 5; k++) {
        buf b = cifar_records(4, pixel_mixed, label_mod10, (int64_t)k * 4);
        for (int r = 0; r < 4; r++)
            memset(b.p + (size_t)r * 3073 + 1 + 2048, 77, 1024);
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", k + 1);
        write_buf(name, b, 0);
    }
    const char *raw_kv[] = {"format", "cifar10", "data", tdir, "patch", "4", "valid_size", "6",
                            "normalize", "false", NULL};
    const char *norm_kv[] = {"format", "cifar10", "data", tdir, "patch", "4", "valid_size", "6",
                             NULL};
    task raw, norm;
    task_open_ok(&raw, 21, raw_kv);
    task_open_ok(&norm, 21, norm_kv);
    cr_assert_eq(raw.info.split_size[ET_SPLIT_TRAIN], 14);

    /* Statistics of the training split, from its raw bytes. */
    float *tv, *nv, *rv;
    int32_t *lab;
    collect(&raw, ET_SPLIT_TRAIN, 0, 14, &tv, &lab);
    free(lab);
    double sum[3] = {0}, sq[3] = {0}, all_sum = 0, cnt = 14.0 * 1024;
    for (int64_t i = 0; i < 14 * 3072; i++)
        sum[i % 3] += byte_of(tv[i]);
    double mean[3], std[3];
    for (int c = 0; c < 3; c++)
        mean[c] = sum[c] / cnt / 255.0;
    for (int64_t i = 0; i < 14 * 3072; i++) {
        double d = byte_of(tv[i]) / 255.0 - mean[i % 3];
        sq[i % 3] += d * d;
    }
    for (int c = 0; c < 3; c++)
        std[c] = sqrt(sq[c] / cnt);
    cr_assert_eq(std[2], 0.0, "a constant channel has std 0");
    /* Red over all 20 training-file images differs from the training split's,
     * so statistics over the wrong examples would show. */
    for (int64_t i = 0; i < 20; i++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++)
                all_sum += pixel_mixed(i, 0, y, x) / 255.0;
    cr_assert_gt(fabs(all_sum / (20 * 1024) - mean[0]), 1e-4);

    /* Normalised validation values against (raw − mean)/std from the raw task. */
    collect(&raw, ET_SPLIT_VALID, 0, 4, &rv, &lab);
    free(lab);
    collect(&norm, ET_SPLIT_VALID, 0, 4, &nv, &lab);
    free(lab);
    for (int64_t i = 0; i < 6 * 3072; i++) {
        int c = (int)(i % 3);
        double want = (byte_of(rv[i]) / 255.0 - mean[c]) / (c == 2 ? 1.0 : std[c]);
        cr_assert_float_eq(nv[i], want, 1e-5, "value %" PRId64 ": %g, want %g", i, nv[i], want);
    }
    free(tv);
    free(nv);
    free(rv);

    /* The same numbers from the statistics function on its own. */
    classify_images set = {0};
    set.count = 2;
    set.channels = 2;
    set.height = 1;
    set.width = 2;
    uint8_t px[8] = {0, 255, 10, 10, 51, 51, 200, 100};
    set.pixels = px;
    int32_t idx[1] = {1};
    double m[2], s[2];
    classify_channel_stats(&set, idx, 1, m, s);
    cr_assert_float_eq(m[0], 51 / 255.0, 1e-12);
    cr_assert_float_eq(s[0], 0.0, 1e-12);
    cr_assert_float_eq(m[1], 150 / 255.0, 1e-12);
    cr_assert_float_eq(s[1], 50 / 255.0, 1e-12);
    task_close(&raw);
    task_close(&norm);
}

/* ------------------------------------------------------------ the real data */

Test(classify, fashion_mnist_from_debian)
{
    cr_assert_eq(access(FASHION_DIR, R_OK), 0,
                 "%s is missing: the Debian package dataset-fashion-mnist is a declared "
                 "dependency (./bootstrap installs it; or apt-get install dataset-fashion-mnist)",
                 FASHION_DIR);
    task t;
    task_open_ok(&t, 1, NULL);
    cr_assert_eq(t.info.split_size[ET_SPLIT_TRAIN], 55000);
    cr_assert_eq(t.info.split_size[ET_SPLIT_VALID], 5000);
    cr_assert_eq(t.info.split_size[ET_SPLIT_TEST], 10000);
    cr_assert_eq(t.info.input_dim, 16);
    cr_assert_eq(t.info.max_src_len, 49);
    int64_t per_class[3][10] = {{0}};
    double sum = 0;
    for (int s = 0; s < 3; s++) {
        int64_t count = vt()->batch_count(t.st, s, 1000);
        for (int64_t b = 0; b < count; b++) {
            et_batch out;
            char *err = NULL;
            cr_assert_eq(vt()->batch(t.st, s, 0, 1000, b, &out, &err), 0, "%s", err);
            for (int j = 0; j < out.size; j++) {
                cr_assert(out.labels[j] >= 0 && out.labels[j] <= 9);
                per_class[s][out.labels[j]]++;
            }
            if (s == ET_SPLIT_TRAIN)
                for (int64_t k = 0; k < (int64_t)out.size * 784; k++)
                    sum += out.src_vec[k];
        }
    }
    /* Fashion-MNIST is balanced: 6000 per class in train, 1000 in test. */
    for (int c = 0; c < 10; c++) {
        cr_assert_eq(per_class[0][c] + per_class[1][c], 6000, "class %d", c);
        cr_assert_eq(per_class[2][c], 1000, "class %d", c);
    }
    /* Normalised on the training split: mean 0 there. */
    cr_assert_float_eq(sum / (55000.0 * 784), 0.0, 1e-4);
    task_close(&t);
}
