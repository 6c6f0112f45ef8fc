/* The classify task plugin: image classification on IDX (MNIST,
 * Fashion-MNIST) or CIFAR-10 binary data, served ViT-style as sequences of
 * pixel patches for an encoder classifier (spec/data.md).
 *
 * Splits: the training files minus `valid_size` examples held out by a
 * seeded draw make the training split; validation and test keep file order.
 * Training batches follow a permutation drawn from (seed, epoch), and the
 * crop/flip of each example from (seed, epoch, example), so any batch can be
 * rebuilt on its own: a resumed run sees the same data in the same order. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <etnas/etnas.h>

#include "classify_io.h"
#include "classify_patch.h"

#define CLASSIFY_FAIL(code, ...) (*err = host->errorf(__VA_ARGS__), (code))

/* Debian's dataset-fashion-mnist package installs the IDX files here. */
#define CLASSIFY_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
/* Examples the batch buffers hold after load, before batch() asks for more:
 * the task ABI does not tell load the batch size. */
#define CLASSIFY_FIRST_BATCH 256

/* Child streams of the instance's seed, one per use, so adding a use never
 * shifts another's draws. */
enum { STREAM_SPLIT = 1, STREAM_SHUFFLE = 2, STREAM_AUGMENT = 3 };

enum { FORMAT_IDX = 0, FORMAT_CIFAR10 = 1 };

/* Option indices: the order of classify_options. */
enum {
    OPT_FORMAT,
    OPT_DATA,
    OPT_VALID_SIZE,
    OPT_PATCH,
    OPT_NORMALIZE,
    OPT_CROP_PAD,
    OPT_FLIP,
    OPT_MAX_TRAIN,
    OPT_CLASSES
};

static const et_option_decl classify_options[] = {
    {"format", ET_OPTION_TYPE_CHOICE, "idx", 1, 0, "idx|cifar10",
     "data files: idx (MNIST, Fashion-MNIST; gzip or plain) or cifar10 (binary batches)"},
    {"data", ET_OPTION_TYPE_PATH, CLASSIFY_FASHION_MNIST_DIR, 1, 0, NULL,
     "directory of the data files (default: Debian's dataset-fashion-mnist, for format = idx)"},
    {"valid_size", ET_OPTION_TYPE_INT, "5000", 0, 1e9, NULL,
     "training examples held out for validation, drawn by the seed (0: train on "
     "all of them; only a space of one architecture runs without validation)"},
    {"patch", ET_OPTION_TYPE_INT, "4", 1, 1024, NULL,
     "patch side P in pixels; both image sides must divide by it"},
    {"normalize", ET_OPTION_TYPE_BOOL, "true", 1, 0, NULL,
     "per-channel mean/std normalisation measured on the training split (else pixel/255)"},
    {"crop_pad", ET_OPTION_TYPE_INT, "0", 0, 64, NULL,
     "random crop of training images after this much zero padding (0 = off)"},
    {"flip", ET_OPTION_TYPE_BOOL, "false", 1, 0, NULL,
     "random horizontal flip of training images"},
    {"max_train", ET_OPTION_TYPE_INT, "0", 0, 1e9, NULL,
     "use only the first N training examples after the split (0 = all)"},
    {"classes", ET_OPTION_TYPE_INT, "10", 2, 256, NULL,
     "number of classes; every label must be below it"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

typedef struct classify_state {
    const et_host *host;
    int32_t format;
    const char *data;
    int64_t valid_size, max_train;
    int32_t patch, crop_pad, num_classes;
    int32_t normalize, flip;

    int load_called, loaded;
    classify_images train, test; /* the training files (train + valid) and the test files */
    const classify_images *set[3]; /* per et_split */
    int32_t *index[3];             /* per et_split: examples of its set, in order */
    int64_t n[3];
    int32_t tokens, dim; /* T = (H/P)·(W/P) and P·P·C */
    float *lut;          /* (C, 256) */

    et_rng shuffle, augment;
    int32_t *order; /* training positions of epoch order_epoch */
    int64_t order_epoch;
    int order_ready;

    int64_t capacity; /* examples the batch buffers hold */
    float *src;       /* (capacity, T, P·P·C) */
    int32_t *labels;  /* (capacity) */
} classify_state;

static void classify_destroy(void *state)
{
    classify_state *s = state;
    if (!s)
        return;
    classify_images_free(&s->train);
    classify_images_free(&s->test);
    for (int i = 0; i < 3; i++)
        free(s->index[i]);
    free(s->lut);
    free(s->order);
    free(s->src);
    free(s->labels);
    free(s);
}

static int classify_create(const et_host *host, const et_option_value *opts, void **state,
                           char **err)
{
    *state = NULL;
    /* The host checks declared ranges; these guard hand-built option arrays. */
    if (opts[OPT_FORMAT].i < FORMAT_IDX || opts[OPT_FORMAT].i > FORMAT_CIFAR10 ||
        !opts[OPT_DATA].s || !*opts[OPT_DATA].s)
        return CLASSIFY_FAIL(ET_STATUS_ERR_USAGE, "classify: format and data must be given");
    if (opts[OPT_PATCH].i < 1 || opts[OPT_PATCH].i > 1024 || opts[OPT_CROP_PAD].i < 0 ||
        opts[OPT_CROP_PAD].i > 64 || opts[OPT_CLASSES].i < 2 || opts[OPT_CLASSES].i > 256 ||
        opts[OPT_VALID_SIZE].i < 0 || opts[OPT_MAX_TRAIN].i < 0)
        return CLASSIFY_FAIL(ET_STATUS_ERR_USAGE,
                             "classify: an option is out of its declared range (patch 1..1024, "
                             "crop_pad 0..64, classes 2..256, valid_size and max_train >= 0)");
    classify_state *s = calloc(1, sizeof *s);
    if (!s)
        return CLASSIFY_FAIL(ET_STATUS_ERR_NOMEM, "classify: out of memory");
    s->host = host;
    s->format = (int32_t)opts[OPT_FORMAT].i;
    s->data = opts[OPT_DATA].s;
    s->valid_size = opts[OPT_VALID_SIZE].i;
    s->patch = (int32_t)opts[OPT_PATCH].i;
    s->normalize = opts[OPT_NORMALIZE].i != 0;
    s->crop_pad = (int32_t)opts[OPT_CROP_PAD].i;
    s->flip = opts[OPT_FLIP].i != 0;
    s->max_train = opts[OPT_MAX_TRAIN].i;
    s->num_classes = (int32_t)opts[OPT_CLASSES].i;
    et_rng base = et_rng_from_seed(host->seed);
    s->shuffle = et_rng_split(&base, STREAM_SHUFFLE);
    s->augment = et_rng_split(&base, STREAM_AUGMENT);
    *state = s;
    return 0;
}

static int load_idx(classify_state *s, char **err)
{
    static const char *const names[2][2] = {
        {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
        {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
    };
    static const char hint[] =
        "format = idx reads train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each maybe .gz) from data = DIR";
    const et_host *host = s->host;
    classify_images *sets[2] = {&s->train, &s->test};
    char *paths[2][2] = {{NULL, NULL}, {NULL, NULL}};
    int rc = 0;
    for (int i = 0; i < 2 && !rc; i++)
        for (int j = 0; j < 2 && !rc; j++)
            rc = classify_find_file(host, s->data, names[i][j], 1, hint, &paths[i][j], err);
    for (int i = 0; i < 2 && !rc; i++) {
        host->progress(host->ctx, "classify: reading", i, 2);
        rc = classify_read_idx(host, paths[i][0], paths[i][1], s->num_classes, sets[i], err);
    }
    if (!rc && (s->train.height != s->test.height || s->train.width != s->test.width))
        rc = CLASSIFY_FAIL(ET_STATUS_ERR_FORMAT,
                           "%s has %" PRId32 "x%" PRId32 " images but %s has %" PRId32
                           "x%" PRId32 " (train and test must match)",
                           paths[0][0], s->train.height, s->train.width, paths[1][0],
                           s->test.height, s->test.width);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            free(paths[i][j]);
    return rc;
}

static int load_cifar(classify_state *s, char **err)
{
    static const char *const names[] = {"data_batch_1.bin", "data_batch_2.bin",
                                        "data_batch_3.bin", "data_batch_4.bin",
                                        "data_batch_5.bin", "test_batch.bin"};
    static const char hint[] = "format = cifar10 reads data_batch_1.bin .. data_batch_5.bin and "
                               "test_batch.bin (CIFAR-10 binary version) from data = DIR";
    const et_host *host = s->host;
    int rc = 0;
    for (int i = 0; i < 6 && !rc; i++) {
        char *path;
        if ((rc = classify_find_file(host, s->data, names[i], 0, hint, &path, err)))
            break;
        host->progress(host->ctx, "classify: reading", i, 6);
        rc = classify_read_cifar(host, path, s->num_classes, i < 5 ? &s->train : &s->test, err);
        free(path);
    }
    return rc;
}

/* Hold out valid_size training examples by a seeded partial shuffle; both
 * parts keep file order, and max_train trims the training part. */
static int split_train(classify_state *s, char **err)
{
    const et_host *host = s->host;
    int64_t all = s->train.count, held = s->valid_size;
    if (held >= all)
        return CLASSIFY_FAIL(ET_STATUS_ERR_USAGE,
                             "classify: valid_size = %" PRId64
                             " leaves no training examples (the training files hold %" PRId64
                             "); lower valid_size",
                             held, all);
    int32_t *perm = malloc((size_t)all * sizeof *perm);
    uint8_t *is_valid = calloc((size_t)all, 1);
    s->index[ET_SPLIT_TRAIN] = malloc((size_t)(all - held) * sizeof(int32_t));
    s->index[ET_SPLIT_VALID] = malloc((size_t)(held ? held : 1) * sizeof(int32_t));
    s->index[ET_SPLIT_TEST] = malloc((size_t)s->test.count * sizeof(int32_t));
    int rc = 0;
    if (!perm || !is_valid || !s->index[0] || !s->index[1] || !s->index[2]) {
        rc = CLASSIFY_FAIL(ET_STATUS_ERR_NOMEM, "classify: out of memory splitting the data");
        goto out;
    }
    et_rng base = et_rng_from_seed(host->seed);
    et_rng rng = et_rng_split(&base, STREAM_SPLIT);
    for (int64_t i = 0; i < all; i++)
        perm[i] = (int32_t)i;
    for (int64_t i = 0; i < held; i++) {
        int64_t j = i + (int64_t)et_rng_below(&rng, (uint64_t)(all - i));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        is_valid[perm[i]] = 1;
    }
    int64_t nt = 0, nv = 0;
    for (int64_t i = 0; i < all; i++) {
        if (is_valid[i])
            s->index[ET_SPLIT_VALID][nv++] = (int32_t)i;
        else
            s->index[ET_SPLIT_TRAIN][nt++] = (int32_t)i;
    }
    s->n[ET_SPLIT_TRAIN] = s->max_train > 0 && s->max_train < nt ? s->max_train : nt;
    s->n[ET_SPLIT_VALID] = nv;
    for (int64_t i = 0; i < s->test.count; i++)
        s->index[ET_SPLIT_TEST][i] = (int32_t)i;
    s->n[ET_SPLIT_TEST] = s->test.count;
    s->set[ET_SPLIT_TRAIN] = s->set[ET_SPLIT_VALID] = &s->train;
    s->set[ET_SPLIT_TEST] = &s->test;
out:
    free(perm);
    free(is_valid);
    return rc;
}

/* Buffers for batches of `examples`; only ever grows. */
static int reserve_batch(classify_state *s, int64_t examples)
{
    if (examples <= s->capacity)
        return 0;
    size_t per = (size_t)s->tokens * (size_t)s->dim;
    float *src = realloc(s->src, (size_t)examples * per * sizeof *src);
    if (!src)
        return ET_STATUS_ERR_NOMEM;
    s->src = src;
    int32_t *labels = realloc(s->labels, (size_t)examples * sizeof *labels);
    if (!labels)
        return ET_STATUS_ERR_NOMEM;
    s->labels = labels;
    s->capacity = examples;
    return 0;
}

static int64_t largest_split(const classify_state *s)
{
    int64_t m = 0;
    for (int i = 0; i < 3; i++)
        m = s->n[i] > m ? s->n[i] : m;
    return m;
}

static int classify_load(void *state, et_task_info *info, char **err)
{
    classify_state *s = state;
    const et_host *host = s->host;
    /* A failed load leaves partial data behind: no second attempt on it. */
    if (s->load_called)
        return CLASSIFY_FAIL(ET_STATUS_ERR_USAGE, "classify: load called twice");
    s->load_called = 1;
    const char *hint = s->format == FORMAT_IDX && !strcmp(s->data, CLASSIFY_FASHION_MNIST_DIR)
                           ? " (install Debian's dataset-fashion-mnist, or set data = DIR)"
                           : "";
    struct stat st;
    if (stat(s->data, &st) != 0)
        return CLASSIFY_FAIL(ET_STATUS_ERR_IO, "classify: data = %s: %s%s", s->data,
                             strerror(errno), hint);
    if (!S_ISDIR(st.st_mode))
        return CLASSIFY_FAIL(ET_STATUS_ERR_IO, "classify: data = %s: not a directory%s", s->data,
                             hint);
    int rc = s->format == FORMAT_IDX ? load_idx(s, err) : load_cifar(s, err);
    if (rc)
        return rc;
    const classify_images *t = &s->train;
    if (t->height % s->patch || t->width % s->patch)
        return CLASSIFY_FAIL(ET_STATUS_ERR_USAGE,
                             "classify: patch = %" PRId32 " does not divide the %" PRId32
                             "x%" PRId32 " images of %s; choose a divisor of both sides",
                             s->patch, t->height, t->width, s->data);
    if ((rc = split_train(s, err)))
        return rc;
    s->tokens = (t->height / s->patch) * (t->width / s->patch);
    s->dim = s->patch * s->patch * t->channels;

    double mean[3] = {0, 0, 0}, std[3] = {1, 1, 1}; /* 1 channel (IDX) or 3 (CIFAR) */
    s->lut = malloc((size_t)t->channels * 256 * sizeof *s->lut);
    s->order = malloc((size_t)s->n[ET_SPLIT_TRAIN] * sizeof *s->order);
    int64_t first = largest_split(s);
    if (!s->lut || !s->order ||
        reserve_batch(s, first < CLASSIFY_FIRST_BATCH ? first : CLASSIFY_FIRST_BATCH))
        return CLASSIFY_FAIL(ET_STATUS_ERR_NOMEM, "classify: out of memory after loading %s",
                             s->data);
    if (s->normalize)
        classify_channel_stats(t, s->index[ET_SPLIT_TRAIN], s->n[ET_SPLIT_TRAIN], mean, std);
    classify_lut_fill(t->channels, s->normalize ? mean : NULL, std, s->lut);

    host->log(host->ctx, ET_LOG_LEVEL_INFO,
              "classify: %s: %" PRId64 " train, %" PRId64 " valid, %" PRId64
              " test images of %" PRId32 "x%" PRId32 "x%" PRId32 "; %" PRId32
              " patches of %" PRId32 " values",
              s->data, s->n[0], s->n[1], s->n[2], t->channels, t->height, t->width, s->tokens,
              s->dim);
    for (int32_t c = 0; s->normalize && c < t->channels; c++)
        host->log(host->ctx, ET_LOG_LEVEL_DEBUG,
                  "classify: channel %" PRId32 ": mean %.6f std %.6f (training split)", c,
                  mean[c], std[c]);

    memset(info, 0, sizeof *info);
    info->model_kind = ET_MODEL_KIND_ENCODER;
    info->num_classes = s->num_classes;
    info->input_dim = s->dim;
    info->max_src_len = s->tokens;
    for (int i = 0; i < 3; i++)
        info->split_size[i] = s->n[i];
    info->metric = "accuracy";
    info->higher_is_better = 1;
    s->loaded = 1;
    return 0;
}

static int64_t classify_batch_count(void *state, int32_t split, int32_t batch_size)
{
    const classify_state *s = state;
    if (!s || !s->loaded || split < ET_SPLIT_TRAIN || split > ET_SPLIT_TEST || batch_size <= 0)
        return ET_STATUS_ERR_USAGE;
    return (s->n[split] + batch_size - 1) / batch_size;
}

/* The training order of an epoch: a Fisher-Yates shuffle of the identity
 * from the epoch's own stream, so it depends on nothing but (seed, epoch). */
static void order_for_epoch(classify_state *s, int64_t epoch)
{
    if (s->order_ready && s->order_epoch == epoch)
        return;
    int64_t n = s->n[ET_SPLIT_TRAIN];
    et_rng rng = et_rng_split(&s->shuffle, (uint64_t)epoch);
    for (int64_t i = 0; i < n; i++)
        s->order[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)et_rng_below(&rng, (uint64_t)(i + 1));
        int32_t t = s->order[i];
        s->order[i] = s->order[j];
        s->order[j] = t;
    }
    s->order_epoch = epoch;
    s->order_ready = 1;
}

/* The crop and flip of one training example in one epoch. All three draws
 * are made whatever the options, so turning one augmentation off leaves the
 * other's draws unchanged. */
static classify_view view_for(const classify_state *s, int64_t epoch, int32_t example)
{
    et_rng per_epoch = et_rng_split(&s->augment, (uint64_t)epoch);
    et_rng rng = et_rng_split(&per_epoch, (uint64_t)example);
    classify_view v;
    v.pad = s->crop_pad;
    v.dy = (int32_t)et_rng_below(&rng, (uint64_t)(2 * s->crop_pad + 1));
    v.dx = (int32_t)et_rng_below(&rng, (uint64_t)(2 * s->crop_pad + 1));
    v.flip = s->flip && (et_rng_u64(&rng) >> 63);
    return v;
}

static int classify_batch(void *state, int32_t split, int64_t epoch, int32_t batch_size,
                          int64_t index, et_batch *out, char **err)
{
    classify_state *s = state;
    const et_host *host = s->host;
    if (!s->loaded)
        return CLASSIFY_FAIL(ET_STATUS_ERR_USAGE, "classify: batch called before load");
    if (split < ET_SPLIT_TRAIN || split > ET_SPLIT_TEST || batch_size <= 0)
        return CLASSIFY_FAIL(ET_STATUS_ERR_USAGE,
                             "classify: batch of split %" PRId32 " with batch_size %" PRId32
                             " (splits 0..2, batch_size >= 1)",
                             split, batch_size);
    int64_t n = s->n[split], count = (n + batch_size - 1) / batch_size;
    if (index < 0 || index >= count)
        return CLASSIFY_FAIL(ET_STATUS_ERR_USAGE,
                             "classify: batch %" PRId64 " of split %" PRId32
                             " does not exist (%" PRId64 " batches of %" PRId32 ")",
                             index, split, count, batch_size);
    int64_t start = index * batch_size;
    int64_t size = n - start < batch_size ? n - start : batch_size;
    int64_t want = n < batch_size ? n : batch_size;
    if (reserve_batch(s, want))
        return CLASSIFY_FAIL(ET_STATUS_ERR_NOMEM, "classify: out of memory for a batch of %" PRId64,
                             want);
    int train = split == ET_SPLIT_TRAIN, augment = train && (s->crop_pad > 0 || s->flip);
    if (train)
        order_for_epoch(s, epoch);
    const classify_images *set = s->set[split];
    int64_t image = (int64_t)set->channels * set->height * set->width;
    int64_t per = (int64_t)s->tokens * s->dim;
    for (int64_t j = 0; j < size; j++) {
        int64_t pos = start + j;
        int32_t ex = s->index[split][train ? s->order[pos] : pos];
        classify_view v;
        if (augment)
            v = view_for(s, epoch, ex);
        classify_patchify(set->pixels + ex * image, set->channels, set->height, set->width,
                          s->patch, augment ? &v : NULL, s->lut, s->src + j * per);
        s->labels[j] = set->labels[ex];
    }
    memset(out, 0, sizeof *out);
    out->size = (int32_t)size;
    out->src_len = s->tokens;
    out->src_vec = s->src;
    out->labels = s->labels;
    return 0;
}

static const et_task_vtable classify_vtable = {
    .create = classify_create,
    .destroy = classify_destroy,
    .load = classify_load,
    .batch_count = classify_batch_count,
    .batch = classify_batch,
};

static const et_plugin_descriptor classify_descriptor = {
    ET_ABI_VERSION,
    ET_PLUGIN_KIND_TASK,
    "classify",
    "image classification (IDX: MNIST, Fashion-MNIST; CIFAR-10 binary) as ViT patch sequences",
    classify_options,
    &classify_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &classify_descriptor;
}
