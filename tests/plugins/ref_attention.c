/* ref_softmax: the tests' naive softmax operator (tests/attn_ref.c) as a
 * plugin, so end-to-end tests need no shipped attention plugin. */
#include <etnas/etnas.h>

#include "attn_ref.h"

static const et_plugin_descriptor ref_descriptor = {
    ET_ABI_VERSION, ET_PLUGIN_KIND_ATTENTION, "ref_softmax", "naive softmax attention for tests",
    NULL, &attn_ref_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &ref_descriptor;
}
