/* Strict option checking: types, ranges, choices, unknown keys with "did you
 * mean", required keys and defaults. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "inifile.h"
#include "options.h"

static const et_option_decl decls[] = {
    {"population", ET_OPTION_TYPE_INT, "125", 2, 10000, NULL, "population size"},
    {"mutation_prob", ET_OPTION_TYPE_FLOAT, "0.3", 0, 1, NULL, "per-gene probability"},
    {"objective", ET_OPTION_TYPE_CHOICE, "rank:pairwise", 0, -1, "rank:pairwise|reg:squarederror", "loss"},
    {"verbose", ET_OPTION_TYPE_BOOL, "no", 1, 0, NULL, "talk"},
    {"data", ET_OPTION_TYPE_PATH, NULL, 1, 0, NULL, "data directory"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int bind_text(const char *body, et_option_value *v, char **err)
{
    char text[1024];
    snprintf(text, sizeof text, "[search evo]\n%s", body);
    et_config cfg;
    cr_assert_eq(et_config_parse(text, "e.ini", &cfg, err), 0);
    static const char *const reserved[] = {"plugin", NULL};
    int rc = et_options_bind(decls, &cfg.sections[0], reserved, 0, v, err);
    et_config_free(&cfg);
    return rc;
}

Test(options, values_and_defaults)
{
    et_option_value v[6];
    char *err = NULL;
    /* string values point into the config, so check numbers only here */
    cr_assert_eq(bind_text("plugin = evolution\npopulation = 50\nverbose = yes\ndata = d\n", v, &err),
                 0, "%s", err);
    cr_assert_eq(v[0].i, 50);
    cr_assert_float_eq(v[1].f, 0.3, 1e-12);
    cr_assert_eq(v[2].i, 0);
    cr_assert_eq(v[3].i, 1);
}

Test(options, errors)
{
    et_option_value v[6];
    char *err = NULL;
    cr_assert_neq(bind_text("populaton = 50\ndata = d\n", v, &err), 0);
    cr_assert_str_eq(err, "e.ini:2: [search evo] unknown key 'populaton' (did you mean 'population'?)");
    cr_assert_neq(bind_text("zzz = 1\ndata = d\n", v, &err), 0);
    cr_assert_str_eq(err, "e.ini:2: [search evo] unknown key 'zzz' (valid keys: population, "
                          "mutation_prob, objective, verbose, data)");
    cr_assert_neq(bind_text("population = 1\ndata = d\n", v, &err), 0);
    cr_assert_str_eq(err, "e.ini:2: [search evo] population = '1': expected an integer in [2, 10000]");
    cr_assert_neq(bind_text("population = 12x\ndata = d\n", v, &err), 0);
    cr_assert_str_eq(err, "e.ini:2: [search evo] population = '12x': expected an integer in [2, 10000]");
    cr_assert_neq(bind_text("mutation_prob = nan\ndata = d\n", v, &err), 0);
    cr_assert_str_eq(err, "e.ini:2: [search evo] mutation_prob = 'nan': expected a number in [0, 1]");
    cr_assert_neq(bind_text("objective = rank\ndata = d\n", v, &err), 0);
    cr_assert_str_eq(err, "e.ini:2: [search evo] objective = 'rank': expected one of "
                          "rank:pairwise|reg:squarederror");
    cr_assert_neq(bind_text("verbose = maybe\ndata = d\n", v, &err), 0);
    cr_assert_str_eq(err, "e.ini:2: [search evo] verbose = 'maybe': expected true or false");
    cr_assert_neq(bind_text("population = 5\n", v, &err), 0);
    cr_assert_str_eq(err, "e.ini:1: [search evo] required key 'data' is missing (data directory)");
    free(err);
}
