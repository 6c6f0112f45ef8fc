/* Intra-layer mutations of attention graphs for OP-NAS (spec/search.md):
 * replace, insert or delete one op of an opgraph (opgraph.h), and the rules
 * a graph must meet before it is trained.
 *
 * Edits, each with one op o (not an input):
 *   replace  a node whose op has o's arity takes op o, keeping its operands;
 *   insert   on one use of a value x (an operand slot of a node, or the
 *            output), x becomes o(x), or o(x,y) / o(y,x) for any value y
 *            that does not depend on that user (Q, K and V always among
 *            them), so the graph stays acyclic (max(x,x), which is x, is
 *            left out);
 *   delete   a node with op o is removed and its users read its operand
 *            (a binary node's first or second one) instead.
 * A node shared by several users is one node: replace and delete act on all
 * of its uses, insert on one. Every result is rebuilt through its text, so
 * it is canonical (opgraph_canonicalize): values only a deleted operand fed
 * are dropped with it, identical subexpressions merge, and no node is dead.
 *
 * graph_edits lists the distinct graphs one edit of a kind and op away
 * that meet the rules, so a search draws among valid children only; what
 * the rules cannot see beforehand (a duplicate of a graph tried earlier, a
 * non-finite output) the search checks after the draw. */
#ifndef ETNAS_PLUGINS_GRAPH_MUTATE_H
#define ETNAS_PLUGINS_GRAPH_MUTATE_H

#include <stddef.h>
#include <stdint.h>

#include "opgraph.h"

typedef enum graph_edit {
    GRAPH_EDIT_REPLACE = 0,
    GRAPH_EDIT_INSERT = 1,
    GRAPH_EDIT_DELETE = 2,
    GRAPH_EDIT_COUNT
} graph_edit;

/* The ops edits use: every op but the inputs, as arms 0..GRAPH_OPS-1. */
#define GRAPH_OPS (OPGRAPH_OP_COUNT - OPGRAPH_OP_NEG)
#define GRAPH_OP_OF_ARM(arm) ((int32_t)(arm) + OPGRAPH_OP_NEG)

/* What a graph must be to be trained: valid under ctx (opgraph_validate:
 * shapes for the layer's attention mode, an L x dv output, no dead nodes,
 * causality) with at most max_ops op nodes (inputs not counted) and, when
 * max_text > 0, a canonical text of at most max_text characters (where the
 * graph travels inside a length-limited operator text). */
typedef struct graph_rules {
    unsigned ctx;     /* opgraph_ctx flags */
    int32_t max_ops;  /* >= 1 */
    int32_t max_text; /* 0: no limit beyond OPGRAPH_MAX_TEXT */
} graph_rules;

/* "replace", "insert", "delete". */
const char *graph_edit_name(int32_t edit);

/* Op nodes of g (inputs not counted). */
int32_t graph_op_count(const opgraph *g);

/* 0 when g meets the rules, else a negative et_status and one line in why. */
int graph_check(const opgraph *g, const graph_rules *r, char *why, size_t why_n);

/* The distinct graphs (canonical, meeting the rules, unequal to g) that one
 * edit of kind `edit` with op `op` makes of g, in a fixed order: *out gets
 * a malloc'd array of them (NULL when there are none; the caller frees it)
 * and *n their number. Returns 0 or a negative et_status (a bad op or edit,
 * out of memory). g itself need not be canonical. */
int graph_edits(const opgraph *g, int32_t edit, int32_t op, const graph_rules *r, opgraph **out,
                int32_t *n);

/* The graph as a formula for reports, e.g. for standard attention
 *     softmax(Q @ K^T / sqrt(d)) @ V
 * (@ matrix product, * elementwise product, ^T transpose, sqrt(d) the
 * scale). Returns its length, or -1 when it does not fit in n bytes or g is
 * malformed. */
int graph_formula(const opgraph *g, char *buf, size_t n);

#endif
