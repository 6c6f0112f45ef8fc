/* Attention computation graphs (OP-NAS, spec/search.md): a small graph of
 * primitive ops over one head's Q (L x d), K (S x d) and V (S x dv), written
 * as a nested expression such as
 *
 *     matmul(softmax(scale(matmul(Q,transpose(K)))),V)
 *
 * This header is the graph itself, apart from any numbers: parsing, the
 * text form, the canonical form and its hash, structural checks and shape
 * inference, and the MAC count. The `opgraph` attention plugin evaluates
 * graphs; the `opnas` search plugin compiles the same source
 * (opgraph_parse.c) to build, mutate and deduplicate them.
 *
 * Text. An expression is Q, K, V or op(arg) / op(arg,arg); spaces are
 * allowed between tokens and arguments may also be separated by ';' (for
 * option lists that split on commas). Ops:
 *   unary   neg, transpose, scale (x / sqrt(d), d = dim_qk whatever the
 *           operand's shape), softmax (over the column axis, the key axis of
 *           score matrices), sigmoid, logsigmoid, softplus (log(1 + e^x)),
 *           softsign (x / (1 + |x|)), abs, relu, sqrtabs (sqrt(|x|))
 *   binary  add, mul, max (elementwise), matmul
 * Identical subexpressions are one node (the graph is a DAG); at most
 * OPGRAPH_MAX_NODES distinct nodes, and the text (a tree) is shorter than
 * OPGRAPH_MAX_TEXT characters.
 *
 * Shapes are symbolic: every value is a matrix whose axes are L (query
 * positions), S (key positions), d or dv. transpose swaps them; matmul needs
 * the first operand's columns to be the second's rows; unary ops keep the
 * shape; add, mul and max need equal shapes. There is no broadcasting (no op
 * makes a size-1 axis). The output must be L x dv. A context says which
 * symbols are the same: in self-attention L and S are one sequence
 * (OPGRAPH_CTX_SAME_LEN), and where d == dv the two feature axes match
 * (OPGRAPH_CTX_SAME_DIM). So matmul(P,Q) (values taken from Q) is a graph of
 * self-attention with d == dv only, and add(Q,K) is never one of
 * cross-attention.
 *
 * Masks (what the plugin computes, stated here because validity depends on
 * it). A key axis is an S axis, and in self-attention every L or S axis (they
 * are the same positions). Wherever a reduction meets a key axis, the key
 * mask applies: matmul contracting over a key axis sums over valid keys only,
 * softmax over a key column axis gives padded keys probability 0 (a row with
 * no visible key is 0); and the plugin reads the K and V rows of padded keys
 * as 0, so they reach no output even through elementwise paths such as
 * add(...,V) (padded query rows of self-attention are still computed, from
 * their own Q rows). Causal attention also orders positions: a matmul
 * contracting over positions into element (i, j) sums over k <= i when its
 * rows are positions, else over k <= j when its columns are; a softmax over
 * position columns sees columns k <= i in row i. A reduction over positions
 * whose result has no position axis to bound it (e.g. matmul(transpose(K),V),
 * d x dv, as in linear attention) would let every query see every key:
 * causal contexts refuse it (OPGRAPH_CTX_CAUSAL). With these rules every
 * value depends only on positions up to the largest of its own position
 * indices, so output row i only on positions <= i.
 *
 * Canonical form: the text with the operands of add, mul and max ordered
 * (by their canonical text, strcmp order), no spaces, ',' separators. Two
 * graphs are equal when their canonical texts are; the hash is a 64-bit hash
 * of that text. No algebra beyond commutativity is applied (transpose of
 * transpose is not simplified). */
#ifndef ETNAS_PLUGINS_OPGRAPH_H
#define ETNAS_PLUGINS_OPGRAPH_H

#include <stddef.h>
#include <stdint.h>

#define OPGRAPH_MAX_NODES 32
#define OPGRAPH_MAX_TEXT 1024 /* bytes of text, NUL included */

typedef enum opgraph_op {
    OPGRAPH_OP_Q = 0, /* inputs: no operands */
    OPGRAPH_OP_K,
    OPGRAPH_OP_V,
    OPGRAPH_OP_NEG, /* unary */
    OPGRAPH_OP_TRANSPOSE,
    OPGRAPH_OP_SCALE,
    OPGRAPH_OP_SOFTMAX,
    OPGRAPH_OP_SIGMOID,
    OPGRAPH_OP_LOGSIGMOID,
    OPGRAPH_OP_SOFTPLUS,
    OPGRAPH_OP_SOFTSIGN,
    OPGRAPH_OP_ABS,
    OPGRAPH_OP_RELU,
    OPGRAPH_OP_SQRTABS,
    OPGRAPH_OP_ADD, /* binary */
    OPGRAPH_OP_MUL,
    OPGRAPH_OP_MATMUL,
    OPGRAPH_OP_MAX,
    OPGRAPH_OP_COUNT
} opgraph_op;

typedef enum opgraph_axis {
    OPGRAPH_AXIS_L = 0,
    OPGRAPH_AXIS_S = 1,
    OPGRAPH_AXIS_D = 2,
    OPGRAPH_AXIS_DV = 3
} opgraph_axis;

/* Context flags for validation and shape inference. */
typedef enum opgraph_ctx {
    OPGRAPH_CTX_SAME_LEN = 1, /* self-attention: L and S are the same positions */
    OPGRAPH_CTX_SAME_DIM = 2, /* d == dv */
    OPGRAPH_CTX_CAUSAL = 4    /* causal self-attention (use with SAME_LEN) */
} opgraph_ctx;

/* One node: op and operand node indices (-1 for unused slots); col is the
 * 1-based column of the op in the text it was parsed from (0: not parsed). */
typedef struct opgraph_node {
    int32_t op;
    int32_t arg[2];
    int32_t col;
} opgraph_node;

/* Nodes in topological order (operands before users); node n-1 is the
 * output. A plain value: copy it with '='. */
typedef struct opgraph {
    int32_t n;
    opgraph_node node[OPGRAPH_MAX_NODES];
} opgraph;

/* The inferred shape of every node (opgraph_axis values). */
typedef struct opgraph_shapes {
    int8_t rows[OPGRAPH_MAX_NODES];
    int8_t cols[OPGRAPH_MAX_NODES];
} opgraph_shapes;

/* "matmul", "Q", ...; NULL for an unknown op. */
const char *opgraph_op_name(int32_t op);
/* 0 for inputs, 1 or 2 for ops, -1 for an unknown op. */
int opgraph_op_arity(int32_t op);
/* 1 for add, mul and max. */
int opgraph_op_commutative(int32_t op);
/* The op named by the first len bytes of name, or -1. */
int32_t opgraph_op_from_name(const char *name, size_t len);
/* "L", "S", "d", "dv". */
const char *opgraph_axis_name(int32_t axis);
/* Whether key masks apply on an axis in context ctx (see Masks above), and
 * whether the causal order does. */
int opgraph_axis_is_key(int32_t axis, unsigned ctx);
int opgraph_axis_is_ordered(int32_t axis, unsigned ctx);

/* Text -> graph (syntax only: ops, arity, parentheses; no shapes). Returns 0,
 * or a negative et_status with a one-line reason in why (size why_n). */
int opgraph_parse(const char *text, opgraph *g, char *why, size_t why_n);

/* The graph's text as its nodes say (no reordering) into buf; returns its
 * length, or -1 when buf is too small or the graph is malformed. cols
 * (NULL-able, g->n entries) gets each node's 1-based column in that text. */
int opgraph_format(const opgraph *g, char *buf, size_t n, int32_t *cols);

/* The canonical text into buf; returns its length or a negative et_status. */
int opgraph_canonical_text(const opgraph *g, char *buf, size_t n);

/* The canonical graph: parsed back from the canonical text, so equal graphs
 * give identical node arrays and nodes the output does not use are dropped.
 * out may be g. Returns 0 or a negative et_status (why NULL-able). */
int opgraph_canonicalize(const opgraph *g, opgraph *out, char *why, size_t why_n);

/* 64-bit hash of the canonical text (0 for a malformed graph). */
uint64_t opgraph_hash(const opgraph *g);

/* Everything a graph must be before it is trained (spec/search.md, OP-NAS):
 * well-formed nodes (known ops, operands before users), no dead nodes, text
 * within OPGRAPH_MAX_TEXT, consistent shapes under ctx with an L x dv
 * output, and, with OPGRAPH_CTX_CAUSAL, no unbounded reduction over
 * positions. text (NULL-able) is the text g was parsed from, quoted in
 * errors with the node's column; otherwise the graph's own text is quoted.
 * shapes (NULL-able) gets every node's shape. Returns 0, or a negative
 * et_status with one line in why naming the op and its column, e.g.
 *   graph "matmul(Q,V)" col 1: matmul: L x d times S x dv: inner axes d and S differ */
int opgraph_validate(const opgraph *g, const char *text, unsigned ctx, opgraph_shapes *shapes,
                     char *why, size_t why_n);

/* Size of an axis for the given lengths and dims. */
int64_t opgraph_axis_size(int32_t axis, int64_t len_q, int64_t len_k, int64_t dim_qk,
                          int64_t dim_v);

/* Multiply-adds of one head: the sum over matmul nodes of
 * rows x inner x cols at full lengths (masks save nothing in this count);
 * elementwise ops, softmax, scale and transpose count 0, as the softmax
 * plugin does not count its exps. shapes from opgraph_validate. */
double opgraph_macs(const opgraph *g, const opgraph_shapes *shapes, int64_t len_q,
                    int64_t len_k, int64_t dim_qk, int64_t dim_v);

/* The elementwise primitives, one definition for every evaluator: a unary
 * op of x (scale: SCALE's factor), and a binary op of a and b. */
float opgraph_sigmoid(float x);
float opgraph_unary(int32_t op, float x, float scale);
float opgraph_binary(int32_t op, float a, float b);

#endif
