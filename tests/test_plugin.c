/* The loader: good plugins of every kind, and each refusal (wrong ABI, no
 * descriptor, duplicate name, wrong kind for the use) with its message. */
#include <criterion/criterion.h>
#include <string.h>

#include "plugin.h"
#include "testutil.h"

Test(plugin, loads_every_kind)
{
    et_registry reg = {0};
    char *err = NULL;
    static const char *const names[] = {"fake_search", "fake_task", "fake_proxy", "fake_attn"};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(et_registry_load(&reg, tu_fake(names[i]), &err), 0, "%s", err);
    cr_assert_eq(et_registry_load(&reg, tu_fake("fake_search"), &err), 0, "same file twice is fine");
    cr_assert_eq(reg.n, 4);
    const et_plugin *p = et_registry_find(&reg, ET_PLUGIN_KIND_PROXY, "fake_proxy");
    cr_assert_not_null(p);
    cr_assert_str_eq(p->desc->summary, "test plugin fake_proxy");
    cr_assert_null(et_registry_find(&reg, ET_PLUGIN_KIND_SEARCH, "fake_proxy"));
    et_registry_free(&reg);
}

Test(plugin, refuses_wrong_abi)
{
    et_registry reg = {0};
    char *err = NULL, want[8192];
    const char *path = tu_fake("bad_abi");
    cr_assert_eq(et_registry_load(&reg, path, &err), ET_STATUS_ERR_FORMAT);
    snprintf(want, sizeof want, "%s: plugin ABI version 999, but this etnas speaks version %d; "
             "rebuild the plugin against this etnas's headers", path, ET_ABI_VERSION);
    cr_assert_str_eq(err, want);
    cr_assert_eq(reg.n, 0);
    free(err);
}

Test(plugin, refuses_missing_symbol)
{
    et_registry reg = {0};
    char *err = NULL, want[8192];
    const char *path = tu_fake("no_symbol");
    cr_assert_eq(et_registry_load(&reg, path, &err), ET_STATUS_ERR_FORMAT);
    snprintf(want, sizeof want, "%s: no 'etnas_plugin' symbol, so not an etnas plugin (", path);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
    cr_assert_not_null(strstr(err, "undefined symbol: etnas_plugin"), "%s", err);
    cr_assert_not_null(strstr(err, "ldd"));
    free(err);
}

Test(plugin, refuses_duplicates_naming_both_files)
{
    et_registry reg = {0};
    char *err = NULL;
    char first[4096];
    cr_assert_eq(et_registry_load(&reg, tu_fake("fake_search"), &err), 0, "%s", err);
    snprintf(first, sizeof first, "%s", reg.items[0].path);
    const char *dup = tu_fake("dup_search");
    cr_assert_eq(et_registry_load(&reg, dup, &err), ET_STATUS_ERR_FORMAT);
    char want[9000];
    snprintf(want, sizeof want,
             "%s: search plugin 'fake_search' is also provided by %s; remove one of the two", dup,
             first);
    cr_assert_str_eq(err, want);
    free(err);
    et_registry_free(&reg);
}

Test(plugin, refuses_wrong_kind_and_suggests)
{
    et_registry reg = {0};
    char *err = NULL;
    cr_assert_eq(et_registry_load(&reg, tu_fake("fake_search"), &err), 0, "%s", err);
    cr_assert_eq(et_registry_load(&reg, tu_fake("fake_attn"), &err), 0, "%s", err);
    const et_plugin *p;
    cr_assert_neq(et_registry_get(&reg, ET_PLUGIN_KIND_ATTENTION, "fake_search", "x.ini:3", &p, &err), 0);
    char want[9000];
    snprintf(want, sizeof want, "x.ini:3: 'fake_search' is a search plugin (%s), not the attention plugin needed here",
             reg.items[0].path);
    cr_assert_str_eq(err, want);
    cr_assert_neq(et_registry_get(&reg, ET_PLUGIN_KIND_ATTENTION, "fake_atn", "x.ini:3", &p, &err), 0);
    cr_assert_str_eq(err, "x.ini:3: no attention plugin 'fake_atn' (did you mean 'fake_attn'?)");
    cr_assert_neq(et_registry_get(&reg, ET_PLUGIN_KIND_TASK, "classify", "x.ini:3", &p, &err), 0);
    cr_assert_str_eq(err, "x.ini:3: no task plugin 'classify' (available: none; see 'etnas plugins' "
                          "and ETNAS_PLUGIN_PATH)");
    free(err);
    et_registry_free(&reg);
}

Test(plugin, search_path_order)
{
    setenv("ETNAS_PLUGIN_PATH", "/a:/b", 1);
    char **dirs = et_plugin_path("/c");
    cr_assert_not_null(dirs);
    int n = 0;
    while (dirs[n])
        n++;
    cr_assert_geq(n, 4);
    cr_assert_str_eq(dirs[n - 3], "/a");
    cr_assert_str_eq(dirs[n - 2], "/b");
    cr_assert_str_eq(dirs[n - 1], "/c");
    et_plugin_path_free(dirs);
}

Test(plugin, refuses_missing_vtable_members)
{
    et_registry reg = {0};
    char *err = NULL, want[8192];
    const char *path = tu_fake("no_load");
    cr_assert_eq(et_registry_load(&reg, path, &err), ET_STATUS_ERR_FORMAT);
    snprintf(want, sizeof want, "%s: task plugin 'no_load' lacks the required vtable member 'load'",
             path);
    cr_assert_str_eq(err, want);
    free(err);
}
