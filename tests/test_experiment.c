/* Experiment files checked as a whole: plugins per section, their options,
 * the space's attention operators, constraints, overrides, and the errors. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>

#include "experiment.h"
#include "testutil.h"

static char plugin_dir[] = "/tmp/etnas-plugins-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(plugin_dir));
    static const char *const good[] = {"fake_search", "fake_task", "fake_proxy", "fake_attn"};
    for (int i = 0; i < 4; i++) {
        char link[4200];
        snprintf(link, sizeof link, "%s/%s.so", plugin_dir, good[i]);
        cr_assert_eq(symlink(tu_fake(good[i]), link), 0);
    }
    setenv("ETNAS_PLUGIN_PATH", plugin_dir, 1);
}

static void teardown(void)
{
    static const char *const good[] = {"fake_search", "fake_task", "fake_proxy", "fake_attn"};
    for (int i = 0; i < 4; i++) {
        char link[4200];
        snprintf(link, sizeof link, "%s/%s.so", plugin_dir, good[i]);
        unlink(link);
    }
    rmdir(plugin_dir);
}

static const char *const base =
    "[experiment]\nseed = 5\nthreads = 2\n"
    "[task]\nplugin = fake_task\nsize = 20\n"
    "[space]\nencoder_embed_dim = 64\nencoder_layers = 2\nencoder_ffn_dim = 128\nencoder_heads = 2\n"
    "encoder_attention = fake_attn, fake_attn(size=5,mode=slow)\n"
    "[search fake_search]\n"
    "[search second]\nplugin = fake_search\nrate = 0.25\n"
    "[proxy fake_proxy]\n"
    "[constraints]\nparams_m <= 5\nflops_g >= 0.5\n"
    "[train]\nsteps = 10\n";

static int load(const char *text, char *const *sets, int n, et_experiment *x, char **err)
{
    char *path = tu_write_temp(text);
    cr_assert_not_null(path);
    int rc = et_experiment_load(path, sets, n, 0, x, err);
    unlink(path);
    free(path);
    return rc;
}

Test(experiment, valid_file, .init = setup, .fini = teardown)
{
    et_experiment x;
    char *err = NULL;
    cr_assert_eq(load(base, NULL, 0, &x, &err), 0, "%s", err);
    cr_assert_eq(x.seed, 5);
    cr_assert_eq(x.threads, 2);
    cr_assert_eq(x.n_searches, 2);
    cr_assert_str_eq(x.searches[1].plugin->desc->name, "fake_search");
    cr_assert_float_eq(x.searches[1].opts[1].f, 0.25, 1e-12);
    cr_assert_eq(x.searches[0].opts[0].i, 10, "declared default");
    cr_assert_eq(x.task.opts[0].i, 20);
    cr_assert_eq(x.n_constraints, 2);
    cr_assert_str_eq(x.constraints[0].figure, "params_m");
    cr_assert_eq(x.constraints[1].cmp, ET_CMP_GE);
    cr_assert_float_eq(x.constraints[1].bound, 0.5, 1e-12);
    uint64_t s1 = et_experiment_section_seed(&x, "search fake_search");
    uint64_t s2 = et_experiment_section_seed(&x, "search second");
    cr_assert_neq(s1, s2);
    et_experiment_free(&x);
    char *sets[] = {"experiment.seed=6", "search second.rate=0.75"};
    cr_assert_eq(load(base, sets, 2, &x, &err), 0, "%s", err);
    cr_assert_eq(x.seed, 6);
    cr_assert_float_eq(x.searches[1].opts[1].f, 0.75, 1e-12);
    cr_assert_neq(et_experiment_section_seed(&x, "search fake_search"), s1);
    et_experiment_free(&x);
}

static void fails(const char *text, char *const *sets, int n, const char *suffix)
{
    et_experiment x;
    char *err = NULL;
    cr_assert_neq(load(text, sets, n, &x, &err), 0, "accepted:\n%s", text);
    cr_assert_null(strchr(err, '\n'));
    size_t el = strlen(err), sl = strlen(suffix);
    cr_assert(el >= sl && strcmp(err + el - sl, suffix) == 0, "got '%s', want '...%s'", err, suffix);
    free(err);
    et_experiment_free(&x);
}

static char *with(const char *from, const char *to)
{
    static char buf[8192];
    const char *at = strstr(base, from);
    cr_assert_not_null(at);
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - base), base, to, at + strlen(from));
    return buf;
}

Test(experiment, errors, .init = setup, .fini = teardown)
{
    fails(with("[train]", "[trian]"), NULL, 0, ":21: unknown section [trian] (did you mean [train]?)");
    fails(with("size = 20", "sise = 20"), NULL, 0, ":6: [task] unknown key 'sise' (did you mean 'size'?)");
    fails(with("size = 20", "size = 2000"), NULL, 0, ":6: [task] size = '2000': expected an integer in [1, 1000]");
    fails(with("plugin = fake_task", "plugin = fake_search"), NULL, 0,
          "not the task plugin needed here");
    fails(with("plugin = fake_task", "plugin = fake_tsk"), NULL, 0,
          ":5: [task] plugin: no task plugin 'fake_tsk' (did you mean 'fake_task'?)");
    fails(with("fake_attn(size=5,mode=slow)", "fake_attn(size=5,mode=slowest)"), NULL, 0,
          ":12: [space encoder_attention: fake_attn] mode = 'slowest': expected one of fast|slow");
    fails(with("fake_attn(size=5,mode=slow)", "fake_atn"), NULL, 0,
          ":12: [space] encoder_attention: no attention plugin 'fake_atn' (did you mean 'fake_attn'?)");
    fails(with("params_m <= 5", "param_m <= 5"), NULL, 0,
          ":19: [constraints] 'param_m' is not a figure of any [proxy] (did you mean 'params_m'?)");
    fails(with("params_m <= 5", "params_m = 5"), NULL, 0,
          ":19: [constraints] 'params_m = 5': write FIGURE <= NUMBER or FIGURE >= NUMBER");
    fails(with("params_m <= 5", "params_m <= five"), NULL, 0,
          ":19: [constraints] params_m: 'five' is not a number");
    fails(with("[search fake_search]\n", "[search]\n"), NULL, 0, ":13: [search] needs a name: [search NAME]");
    fails(with("[task]\nplugin = fake_task\nsize = 20\n", ""), NULL, 0, ": no [task] section (plugin = NAME)");
    char *bad_set[] = {"experiment.threads=0"};
    fails(base, bad_set, 1, "--set: [experiment] threads = '0': expected an integer in [1, 64]");
    char *bad_key[] = {"train.stepz=3"};
    fails(base, bad_key, 1, "--set: [train] unknown key 'stepz' (did you mean 'steps'?)");
}
