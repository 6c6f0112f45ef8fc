/* Checkpoints: exact round trip, training continued from a checkpoint gives
 * bit-identical losses, and every bad file is refused with its cause while
 * a failed write leaves the previous checkpoint intact. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attn_ref.h"
#include "checkpoint.h"
#include "fdcheck.h"
#include "hostimpl.h"
#include "inifile.h"
#include "space.h"
#include "testutil.h"


static const et_attn_impl ref_impl[1] = {{&attn_ref_vtable, NULL}};
static const char *const space_text =
    "encoder_embed_dim = 8, 16\nencoder_layers = 1..2\nencoder_ffn_dim = 16, 32\n"
    "encoder_heads = 2\nhead_dim = 4\nnorm = pre\n";

enum { B = 4 };

typedef struct run {
    et_space s;
    et_host host;
    et_model *m;
    et_optim o;
    et_batch b;
    float x[B * 3 * 5];
    int32_t y[B];
} run;

static void run_init(run *r, const char *text)
{
    r->s = tu_space(text);
    et_host_init(&r->host, 1, 1, &r->s);
    et_model_config cfg = {.input_dim = 5, .max_len = 3, .num_classes = 4, .max_batch = B,
                           .dropout = 0.2f, .label_smoothing = 0.1f, .enc_attention = ref_impl};
    char *err = NULL;
    cr_assert_eq(et_model_create(&r->s, &cfg, &r->host, &r->m, &err), 0, "%s", err);
    et_model_init(r->m, 2);
    et_arch a;
    et_arch_largest(&r->s, &a);
    cr_assert_eq(et_model_bind(r->m, &a, B, 3, &err), 0, "%s", err);
    int64_t n;
    et_model_params(r->m, &n);
    et_optim_config c = {.lr = 1e-3, .warmup_steps = 3, .total_steps = 20, .beta1 = 0.9,
                         .beta2 = 0.98, .eps = 1e-8, .weight_decay = 0.01, .clip_norm = 1.0};
    cr_assert_eq(et_optim_create(&r->o, &c, n, &err), 0);
    et_rng g = et_rng_from_seed(3);
    fd_fill(r->x, B * 3 * 5, &g, 1);
    for (int i = 0; i < B; i++)
        r->y[i] = i % 4;
    r->b = (et_batch){.size = B, .src_len = 3, .src_vec = r->x, .labels = r->y};
}

static void run_free(run *r)
{
    et_optim_destroy(&r->o);
    et_model_destroy(r->m);
}

static double train_step(run *r, int64_t step)
{
    double loss;
    char *err = NULL;
    et_model_zero_grads(r->m);
    cr_assert_eq(et_model_forward(r->m, &r->b, 1, 9, step, &loss, NULL, &err), 0, "%s", err);
    cr_assert_eq(et_model_backward(r->m, 1.0f / B, &err), 0, "%s", err);
    et_optim_step(&r->o, r->m);
    return loss;
}

static char *tmp_path(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "/tmp/etnas-ckpt-%ld-%s", (long)getpid(), name);
    return buf;
}

Test(checkpoint, resume_gives_bit_identical_losses)
{
    run a, b;
    run_init(&a, space_text);
    run_init(&b, space_text);
    double losses[20];
    const char *path = tmp_path("resume");
    char *err = NULL;
    for (int64_t s = 0; s < 20; s++) {
        if (s == 8) {
            et_checkpoint_info info = {.step = s, .rng = {42, 7}};
            snprintf(info.arch, sizeof info.arch, "the arch");
            cr_assert_eq(et_checkpoint_save(path, a.m, &a.o, &info, &err), 0, "%s", err);
        }
        losses[s] = train_step(&a, s);
    }
    et_checkpoint_info got;
    cr_assert_eq(et_checkpoint_load(path, b.m, &b.o, &got, &err), 0, "%s", err);
    cr_assert_eq(got.step, 8);
    cr_assert_eq(got.rng.key, 42);
    cr_assert_eq(got.rng.counter, 7);
    cr_assert_str_eq(got.arch, "the arch");
    for (int64_t s = got.step; s < 20; s++) {
        double l = train_step(&b, s);
        cr_assert_eq(l, losses[s], "step %lld: %.17g vs %.17g", (long long)s, l, losses[s]);
    }
    int64_t n;
    float *pa = et_model_params(a.m, &n), *pb = et_model_params(b.m, NULL);
    cr_assert_eq(memcmp(pa, pb, sizeof(float) * (size_t)n), 0);
    unlink(path);
    run_free(&a);
    run_free(&b);
}

static void expect_refusal(const char *path, run *r, const char *suffix)
{
    et_checkpoint_info info;
    char *err = NULL;
    int64_t n;
    float *p = et_model_params(r->m, &n);
    float *before = malloc(sizeof(float) * (size_t)n);
    memcpy(before, p, sizeof(float) * (size_t)n);
    cr_assert_neq(et_checkpoint_load(path, r->m, &r->o, &info, &err), 0, "accepted a bad file");
    size_t el = strlen(err), sl = strlen(suffix);
    cr_assert(el >= sl && !strcmp(err + el - sl, suffix), "got '%s', want '...%s'", err, suffix);
    cr_assert_eq(strncmp(err, path, strlen(path)), 0, "names the file: %s", err);
    cr_assert_eq(memcmp(before, p, sizeof(float) * (size_t)n), 0, "a refused file changes nothing");
    free(before);
    free(err);
}

static void patch(const char *path, long at, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, at, at >= 0 ? SEEK_SET : SEEK_END);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

Test(checkpoint, bad_files_are_refused)
{
    run r;
    run_init(&r, space_text);
    const char *path = tmp_path("bad");
    char *err = NULL;
    et_checkpoint_info info = {.step = 1};
    cr_assert_eq(et_checkpoint_save(path, r.m, &r.o, &info, &err), 0, "%s", err);
    struct stat st;
    stat(path, &st);
    char copy[300];
    snprintf(copy, sizeof copy, "%s.copy", path);
    /* truncated at several points */
    for (long cut = 4; cut < st.st_size; cut += st.st_size / 5) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "cp %s %s && truncate -s %ld %s", path, copy, cut, copy);
        cr_assert_eq(system(cmd), 0);
        expect_refusal(copy, &r, cut < 8 ? "(reading the magic)" : ")");
        cr_assert_not_null(strstr(copy, "copy"));
    }
    /* a flipped byte in the last tensor's data */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp %s %s", path, copy);
    cr_assert_eq(system(cmd), 0);
    unsigned char junk[4] = {1, 2, 3, 4};
    int64_t n;
    et_model_params(r.m, &n);
    patch(copy, -(long)(8 + (2 * 4 + 8) * n + 16), junk, 4);
    expect_refusal(copy, &r, "tensor head.bias is corrupted (CRC mismatch)");
    /* another version */
    cr_assert_eq(system(cmd), 0);
    uint32_t v = 2;
    patch(copy, 8, &v, 4);
    expect_refusal(copy, &r, "checkpoint format version 2, this etnas reads version 1");
    /* not a checkpoint */
    cr_assert_eq(system(cmd), 0);
    patch(copy, 0, "NOTACKPT", 8);
    expect_refusal(copy, &r, "not an etnas checkpoint (bad magic)");
    /* another space */
    run other;
    run_init(&other, "encoder_embed_dim = 8, 16\nencoder_layers = 1..2\nencoder_ffn_dim = 16, 24\n"
                      "encoder_heads = 2\nhead_dim = 4\nnorm = pre\n");
    expect_refusal(path, &other, "written for another search space than this experiment's");
    run_free(&other);
    unlink(copy);
    unlink(path);
    run_free(&r);
}

Test(checkpoint, failed_write_keeps_the_previous_file)
{
    run r;
    run_init(&r, space_text);
    const char *path = tmp_path("keep");
    char *err = NULL;
    et_checkpoint_info info = {.step = 5};
    cr_assert_eq(et_checkpoint_save(path, r.m, &r.o, &info, &err), 0, "%s", err);
    /* block the temp file's name with a directory: the write must fail */
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    cr_assert_eq(mkdir(tmp, 0700), 0);
    train_step(&r, 0);
    info.step = 6;
    cr_assert_neq(et_checkpoint_save(path, r.m, &r.o, &info, &err), 0);
    cr_assert_not_null(strstr(err, "cannot write"), "%s", err);
    rmdir(tmp);
    run fresh;
    run_init(&fresh, space_text);
    et_checkpoint_info got;
    cr_assert_eq(et_checkpoint_load(path, fresh.m, &fresh.o, &got, &err), 0, "%s", err);
    cr_assert_eq(got.step, 5, "the old checkpoint is intact");
    unlink(path);
    run_free(&fresh);
    run_free(&r);
}

/* A weights-only checkpoint (what init_from reads, and what
 * bench/fashion_vit_torch.py --to-etnas writes): an exact round trip of the
 * parameters, refused where optimizer state is wanted; the space check that
 * `etnas check` makes of init_from reads the header alone. */
Test(checkpoint, weights_only_round_trip_and_space_check)
{
    run a, b, other;
    run_init(&a, space_text);
    run_init(&b, space_text);
    run_init(&other, "encoder_embed_dim = 8, 16\nencoder_layers = 1..2\nencoder_ffn_dim = 16, 24\n"
                      "encoder_heads = 2\nhead_dim = 4\nnorm = pre\n");
    for (int64_t s = 0; s < 3; s++)
        train_step(&a, s);
    const char *path = tmp_path("weights");
    char *err = NULL;
    et_checkpoint_info info = {.step = 3};
    cr_assert_eq(et_checkpoint_save(path, a.m, NULL, &info, &err), 0, "%s", err);
    int64_t n;
    float *pa = et_model_params(a.m, &n), *pb = et_model_params(b.m, NULL);
    cr_assert_neq(memcmp(pa, pb, sizeof(float) * (size_t)n), 0, "trained and fresh differ");
    expect_refusal(path, &b, "has no optimizer state to resume from");
    et_checkpoint_info got;
    cr_assert_eq(et_checkpoint_load(path, b.m, NULL, &got, &err), 0, "%s", err);
    cr_assert_eq(memcmp(pa, pb, sizeof(float) * (size_t)n), 0, "the parameters, exactly");
    cr_assert_eq(got.step, 3);
    cr_assert_eq(et_checkpoint_check_space(path, &a.s, &err), 0, "%s", err);
    cr_assert_neq(et_checkpoint_check_space(path, &other.s, &err), 0);
    cr_assert(strstr(err, "written for another search space") && !strncmp(err, path, strlen(path)),
              "%s", err);
    free(err);
    err = NULL;
    unlink(path);
    cr_assert_neq(et_checkpoint_check_space(path, &a.s, &err), 0);
    cr_assert(strstr(err, "cannot open") && !strncmp(err, path, strlen(path)), "%s", err);
    free(err);
    run_free(&other);
    run_free(&b);
    run_free(&a);
}
