/* Attention computation graphs apart from their numbers (opgraph.h): the op
 * table, the parser, text and canonical forms, the hash, validation with
 * shape inference, and the MAC count. Nothing here depends on the host, so
 * the attention plugin and the search plugin both compile it in. */
#include "opgraph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/plugin.h>

static const struct {
    const char *name;
    int arity;
    int commutative;
} op_table[OPGRAPH_OP_COUNT] = {
    [OPGRAPH_OP_Q] = {"Q", 0, 0},
    [OPGRAPH_OP_K] = {"K", 0, 0},
    [OPGRAPH_OP_V] = {"V", 0, 0},
    [OPGRAPH_OP_NEG] = {"neg", 1, 0},
    [OPGRAPH_OP_TRANSPOSE] = {"transpose", 1, 0},
    [OPGRAPH_OP_SCALE] = {"scale", 1, 0},
    [OPGRAPH_OP_SOFTMAX] = {"softmax", 1, 0},
    [OPGRAPH_OP_SIGMOID] = {"sigmoid", 1, 0},
    [OPGRAPH_OP_LOGSIGMOID] = {"logsigmoid", 1, 0},
    [OPGRAPH_OP_SOFTPLUS] = {"softplus", 1, 0},
    [OPGRAPH_OP_SOFTSIGN] = {"softsign", 1, 0},
    [OPGRAPH_OP_ABS] = {"abs", 1, 0},
    [OPGRAPH_OP_RELU] = {"relu", 1, 0},
    [OPGRAPH_OP_SQRTABS] = {"sqrtabs", 1, 0},
    [OPGRAPH_OP_ADD] = {"add", 2, 1},
    [OPGRAPH_OP_MUL] = {"mul", 2, 1},
    [OPGRAPH_OP_MATMUL] = {"matmul", 2, 0},
    [OPGRAPH_OP_MAX] = {"max", 2, 1},
};

const char *opgraph_op_name(int32_t op)
{
    return op >= 0 && op < OPGRAPH_OP_COUNT ? op_table[op].name : NULL;
}

int opgraph_op_arity(int32_t op)
{
    return op >= 0 && op < OPGRAPH_OP_COUNT ? op_table[op].arity : -1;
}

int opgraph_op_commutative(int32_t op)
{
    return op >= 0 && op < OPGRAPH_OP_COUNT && op_table[op].commutative;
}

int32_t opgraph_op_from_name(const char *name, size_t len)
{
    for (int32_t op = 0; op < OPGRAPH_OP_COUNT; op++)
        if (strlen(op_table[op].name) == len && !memcmp(op_table[op].name, name, len))
            return op;
    return -1;
}

const char *opgraph_axis_name(int32_t axis)
{
    static const char *const names[] = {"L", "S", "d", "dv"};
    return axis >= 0 && axis < 4 ? names[axis] : "?";
}

int opgraph_axis_is_key(int32_t axis, unsigned ctx)
{
    if (ctx & OPGRAPH_CTX_SAME_LEN)
        return axis == OPGRAPH_AXIS_L || axis == OPGRAPH_AXIS_S;
    return axis == OPGRAPH_AXIS_S;
}

int opgraph_axis_is_ordered(int32_t axis, unsigned ctx)
{
    return (ctx & OPGRAPH_CTX_CAUSAL) && (axis == OPGRAPH_AXIS_L || axis == OPGRAPH_AXIS_S);
}

int64_t opgraph_axis_size(int32_t axis, int64_t len_q, int64_t len_k, int64_t dim_qk,
                          int64_t dim_v)
{
    switch (axis) {
    case OPGRAPH_AXIS_L: return len_q;
    case OPGRAPH_AXIS_S: return len_k;
    case OPGRAPH_AXIS_D: return dim_qk;
    default: return dim_v;
    }
}

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

/* ---------------------------------------------------------------- parser */

typedef struct parser {
    const char *text;
    size_t pos;
    opgraph *g;
    char *why;
    size_t why_n;
} parser;

static void skip_space(parser *p)
{
    while (p->text[p->pos] == ' ' || p->text[p->pos] == '\t' || p->text[p->pos] == '\n' ||
           p->text[p->pos] == '\r')
        p->pos++;
}

static int is_ident(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

/* The node (op, a, b), reused when the graph has it already. */
static int add_node(parser *p, int32_t op, int32_t a, int32_t b, int32_t col, int32_t *out)
{
    opgraph *g = p->g;
    for (int32_t i = 0; i < g->n; i++)
        if (g->node[i].op == op && g->node[i].arg[0] == a && g->node[i].arg[1] == b) {
            *out = i;
            return 0;
        }
    if (g->n == OPGRAPH_MAX_NODES) {
        say(p->why, p->why_n, "graph \"%s\" col %d: more than %d distinct nodes", p->text, col,
            OPGRAPH_MAX_NODES);
        return ET_STATUS_ERR_USAGE;
    }
    g->node[g->n] = (opgraph_node){op, {a, b}, col};
    *out = g->n++;
    return 0;
}

static int parse_expr(parser *p, int32_t *out)
{
    skip_space(p);
    size_t start = p->pos;
    int32_t col = (int32_t)start + 1;
    while (is_ident(p->text[p->pos], p->pos == start))
        p->pos++;
    size_t len = p->pos - start;
    if (!len) {
        if (!p->text[start])
            say(p->why, p->why_n, "graph \"%s\" col %d: unexpected end; expected Q, K, V or an op",
                p->text, col);
        else
            say(p->why, p->why_n, "graph \"%s\" col %d: unexpected '%c'; expected Q, K, V or an op",
                p->text, col, p->text[start]);
        return ET_STATUS_ERR_USAGE;
    }
    const char *name = p->text + start;
    int32_t op = opgraph_op_from_name(name, len);
    if (op < 0) {
        int lower_input = len == 1 && (*name == 'q' || *name == 'k' || *name == 'v');
        say(p->why, p->why_n,
            "graph \"%s\" col %d: unknown %s '%.*s' (%s)", p->text, col,
            lower_input ? "input" : "op", (int)len, name,
            lower_input ? "inputs are Q, K and V, upper case"
                        : "inputs Q, K, V; ops neg, transpose, scale, softmax, sigmoid, "
                          "logsigmoid, softplus, softsign, abs, relu, sqrtabs, add, mul, matmul, "
                          "max");
        return ET_STATUS_ERR_USAGE;
    }
    int arity = op_table[op].arity;
    skip_space(p);
    if (arity == 0) {
        if (p->text[p->pos] == '(') {
            say(p->why, p->why_n, "graph \"%s\" col %d: %s is an input and takes no operands",
                p->text, col, op_table[op].name);
            return ET_STATUS_ERR_USAGE;
        }
        return add_node(p, op, -1, -1, col, out);
    }
    if (p->text[p->pos] != '(') {
        say(p->why, p->why_n, "graph \"%s\" col %d: %s needs '(' and %d operand%s", p->text, col,
            op_table[op].name, arity, arity == 1 ? "" : "s");
        return ET_STATUS_ERR_USAGE;
    }
    p->pos++;
    int32_t args[2] = {-1, -1};
    int nargs = 0;
    for (;;) {
        int32_t a;
        int rc = parse_expr(p, &a);
        if (rc)
            return rc;
        if (nargs < 2)
            args[nargs] = a;
        nargs++;
        skip_space(p);
        char c = p->text[p->pos];
        if (c == ',' || c == ';') {
            p->pos++;
            continue;
        }
        if (c == ')') {
            p->pos++;
            break;
        }
        if (!c)
            say(p->why, p->why_n, "graph \"%s\" col %d: %s( is not closed: expected ')'",
                p->text, col, op_table[op].name);
        else
            say(p->why, p->why_n, "graph \"%s\" col %d: unexpected '%c' in the operands of %s "
                "(col %d): expected ',' or ')'", p->text, (int)p->pos + 1, c, op_table[op].name,
                col);
        return ET_STATUS_ERR_USAGE;
    }
    if (nargs != arity) {
        say(p->why, p->why_n, "graph \"%s\" col %d: %s takes %d operand%s, got %d", p->text, col,
            op_table[op].name, arity, arity == 1 ? "" : "s", nargs);
        return ET_STATUS_ERR_USAGE;
    }
    return add_node(p, op, args[0], args[1], col, out);
}

int opgraph_parse(const char *text, opgraph *g, char *why, size_t why_n)
{
    g->n = 0;
    if (!text) {
        say(why, why_n, "no graph text");
        return ET_STATUS_ERR_USAGE;
    }
    size_t len = strlen(text);
    if (len >= OPGRAPH_MAX_TEXT) {
        say(why, why_n, "graph text is %zu characters, longer than %d", len,
            OPGRAPH_MAX_TEXT - 1);
        return ET_STATUS_ERR_USAGE;
    }
    parser p = {text, 0, g, why, why_n};
    int32_t root;
    int rc = parse_expr(&p, &root);
    if (!rc) {
        skip_space(&p);
        if (text[p.pos]) {
            say(why, why_n, "graph \"%s\" col %d: unexpected '%c' after the end of the graph",
                text, (int)p.pos + 1, text[p.pos]);
            rc = ET_STATUS_ERR_USAGE;
        }
    }
    /* root is node n-1: the outermost expression is made last, since a tree
     * never contains itself */
    if (rc)
        g->n = 0;
    return rc;
}

/* ------------------------------------------------------------ text forms */

/* 0 when every node has a known op, its operands come before it, and unused
 * operand slots are -1. */
static int structure_ok(const opgraph *g, char *why, size_t why_n)
{
    if (g->n < 1 || g->n > OPGRAPH_MAX_NODES) {
        say(why, why_n, "a graph has 1 to %d nodes, not %d", OPGRAPH_MAX_NODES, g->n);
        return ET_STATUS_ERR_USAGE;
    }
    for (int32_t i = 0; i < g->n; i++) {
        const opgraph_node *nd = &g->node[i];
        int arity = opgraph_op_arity(nd->op);
        if (arity < 0) {
            say(why, why_n, "node %d: unknown op %d", i, nd->op);
            return ET_STATUS_ERR_USAGE;
        }
        for (int a = 0; a < 2; a++) {
            int32_t x = nd->arg[a];
            if (a < arity && (x < 0 || x >= i)) {
                say(why, why_n, "node %d (%s): operand %d is node %d, which does not come "
                    "before it", i, op_table[nd->op].name, a + 1, x);
                return ET_STATUS_ERR_USAGE;
            }
            if (a >= arity && x != -1) {
                say(why, why_n, "node %d (%s): has an operand %d but takes %d", i,
                    op_table[nd->op].name, a + 1, arity);
                return ET_STATUS_ERR_USAGE;
            }
        }
    }
    return 0;
}

typedef struct writer {
    char *buf;
    size_t n, len;
    int overflow;
} writer;

static void put(writer *w, const char *s)
{
    size_t k = strlen(s);
    if (w->len + k + 1 > w->n) {
        w->overflow = 1;
        return;
    }
    memcpy(w->buf + w->len, s, k + 1);
    w->len += k;
}

/* Tree text of node i; stops early once the buffer is full, so a DAG whose
 * tree is huge costs no more than the buffer. */
static void format_node(const opgraph *g, int32_t i, writer *w, int32_t *cols)
{
    if (w->overflow)
        return;
    const opgraph_node *nd = &g->node[i];
    if (cols && !cols[i])
        cols[i] = (int32_t)w->len + 1;
    put(w, op_table[nd->op].name);
    int arity = op_table[nd->op].arity;
    if (!arity)
        return;
    put(w, "(");
    for (int a = 0; a < arity; a++) {
        if (a)
            put(w, ",");
        format_node(g, nd->arg[a], w, cols);
    }
    put(w, ")");
}

int opgraph_format(const opgraph *g, char *buf, size_t n, int32_t *cols)
{
    if (!n || structure_ok(g, NULL, 0))
        return -1;
    if (cols)
        memset(cols, 0, (size_t)g->n * sizeof *cols);
    writer w = {buf, n, 0, 0};
    buf[0] = '\0';
    format_node(g, g->n - 1, &w, cols);
    return w.overflow ? -1 : (int)w.len;
}

int opgraph_canonical_text(const opgraph *g, char *buf, size_t n)
{
    if (!n)
        return ET_STATUS_ERR_USAGE;
    int rc = structure_ok(g, NULL, 0);
    if (rc)
        return rc;
    /* bottom-up: each node's canonical text from its operands' */
    char *text = malloc((size_t)g->n * OPGRAPH_MAX_TEXT);
    if (!text)
        return ET_STATUS_ERR_NOMEM;
    for (int32_t i = 0; i < g->n && !rc; i++) {
        const opgraph_node *nd = &g->node[i];
        const char *a = nd->arg[0] >= 0 ? text + (size_t)nd->arg[0] * OPGRAPH_MAX_TEXT : NULL;
        const char *b = nd->arg[1] >= 0 ? text + (size_t)nd->arg[1] * OPGRAPH_MAX_TEXT : NULL;
        if (a && b && op_table[nd->op].commutative && strcmp(a, b) > 0) {
            const char *t = a;
            a = b;
            b = t;
        }
        int k = snprintf(text + (size_t)i * OPGRAPH_MAX_TEXT, OPGRAPH_MAX_TEXT, "%s%s%s%s%s%s",
                         op_table[nd->op].name, a ? "(" : "", a ? a : "", b ? "," : "",
                         b ? b : "", a ? ")" : "");
        if (k < 0 || k >= OPGRAPH_MAX_TEXT)
            rc = ET_STATUS_ERR_USAGE;
    }
    if (!rc) {
        const char *root = text + (size_t)(g->n - 1) * OPGRAPH_MAX_TEXT;
        size_t k = strlen(root);
        if (k + 1 > n)
            rc = ET_STATUS_ERR_USAGE;
        else {
            memcpy(buf, root, k + 1);
            rc = (int)k;
        }
    }
    free(text);
    return rc;
}

int opgraph_canonicalize(const opgraph *g, opgraph *out, char *why, size_t why_n)
{
    char text[OPGRAPH_MAX_TEXT];
    int rc = structure_ok(g, why, why_n);
    if (rc)
        return rc;
    rc = opgraph_canonical_text(g, text, sizeof text);
    if (rc == ET_STATUS_ERR_NOMEM)
        say(why, why_n, "out of memory");
    else if (rc < 0)
        say(why, why_n, "the graph's text is longer than %d characters", OPGRAPH_MAX_TEXT - 1);
    if (rc < 0)
        return rc;
    return opgraph_parse(text, out, why, why_n);
}

/* FNV-1a over the bytes, then a splitmix64 finaliser to spread the bits. */
uint64_t opgraph_hash(const opgraph *g)
{
    char text[OPGRAPH_MAX_TEXT];
    if (opgraph_canonical_text(g, text, sizeof text) < 0)
        return 0;
    uint64_t h = 0xcbf29ce484222325u;
    for (const unsigned char *c = (const unsigned char *)text; *c; c++)
        h = (h ^ *c) * 0x100000001b3u;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9u;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebu;
    h ^= h >> 31;
    return h;
}

/* ------------------------------------------------------------ validation */

/* The axis symbol a context identifies another with. */
static int32_t canon_axis(int32_t axis, unsigned ctx)
{
    if ((ctx & OPGRAPH_CTX_SAME_LEN) && axis == OPGRAPH_AXIS_S)
        return OPGRAPH_AXIS_L;
    if ((ctx & OPGRAPH_CTX_SAME_DIM) && axis == OPGRAPH_AXIS_DV)
        return OPGRAPH_AXIS_D;
    return axis;
}

static int same_axis(int32_t a, int32_t b, unsigned ctx)
{
    return canon_axis(a, ctx) == canon_axis(b, ctx);
}

int opgraph_validate(const opgraph *g, const char *text, unsigned ctx, opgraph_shapes *shapes,
                     char *why, size_t why_n)
{
    int rc = structure_ok(g, why, why_n);
    if (rc)
        return rc;
    char own[OPGRAPH_MAX_TEXT];
    int32_t cols[OPGRAPH_MAX_NODES];
    if (opgraph_format(g, own, sizeof own, cols) < 0) {
        say(why, why_n, "the graph's text is longer than %d characters", OPGRAPH_MAX_TEXT - 1);
        return ET_STATUS_ERR_USAGE;
    }
    int used[OPGRAPH_MAX_NODES] = {0};
    used[g->n - 1] = 1;
    for (int32_t i = g->n - 1; i >= 0; i--)
        for (int a = 0; used[i] && a < opgraph_op_arity(g->node[i].op); a++)
            used[g->node[i].arg[a]] = 1;
    for (int32_t i = 0; i < g->n; i++)
        if (!used[i]) {
            say(why, why_n, "graph \"%s\": node %d (%s) is dead: the output does not use it", own,
                i, op_table[g->node[i].op].name);
            return ET_STATUS_ERR_USAGE;
        }
    const char *quote = text ? text : own;
    opgraph_shapes sh;
    for (int32_t i = 0; i < g->n; i++) {
        const opgraph_node *nd = &g->node[i];
        int32_t col = text ? nd->col : cols[i];
        const char *name = op_table[nd->op].name;
        int32_t a = nd->arg[0], b = nd->arg[1];
        int8_t r = 0, c = 0;
        switch (nd->op) {
        case OPGRAPH_OP_Q: r = OPGRAPH_AXIS_L, c = OPGRAPH_AXIS_D; break;
        case OPGRAPH_OP_K: r = OPGRAPH_AXIS_S, c = OPGRAPH_AXIS_D; break;
        case OPGRAPH_OP_V: r = OPGRAPH_AXIS_S, c = OPGRAPH_AXIS_DV; break;
        case OPGRAPH_OP_TRANSPOSE: r = sh.cols[a], c = sh.rows[a]; break;
        case OPGRAPH_OP_MATMUL:
            if (!same_axis(sh.cols[a], sh.rows[b], ctx)) {
                say(why, why_n, "graph \"%s\" col %d: %s: %s x %s times %s x %s: inner axes %s "
                    "and %s differ", quote, col, name, opgraph_axis_name(sh.rows[a]),
                    opgraph_axis_name(sh.cols[a]), opgraph_axis_name(sh.rows[b]),
                    opgraph_axis_name(sh.cols[b]), opgraph_axis_name(sh.cols[a]),
                    opgraph_axis_name(sh.rows[b]));
                return ET_STATUS_ERR_USAGE;
            }
            r = sh.rows[a], c = sh.cols[b];
            if (opgraph_axis_is_ordered(sh.cols[a], ctx) && !opgraph_axis_is_ordered(r, ctx) &&
                !opgraph_axis_is_ordered(c, ctx)) {
                say(why, why_n, "graph \"%s\" col %d: %s: sums over key positions into a %s x %s "
                    "value that every query would see, which is not causal (e.g. write "
                    "matmul(matmul(Q,transpose(K)),V), not matmul(Q,matmul(transpose(K),V)))",
                    quote, col, name, opgraph_axis_name(r), opgraph_axis_name(c));
                return ET_STATUS_ERR_USAGE;
            }
            break;
        case OPGRAPH_OP_ADD:
        case OPGRAPH_OP_MUL:
        case OPGRAPH_OP_MAX:
            if (!same_axis(sh.rows[a], sh.rows[b], ctx) ||
                !same_axis(sh.cols[a], sh.cols[b], ctx)) {
                say(why, why_n, "graph \"%s\" col %d: %s: operands are %s x %s and %s x %s; "
                    "elementwise ops need equal shapes (no broadcasting)", quote, col, name,
                    opgraph_axis_name(sh.rows[a]), opgraph_axis_name(sh.cols[a]),
                    opgraph_axis_name(sh.rows[b]), opgraph_axis_name(sh.cols[b]));
                return ET_STATUS_ERR_USAGE;
            }
            r = sh.rows[a], c = sh.cols[a];
            break;
        case OPGRAPH_OP_SOFTMAX:
            r = sh.rows[a], c = sh.cols[a];
            if (opgraph_axis_is_ordered(c, ctx) && !opgraph_axis_is_ordered(r, ctx)) {
                say(why, why_n, "graph \"%s\" col %d: %s: normalises a %s x %s value over key "
                    "positions in rows that are not query positions, which is not causal", quote,
                    col, name, opgraph_axis_name(r), opgraph_axis_name(c));
                return ET_STATUS_ERR_USAGE;
            }
            break;
        default: /* the other unary ops keep the shape */
            r = sh.rows[a], c = sh.cols[a];
            break;
        }
        sh.rows[i] = r, sh.cols[i] = c;
    }
    int32_t out = g->n - 1;
    if (!same_axis(sh.rows[out], OPGRAPH_AXIS_L, ctx) ||
        !same_axis(sh.cols[out], OPGRAPH_AXIS_DV, ctx)) {
        say(why, why_n, "graph \"%s\" col %d: the output (%s) is %s x %s; attention must give "
            "L x dv", quote, text ? g->node[out].col : cols[out], op_table[g->node[out].op].name,
            opgraph_axis_name(sh.rows[out]), opgraph_axis_name(sh.cols[out]));
        return ET_STATUS_ERR_USAGE;
    }
    if (shapes)
        *shapes = sh;
    return 0;
}

double opgraph_macs(const opgraph *g, const opgraph_shapes *shapes, int64_t len_q,
                    int64_t len_k, int64_t dim_qk, int64_t dim_v)
{
    double macs = 0.0;
    for (int32_t i = 0; i < g->n; i++) {
        const opgraph_node *nd = &g->node[i];
        if (nd->op != OPGRAPH_OP_MATMUL)
            continue;
        int32_t a = nd->arg[0];
        macs += (double)opgraph_axis_size(shapes->rows[i], len_q, len_k, dim_qk, dim_v) *
                (double)opgraph_axis_size(shapes->cols[a], len_q, len_k, dim_qk, dim_v) *
                (double)opgraph_axis_size(shapes->cols[i], len_q, len_k, dim_qk, dim_v);
    }
    return macs;
}

float opgraph_sigmoid(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

float opgraph_unary(int32_t op, float x, float scale)
{
    switch (op) {
    case OPGRAPH_OP_NEG: return -x;
    case OPGRAPH_OP_SCALE: return x * scale;
    case OPGRAPH_OP_SIGMOID: return opgraph_sigmoid(x);
    case OPGRAPH_OP_LOGSIGMOID: return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
    case OPGRAPH_OP_SOFTPLUS: return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
    case OPGRAPH_OP_SOFTSIGN: return x / (1.0f + fabsf(x));
    case OPGRAPH_OP_ABS: return fabsf(x);
    case OPGRAPH_OP_RELU: return x > 0.0f ? x : 0.0f;
    default: return sqrtf(fabsf(x)); /* OPGRAPH_OP_SQRTABS */
    }
}

float opgraph_binary(int32_t op, float a, float b)
{
    switch (op) {
    case OPGRAPH_OP_ADD: return a + b;
    case OPGRAPH_OP_MUL: return a * b;
    default: return a >= b ? a : b; /* OPGRAPH_OP_MAX */
    }
}
