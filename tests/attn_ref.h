/* A naive softmax attention operator for the engine tests: the textbook
 * formula in double, no blocking, bidirectional/causal/cross with key
 * padding. It lets the engine be checked on its own, apart from the
 * attention plugins (which are checked against their own references). */
#ifndef ETNAS_TESTS_ATTN_REF_H
#define ETNAS_TESTS_ATTN_REF_H

#include <etnas/attention.h>

extern const et_attention_vtable attn_ref_vtable;

#endif
