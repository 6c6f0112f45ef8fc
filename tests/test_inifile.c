/* INI reading: sections with kind and label, line numbers, the errors of
 * malformed files, long lines, and --set overrides. */
#include <criterion/criterion.h>
#include <string.h>

#include "inifile.h"

static char *parse_err(const char *text)
{
    et_config cfg;
    char *err = NULL;
    int rc = et_config_parse(text, "x.ini", &cfg, &err);
    cr_assert_neq(rc, 0, "expected an error for:\n%s", text);
    cr_assert_not_null(err);
    cr_assert_null(strchr(err, '\n'), "one line: %s", err);
    return err;
}

Test(inifile, sections_keys_lines)
{
    et_config cfg;
    char *err = NULL;
    const char *text = "; comment\n[experiment]\nseed = 3\n\n[search  evo]\n  population = 50 ; note\n"
                       "[search random]\n";
    cr_assert_eq(et_config_parse(text, "x.ini", &cfg, &err), 0, "%s", err);
    cr_assert_eq(cfg.n, 3);
    cr_assert_str_eq(cfg.sections[1].name, "search evo");
    cr_assert_str_eq(cfg.sections[1].kind, "search");
    cr_assert_str_eq(cfg.sections[1].label, "evo");
    cr_assert_eq(cfg.sections[1].line, 5);
    et_config_entry *e = et_config_entry_find(&cfg.sections[1], "population");
    cr_assert_not_null(e);
    cr_assert_str_eq(e->value, "50");
    cr_assert_eq(e->line, 6);
    cr_assert_eq(cfg.sections[2].n, 0, "empty sections are kept");
    et_config_free(&cfg);
}

Test(inifile, errors_name_file_and_line)
{
    char *err = parse_err("[a]\nx = 1\nx = 2\n");
    cr_assert_str_eq(err, "x.ini:3: key 'x' appears twice in [a] (first at line 2)");
    free(err);
    err = parse_err("[a]\nx = 1\n[a]\n");
    cr_assert_str_eq(err, "x.ini:3: section [a] appears twice (first at line 1)");
    free(err);
    err = parse_err("x = 1\n");
    cr_assert_str_eq(err, "x.ini:1: key 'x' before any [section]");
    free(err);
    err = parse_err("[a]\njust words\n");
    cr_assert_str_eq(err, "x.ini:2: not a 'key = value' line or '[section]' header");
    free(err);
    err = parse_err("[a\n");
    cr_assert_str_eq(err, "x.ini:1: section header without ']'");
    free(err);
}

Test(inifile, long_lines_work)
{
    char text[8192] = "[space]\nencoder_attention = softmax";
    for (int i = 0; i < 300; i++)
        strcat(text, ", op");
    strcat(text, " ; trailing comment\nnext = 1\n");
    et_config cfg;
    char *err = NULL;
    cr_assert_eq(et_config_parse(text, "x.ini", &cfg, &err), 0, "%s", err);
    et_config_entry *e = et_config_entry_find(&cfg.sections[0], "encoder_attention");
    cr_assert_eq(strlen(e->value), strlen("softmax") + 300 * 4);
    cr_assert_eq(et_config_entry_find(&cfg.sections[0], "next")->line, 3);
    et_config_free(&cfg);
}

Test(inifile, overrides)
{
    et_config cfg;
    char *err = NULL;
    cr_assert_eq(et_config_parse("[search evo.2]\npopulation = 50\n", "x.ini", &cfg, &err), 0);
    cr_assert_eq(et_config_override(&cfg, "search evo.2.population=60", &err), 0, "%s", err);
    cr_assert_eq(et_config_override(&cfg, "experiment.seed = 9", &err), 0, "%s", err);
    cr_assert_str_eq(et_config_entry_find(&cfg.sections[0], "population")->value, "60");
    cr_assert_str_eq(et_config_entry_find(et_config_find(&cfg, "experiment"), "seed")->value, "9");
    cr_assert_neq(et_config_override(&cfg, "noequals", &err), 0);
    cr_assert_str_eq(err, "--set noequals: expected SECTION.KEY=VALUE (e.g. experiment.seed=3)");
    free(err);
    et_config_free(&cfg);
}
