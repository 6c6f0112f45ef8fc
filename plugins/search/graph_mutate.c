/* Intra-layer mutations of attention graphs (OP-NAS): see graph_mutate.h.
 *
 * An edit works on a copy of the node array that may break the
 * operands-before-users order (an inserted node is appended, yet its user
 * comes earlier); the result is written out as text from its output and
 * parsed back canonical, which restores the order, merges equal
 * subexpressions and drops what the output no longer uses. */
#include "graph_mutate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/plugin.h>

/* Room for the graph, the inputs it lacks and one new node. */
#define WORK_NODES (OPGRAPH_MAX_NODES + 4)

typedef struct work {
    int32_t n, root;
    opgraph_node node[WORK_NODES];
} work;

static void say(char *why, size_t n, const char *fmt, ...) ET_PRINTF(3, 4);

static void say(char *why, size_t n, const char *fmt, ...)
{
    if (!why || !n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
}

const char *graph_edit_name(int32_t edit)
{
    static const char *const names[GRAPH_EDIT_COUNT] = {"replace", "insert", "delete"};
    return edit >= 0 && edit < GRAPH_EDIT_COUNT ? names[edit] : "?";
}

int32_t graph_op_count(const opgraph *g)
{
    int32_t k = 0;
    for (int32_t i = 0; i < g->n; i++)
        k += opgraph_op_arity(g->node[i].op) > 0;
    return k;
}

int graph_check(const opgraph *g, const graph_rules *r, char *why, size_t why_n)
{
    int rc = opgraph_validate(g, NULL, r->ctx, NULL, why, why_n);
    if (rc)
        return rc;
    int32_t k = graph_op_count(g);
    if (k > r->max_ops) {
        char text[OPGRAPH_MAX_TEXT];
        if (opgraph_format(g, text, sizeof text, NULL) < 0)
            text[0] = '\0';
        say(why, why_n, "graph \"%s\": %d ops, more than the %d allowed", text, (int)k,
            (int)r->max_ops);
        return ET_STATUS_ERR_USAGE;
    }
    if (r->max_text > 0) {
        char text[OPGRAPH_MAX_TEXT];
        int len = opgraph_canonical_text(g, text, sizeof text);
        if (len < 0 || len > r->max_text) {
            say(why, why_n, "graph \"%s\": %d characters, more than the %d allowed",
                len < 0 ? "(too long)" : text, len, (int)r->max_text);
            return ET_STATUS_ERR_USAGE;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ rebuilding */

typedef struct writer {
    char *buf;
    size_t n, len;
    int fail;
} writer;

static void put(writer *w, const char *s)
{
    size_t k = strlen(s);
    if (w->fail || w->len + k + 1 > w->n) {
        w->fail = 1;
        return;
    }
    memcpy(w->buf + w->len, s, k + 1);
    w->len += k;
}

/* Tree text of node i of a work graph; depth bounds a cycle. */
static void emit(const work *w, int32_t i, int32_t depth, writer *out)
{
    if (out->fail)
        return;
    if (i < 0 || i >= w->n || depth > w->n) {
        out->fail = 1;
        return;
    }
    const opgraph_node *nd = &w->node[i];
    put(out, opgraph_op_name(nd->op));
    int arity = opgraph_op_arity(nd->op);
    if (arity <= 0)
        return;
    put(out, "(");
    for (int a = 0; a < arity; a++) {
        if (a)
            put(out, ",");
        emit(w, nd->arg[a], depth + 1, out);
    }
    put(out, ")");
}

/* The canonical graph of a work graph; nonzero when it has none (a cycle,
 * too long, too many nodes). */
static int rebuild(const work *w, opgraph *out)
{
    char text[OPGRAPH_MAX_TEXT];
    writer wr = {text, sizeof text, 0, 0};
    text[0] = '\0';
    emit(w, w->root, 0, &wr);
    if (wr.fail)
        return ET_STATUS_ERR_USAGE;
    opgraph parsed;
    int rc = opgraph_parse(text, &parsed, NULL, 0);
    return rc ? rc : opgraph_canonicalize(&parsed, out, NULL, 0);
}

/* Whether value a depends on node u (a == u included). */
static int depends(const work *w, int32_t a, int32_t u, int32_t depth)
{
    if (a == u)
        return 1;
    if (a < 0 || depth > w->n)
        return 0;
    const opgraph_node *nd = &w->node[a];
    for (int k = 0; k < opgraph_op_arity(nd->op); k++)
        if (depends(w, nd->arg[k], u, depth + 1))
            return 1;
    return 0;
}

/* ---------------------------------------------------------- enumeration */

typedef struct found {
    const graph_rules *rules;
    uint64_t self;
    opgraph *g;
    uint64_t *hash;
    int32_t n, cap;
    int nomem;
} found;

static void consider(found *f, const work *w)
{
    if (f->nomem)
        return;
    opgraph c;
    if (rebuild(w, &c) || graph_check(&c, f->rules, NULL, 0))
        return;
    uint64_t h = opgraph_hash(&c);
    if (h == f->self)
        return;
    for (int32_t i = 0; i < f->n; i++)
        if (f->hash[i] == h && f->g[i].n == c.n &&
            !memcmp(f->g[i].node, c.node, sizeof c.node[0] * (size_t)c.n))
            return;
    if (f->n == f->cap) {
        int32_t cap = f->cap ? 2 * f->cap : 16;
        opgraph *g = realloc(f->g, sizeof *g * (size_t)cap);
        if (g)
            f->g = g;
        uint64_t *hs = realloc(f->hash, sizeof *hs * (size_t)cap);
        if (hs)
            f->hash = hs;
        if (!g || !hs) {
            f->nomem = 1;
            return;
        }
        f->cap = cap;
    }
    f->g[f->n] = c;
    f->hash[f->n] = h;
    f->n++;
}

/* w with node x's use at (user, slot) redirected to node to; user -1 is
 * the output. */
static void redirect(work *w, int32_t user, int slot, int32_t to)
{
    if (user < 0)
        w->root = to;
    else
        w->node[user].arg[slot] = to;
}

static void edits_replace(found *f, const work *base, int32_t n0, int32_t op)
{
    for (int32_t i = 0; i < n0; i++) {
        int32_t cur = base->node[i].op;
        if (opgraph_op_arity(cur) != opgraph_op_arity(op) || cur == op)
            continue;
        work w = *base;
        w.node[i].op = op;
        consider(f, &w);
    }
}

static void edits_insert(found *f, const work *base, int32_t n0, int32_t op)
{
    int arity = opgraph_op_arity(op);
    /* uses: (user, slot) for every operand slot, then the output */
    for (int32_t user = -1; user < n0; user++) {
        int slots = user < 0 ? 1 : opgraph_op_arity(base->node[user].op);
        for (int s = 0; s < slots; s++) {
            int32_t x = user < 0 ? base->root : base->node[user].arg[s];
            int32_t at = base->n;
            if (arity == 1) {
                work w = *base;
                w.node[at] = (opgraph_node){op, {x, -1}, 0};
                w.n++;
                redirect(&w, user, s, at);
                consider(f, &w);
                continue;
            }
            for (int32_t y = 0; y < base->n; y++) {
                /* max(x,x) is x: the graph again under another name */
                if ((user >= 0 && depends(base, y, user, 0)) || (op == OPGRAPH_OP_MAX && y == x))
                    continue;
                for (int order = 0; order < 2; order++) {
                    if (order && (x == y || opgraph_op_commutative(op)))
                        break;
                    work w = *base;
                    w.node[at] = (opgraph_node){op, {order ? y : x, order ? x : y}, 0};
                    w.n++;
                    redirect(&w, user, s, at);
                    consider(f, &w);
                }
            }
        }
    }
}

static void edits_delete(found *f, const work *base, int32_t n0, int32_t op)
{
    for (int32_t i = 0; i < n0; i++) {
        if (base->node[i].op != op)
            continue;
        for (int k = 0; k < opgraph_op_arity(op); k++) {
            work w = *base;
            int32_t to = base->node[i].arg[k];
            for (int32_t u = 0; u < w.n; u++)
                for (int a = 0; a < 2; a++)
                    if (w.node[u].arg[a] == i)
                        w.node[u].arg[a] = to;
            if (w.root == i)
                w.root = to;
            consider(f, &w);
        }
    }
}

int graph_edits(const opgraph *g, int32_t edit, int32_t op, const graph_rules *r, opgraph **out,
                int32_t *n)
{
    *out = NULL;
    *n = 0;
    if (opgraph_op_arity(op) < 1 || edit < 0 || edit >= GRAPH_EDIT_COUNT || g->n < 1 ||
        g->n > OPGRAPH_MAX_NODES)
        return ET_STATUS_ERR_USAGE;
    work base = {.n = g->n, .root = g->n - 1};
    memcpy(base.node, g->node, sizeof g->node[0] * (size_t)g->n);
    int32_t n0 = g->n;
    /* the inputs the graph lacks, as operands an insert may take */
    for (int32_t in = OPGRAPH_OP_Q; in <= OPGRAPH_OP_V; in++) {
        int have = 0;
        for (int32_t i = 0; i < n0; i++)
            have |= g->node[i].op == in;
        if (!have)
            base.node[base.n++] = (opgraph_node){in, {-1, -1}, 0};
    }
    found f = {.rules = r, .self = opgraph_hash(g)};
    if (edit == GRAPH_EDIT_REPLACE)
        edits_replace(&f, &base, n0, op);
    else if (edit == GRAPH_EDIT_INSERT)
        edits_insert(&f, &base, n0, op);
    else
        edits_delete(&f, &base, n0, op);
    free(f.hash);
    if (f.nomem) {
        free(f.g);
        return ET_STATUS_ERR_NOMEM;
    }
    *out = f.g;
    *n = f.n;
    return 0;
}

/* -------------------------------------------------------------- formula */

enum { PREC_ADD = 1, PREC_MUL = 2, PREC_NEG = 3, PREC_ATOM = 4 };

static int prec(int32_t op)
{
    switch (op) {
    case OPGRAPH_OP_ADD: return PREC_ADD;
    case OPGRAPH_OP_MUL:
    case OPGRAPH_OP_MATMUL:
    case OPGRAPH_OP_SCALE: return PREC_MUL;
    case OPGRAPH_OP_NEG: return PREC_NEG;
    default: return PREC_ATOM;
    }
}

static void term(const opgraph *g, int32_t i, writer *w);

/* Node i, in parentheses when it binds less tightly than `need`. */
static void operand(const opgraph *g, int32_t i, int need, writer *w)
{
    int paren = prec(g->node[i].op) < need;
    if (paren)
        put(w, "(");
    term(g, i, w);
    if (paren)
        put(w, ")");
}

static void term(const opgraph *g, int32_t i, writer *w)
{
    const opgraph_node *nd = &g->node[i];
    int32_t a = nd->arg[0], b = nd->arg[1];
    switch (nd->op) {
    case OPGRAPH_OP_TRANSPOSE:
        operand(g, a, PREC_ATOM, w);
        put(w, "^T");
        break;
    case OPGRAPH_OP_NEG:
        put(w, "-");
        operand(g, a, PREC_NEG, w);
        break;
    case OPGRAPH_OP_SCALE:
        operand(g, a, PREC_MUL, w);
        put(w, " / sqrt(d)");
        break;
    case OPGRAPH_OP_ADD:
    case OPGRAPH_OP_MUL:
    case OPGRAPH_OP_MATMUL: {
        int p = prec(nd->op);
        operand(g, a, p, w);
        put(w, nd->op == OPGRAPH_OP_ADD ? " + " : nd->op == OPGRAPH_OP_MUL ? " * " : " @ ");
        operand(g, b, p + 1, w);
        break;
    }
    default:
        put(w, opgraph_op_name(nd->op));
        if (opgraph_op_arity(nd->op) == 0)
            break;
        put(w, "(");
        term(g, a, w);
        if (b >= 0) {
            put(w, ", ");
            term(g, b, w);
        }
        put(w, ")");
        break;
    }
}

int graph_formula(const opgraph *g, char *buf, size_t n)
{
    char check[OPGRAPH_MAX_TEXT];
    if (!n || opgraph_format(g, check, sizeof check, NULL) < 0)
        return -1;
    writer w = {buf, n, 0, 0};
    buf[0] = '\0';
    term(g, g->n - 1, &w);
    return w.fail ? -1 : (int)w.len;
}
