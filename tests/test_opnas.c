/* OP-NAS's parts apart from the host (plugins/search): UCB bookkeeping on
 * a scripted reward sequence (selections and values against hand-computed
 * ones), graph mutations (every listed child is canonical, valid for its
 * attention mode, within the size limit, new and distinct; named children
 * present, invalid ones absent; commutative duplicates merged), the formula
 * form, and the plain evaluator (standard graph = softmax attention within
 * 1e-5, causal too; non-finite outputs detected). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_eval.h"
#include "graph_mutate.h"
#include "opgraph.h"
#include "ucb.h"

#define STANDARD "matmul(softmax(scale(matmul(Q,transpose(K)))),V)"
#define SELF (OPGRAPH_CTX_SAME_LEN | OPGRAPH_CTX_SAME_DIM)
#define CAUSAL (SELF | OPGRAPH_CTX_CAUSAL)

/* ------------------------------------------------------------------ UCB */

Test(ucb, scripted_rewards)
{
    ucb u;
    cr_assert_eq(ucb_init(&u, 3, 1.0), 0);
    /* untried arms come first, lowest index first without an rng */
    const double rewards[] = {1.0, 0.0, 0.5};
    for (int32_t i = 0; i < 3; i++) {
        cr_assert_eq(ucb_value(&u, i), INFINITY);
        int32_t a = ucb_select(&u, NULL, NULL);
        cr_assert_eq(a, i, "step %d chose %d", i, a);
        ucb_update(&u, a, rewards[a]);
    }
    /* N = 3: u = mu + sqrt(2 ln 3 / 1) */
    double b = sqrt(2.0 * log(3.0));
    cr_assert_float_eq(ucb_value(&u, 0), 1.0 + b, 1e-12);
    cr_assert_float_eq(ucb_value(&u, 1), 0.0 + b, 1e-12);
    cr_assert_float_eq(ucb_value(&u, 2), 0.5 + b, 1e-12);
    cr_assert_eq(ucb_select(&u, NULL, NULL), 0);
    ucb_update(&u, 0, -1.0);
    /* N = 4: arm 0 has mean 0 over 2 tries, arm 2 mean 0.5 over 1 */
    cr_assert_float_eq(ucb_mean(&u, 0), 0.0, 1e-12);
    cr_assert_float_eq(ucb_value(&u, 0), sqrt(2.0 * log(4.0) / 2.0), 1e-12);
    cr_assert_float_eq(ucb_value(&u, 2), 0.5 + sqrt(2.0 * log(4.0)), 1e-12);
    cr_assert_eq(ucb_select(&u, NULL, NULL), 2);
    ucb_update(&u, 2, 0.25);
    cr_assert_float_eq(ucb_mean(&u, 2), 0.375, 1e-12);
    cr_assert_eq(u.total, 5);
    cr_assert_eq(u.tries[0], 2);
    cr_assert_eq(u.tries[1], 1);
    cr_assert_eq(u.tries[2], 2);
    /* N = 5: arm 1 (mean 0, 1 try) leads: sqrt(2 ln 5) = 1.794 against
     * 0.375 + 1.269 and 0 + 1.269 */
    cr_assert_eq(ucb_select(&u, NULL, NULL), 1);
    /* a mask removes it */
    unsigned char allowed[3] = {1, 0, 1};
    cr_assert_eq(ucb_select(&u, allowed, NULL), 2);
    unsigned char none[3] = {0, 0, 0};
    cr_assert_eq(ucb_select(&u, none, NULL), -1);
}

Test(ucb, alpha_zero_is_greedy_and_bad_rewards_count_zero)
{
    ucb u;
    cr_assert_eq(ucb_init(&u, 2, 0.0), 0);
    ucb_update(&u, 0, 0.2);
    ucb_update(&u, 1, 0.3);
    for (int k = 0; k < 5; k++)
        cr_assert_eq(ucb_select(&u, NULL, NULL), 1);
    ucb_update(&u, 1, NAN);
    cr_assert_float_eq(ucb_mean(&u, 1), 0.15, 1e-12);
    ucb_update(&u, 1, -INFINITY);
    cr_assert_float_eq(ucb_mean(&u, 1), 0.1, 1e-12);
    cr_assert_eq(ucb_select(&u, NULL, NULL), 0);
    cr_assert_eq(ucb_init(&u, 0, 1.0), -1);
    cr_assert_eq(ucb_init(&u, UCB_MAX_ARMS + 1, 1.0), -1);
    cr_assert_eq(ucb_init(&u, 2, -1.0), -1);
    cr_assert_eq(ucb_init(&u, 2, NAN), -1);
}

Test(ucb, ties_are_broken_by_the_stream_and_replay)
{
    ucb u;
    ucb_init(&u, 4, 1.0);
    int count[4] = {0};
    et_rng r = et_rng_from_seed(5);
    for (int k = 0; k < 4000; k++)
        count[ucb_select(&u, NULL, &r)]++;
    for (int i = 0; i < 4; i++)
        cr_assert(count[i] > 850 && count[i] < 1150, "arm %d chosen %d times of 4000", i,
                  count[i]);
    /* the same stream, the same choices */
    et_rng a = et_rng_from_seed(11), b = et_rng_from_seed(11);
    for (int k = 0; k < 50; k++)
        cr_assert_eq(ucb_select(&u, NULL, &a), ucb_select(&u, NULL, &b));
    /* no tie: the stream is not drawn from */
    ucb_update(&u, 0, 1.0);
    ucb_update(&u, 1, 1.0);
    ucb_update(&u, 2, 1.0);
    et_rng c = et_rng_from_seed(2);
    cr_assert_eq(ucb_select(&u, NULL, &c), 3);
    cr_assert_eq(c.counter, 0);
}

/* ------------------------------------------------------------ mutations */

static opgraph parse(const char *text)
{
    opgraph g;
    char why[2048];
    int rc = opgraph_parse(text, &g, why, sizeof why);
    cr_assert_eq(rc, 0, "%s", why);
    return g;
}

static int listed(const opgraph *list, int32_t n, const char *text)
{
    opgraph g = parse(text);
    uint64_t h = opgraph_hash(&g);
    for (int32_t i = 0; i < n; i++)
        if (opgraph_hash(&list[i]) == h)
            return 1;
    return 0;
}

/* Every child of every op and edit kind: canonical, meeting the rules, new
 * and pairwise distinct, with the op count the edit allows. */
static void check_all_edits(const char *text, graph_rules r, int *total)
{
    opgraph g = parse(text);
    opgraph canon;
    cr_assert_eq(opgraph_canonicalize(&g, &canon, NULL, 0), 0);
    uint64_t self = opgraph_hash(&g);
    int32_t ops = graph_op_count(&canon);
    for (int32_t arm = 0; arm < GRAPH_OPS; arm++) {
        int32_t op = GRAPH_OP_OF_ARM(arm);
        for (int32_t e = 0; e < GRAPH_EDIT_COUNT; e++) {
            opgraph *list;
            int32_t n;
            cr_assert_eq(graph_edits(&g, e, op, &r, &list, &n), 0);
            for (int32_t i = 0; i < n; i++) {
                char why[2048], t[OPGRAPH_MAX_TEXT];
                opgraph_format(&list[i], t, sizeof t, NULL);
                cr_assert_eq(graph_check(&list[i], &r, why, sizeof why), 0,
                             "%s %s of %s gave %s: %s", graph_edit_name(e), opgraph_op_name(op),
                             text, t, why);
                opgraph c;
                cr_assert_eq(opgraph_canonicalize(&list[i], &c, NULL, 0), 0);
                cr_assert(c.n == list[i].n &&
                              !memcmp(c.node, list[i].node, sizeof c.node[0] * (size_t)c.n),
                          "%s is not canonical", t);
                uint64_t h = opgraph_hash(&list[i]);
                cr_assert_neq(h, self, "%s %s of %s gave the graph back", graph_edit_name(e),
                              opgraph_op_name(op), text);
                for (int32_t j = 0; j < i; j++)
                    cr_assert_neq(opgraph_hash(&list[j]), h, "%s listed twice", t);
                int32_t k = graph_op_count(&list[i]);
                if (e == GRAPH_EDIT_REPLACE)
                    cr_assert_leq(k, ops, "replace grew %s", t);
                else if (e == GRAPH_EDIT_INSERT)
                    cr_assert_leq(k, ops + 1, "insert added more than one op: %s", t);
                else
                    cr_assert_lt(k, ops, "delete left %s", t);
            }
            *total += n;
            free(list);
        }
    }
}

Test(graph_mutate, every_child_is_valid_new_and_distinct)
{
    int total = 0;
    check_all_edits(STANDARD, (graph_rules){SELF, 10, 0}, &total);
    check_all_edits(STANDARD, (graph_rules){CAUSAL, 10, 0}, &total);
    check_all_edits("matmul(softmax(mul(Q,K)),V)", (graph_rules){SELF, 10, 0}, &total);
    check_all_edits("add(V,Q)", (graph_rules){SELF, 10, 0}, &total);
    check_all_edits("matmul(neg(logsigmoid(matmul(Q,transpose(K)))),Q)",
                    (graph_rules){SELF, 10, 0}, &total);
    cr_assert_gt(total, 100, "only %d children in all", total);
}

Test(graph_mutate, named_children)
{
    graph_rules r = {SELF, 10, 0};
    opgraph g = parse(STANDARD), *list;
    int32_t n;
    cr_assert_eq(graph_edits(&g, GRAPH_EDIT_REPLACE, OPGRAPH_OP_SIGMOID, &r, &list, &n), 0);
    cr_assert(listed(list, n, "matmul(sigmoid(scale(matmul(Q,transpose(K)))),V)"));
    /* softmax and scale are the only unary nodes but transpose, which
     * sigmoid may replace too only when shapes allow: sigmoid(K) is S x d
     * and matmul(Q, sigmoid(K)) is not L x ... so it is absent */
    cr_assert_not(listed(list, n, "matmul(softmax(scale(matmul(Q,sigmoid(K)))),V)"));
    cr_assert_eq(n, 2);
    free(list);

    cr_assert_eq(graph_edits(&g, GRAPH_EDIT_DELETE, OPGRAPH_OP_SCALE, &r, &list, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert(listed(list, n, "matmul(softmax(matmul(Q,transpose(K))),V)"));
    free(list);
    /* without its transpose the inner matmul is L x d times S x d */
    cr_assert_eq(graph_edits(&g, GRAPH_EDIT_DELETE, OPGRAPH_OP_TRANSPOSE, &r, &list, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_null(list);

    cr_assert_eq(graph_edits(&g, GRAPH_EDIT_INSERT, OPGRAPH_OP_NEG, &r, &list, &n), 0);
    cr_assert(listed(list, n, "neg(matmul(softmax(scale(matmul(Q,transpose(K)))),V))"));
    cr_assert(listed(list, n, "matmul(softmax(scale(matmul(Q,transpose(neg(K))))),neg(V))") == 0);
    cr_assert(listed(list, n, "matmul(softmax(scale(matmul(neg(Q),transpose(K)))),V)"));
    free(list);

    /* deleting a binary op keeps either operand; what only the other fed
     * goes with it */
    opgraph a = parse("add(matmul(softmax(scale(matmul(Q,transpose(K)))),V),V)");
    cr_assert_eq(graph_edits(&a, GRAPH_EDIT_DELETE, OPGRAPH_OP_ADD, &r, &list, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert(listed(list, n, STANDARD));
    cr_assert(listed(list, n, "V"));
    free(list);
}

Test(graph_mutate, commutative_duplicates_are_one_child)
{
    graph_rules r = {SELF, 10, 0};
    opgraph g = parse("matmul(softmax(scale(matmul(Q,transpose(K)))),V)"), *list;
    int32_t n;
    cr_assert_eq(graph_edits(&g, GRAPH_EDIT_INSERT, OPGRAPH_OP_ADD, &r, &list, &n), 0);
    /* add(V, Q) at the output and add(Q, V) at the output are one graph */
    cr_assert(listed(list, n, "add(matmul(softmax(scale(matmul(Q,transpose(K)))),V),Q)"));
    cr_assert(listed(list, n, "add(Q,matmul(softmax(scale(matmul(Q,transpose(K)))),V))"));
    for (int32_t i = 0; i < n; i++)
        for (int32_t j = 0; j < i; j++)
            cr_assert_neq(opgraph_hash(&list[i]), opgraph_hash(&list[j]));
    free(list);
    /* max(x,x) is x under another name */
    cr_assert_eq(graph_edits(&g, GRAPH_EDIT_INSERT, OPGRAPH_OP_MAX, &r, &list, &n), 0);
    cr_assert_gt(n, 0);
    cr_assert_not(listed(list, n, "matmul(softmax(scale(matmul(max(Q,Q),transpose(K)))),V)"));
    cr_assert(listed(list, n, "matmul(softmax(scale(matmul(max(Q,K),transpose(K)))),V)"));
    for (int32_t i = 0; i < n; i++)
        for (int32_t k = 0; k < list[i].n; k++)
            if (list[i].node[k].op == OPGRAPH_OP_MAX)
                cr_assert_neq(list[i].node[k].arg[0], list[i].node[k].arg[1]);
    free(list);
    opgraph x = parse("add(Q,K)"), y = parse("add(K,Q)");
    cr_assert_eq(opgraph_hash(&x), opgraph_hash(&y));
}

Test(graph_mutate, rules_bound_children)
{
    opgraph g = parse(STANDARD), *list;
    int32_t n;
    /* five ops already: no insert fits a limit of five */
    graph_rules tight = {SELF, 5, 0};
    for (int32_t arm = 0; arm < GRAPH_OPS; arm++) {
        cr_assert_eq(graph_edits(&g, GRAPH_EDIT_INSERT, GRAPH_OP_OF_ARM(arm), &tight, &list, &n),
                     0);
        cr_assert_eq(n, 0);
    }
    /* no insert keeps the text within its length, a delete does */
    graph_rules short_text = {SELF, 10, (int32_t)strlen(STANDARD)};
    cr_assert_eq(graph_check(&g, &short_text, NULL, 0), 0);
    for (int32_t arm = 0; arm < GRAPH_OPS; arm++) {
        cr_assert_eq(graph_edits(&g, GRAPH_EDIT_INSERT, GRAPH_OP_OF_ARM(arm), &short_text, &list,
                                 &n), 0);
        cr_assert_eq(n, 0);
    }
    cr_assert_eq(graph_edits(&g, GRAPH_EDIT_DELETE, OPGRAPH_OP_SCALE, &short_text, &list, &n), 0);
    cr_assert_eq(n, 1);
    free(list);
    short_text.max_text--;
    char why[1024];
    cr_assert_neq(graph_check(&g, &short_text, why, sizeof why), 0);
    char want[64];
    snprintf(want, sizeof want, "%d characters, more than the %d allowed", (int)strlen(STANDARD),
             (int)strlen(STANDARD) - 1);
    cr_assert(strstr(why, want), "%s", why);
    /* causal: no child sums over keys into a value every query sees */
    graph_rules causal = {CAUSAL, 10, 0};
    opgraph lin = parse("matmul(Q,matmul(transpose(K),V))");
    cr_assert_neq(graph_check(&lin, &causal, why, sizeof why), 0);
    cr_assert_eq(graph_check(&lin, &(graph_rules){SELF, 10, 0}, NULL, 0), 0);
    cr_assert_eq(graph_edits(&g, GRAPH_EDIT_INSERT, OPGRAPH_OP_MATMUL, &causal, &list, &n), 0);
    for (int32_t i = 0; i < n; i++)
        cr_assert_eq(opgraph_validate(&list[i], NULL, CAUSAL, NULL, NULL, 0), 0);
    free(list);
    /* bad requests */
    cr_assert_lt(graph_edits(&g, GRAPH_EDIT_INSERT, OPGRAPH_OP_Q, &causal, &list, &n), 0);
    cr_assert_lt(graph_edits(&g, GRAPH_EDIT_COUNT, OPGRAPH_OP_NEG, &causal, &list, &n), 0);
}

Test(graph_mutate, check_reports_dead_nodes_and_size)
{
    graph_rules r = {SELF, 3, 0};
    char why[1024];
    opgraph g = parse(STANDARD);
    cr_assert_neq(graph_check(&g, &r, why, sizeof why), 0);
    cr_assert(strstr(why, "5 ops, more than the 3 allowed"), "%s", why);
    /* a node the output does not use */
    opgraph d = parse("add(Q,V)");
    d.node[d.n] = d.node[d.n - 1];
    d.node[d.n - 1] = (opgraph_node){OPGRAPH_OP_NEG, {0, -1}, 0};
    d.n++;
    r.max_ops = 10;
    cr_assert_neq(graph_check(&d, &r, why, sizeof why), 0);
    cr_assert(strstr(why, "dead"), "%s", why);
}

Test(graph_mutate, formulas)
{
    char buf[512];
    opgraph g = parse(STANDARD);
    cr_assert_gt(graph_formula(&g, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "softmax(Q @ K^T / sqrt(d)) @ V");
    g = parse("matmul(softmax(scale(matmul(Q,transpose(neg(logsigmoid(K)))))),Q)");
    graph_formula(&g, buf, sizeof buf);
    cr_assert_str_eq(buf, "softmax(Q @ (-logsigmoid(K))^T / sqrt(d)) @ Q");
    g = parse("matmul(add(Q,K),mul(transpose(V),add(K,V)))");
    graph_formula(&g, buf, sizeof buf);
    cr_assert_str_eq(buf, "(Q + K) @ (V^T * (K + V))");
    g = parse("neg(add(max(Q,K),matmul(Q,matmul(transpose(K),V))))");
    graph_formula(&g, buf, sizeof buf);
    cr_assert_str_eq(buf, "-(max(Q, K) + Q @ (K^T @ V))");
    cr_assert_eq(graph_formula(&g, buf, 8), -1);
}

/* ------------------------------------------------------------- evaluator */

static void softmax_attention(const float *q, const float *k, const float *v, int n, int d,
                              int causal, float *out)
{
    for (int i = 0; i < n; i++) {
        double s[64], mx = -INFINITY, z = 0;
        int lim = causal ? i + 1 : n;
        for (int j = 0; j < lim; j++) {
            s[j] = 0;
            for (int c = 0; c < d; c++)
                s[j] += (double)q[i * d + c] * k[j * d + c];
            s[j] /= sqrt((double)d);
            mx = fmax(mx, s[j]);
        }
        for (int j = 0; j < lim; j++)
            z += s[j] = exp(s[j] - mx);
        for (int c = 0; c < d; c++) {
            double o = 0;
            for (int j = 0; j < lim; j++)
                o += s[j] / z * v[j * d + c];
            out[i * d + c] = (float)o;
        }
    }
}

Test(graph_eval, standard_graph_is_softmax_attention)
{
    enum { N = 7, D = 5 };
    float q[N * D], k[N * D], v[N * D], out[N * D], ref[N * D];
    et_rng r = et_rng_from_seed(3);
    for (int i = 0; i < N * D; i++) {
        q[i] = (float)et_rng_normal(&r);
        k[i] = (float)et_rng_normal(&r);
        v[i] = (float)et_rng_normal(&r);
    }
    opgraph g = parse(STANDARD);
    for (int causal = 0; causal < 2; causal++) {
        cr_assert_eq(graph_eval(&g, causal ? CAUSAL : SELF, N, D, q, k, v, out), 0);
        softmax_attention(q, k, v, N, D, causal, ref);
        for (int i = 0; i < N * D; i++)
            cr_assert_float_eq(out[i], ref[i], 1e-5 + 1e-5 * fabsf(ref[i]),
                               "causal %d entry %d: %g against %g", causal, i, out[i], ref[i]);
    }
    /* causal linear attention, bounded by rows: row i sums keys j <= i */
    opgraph lin = parse("matmul(matmul(Q,transpose(K)),V)");
    cr_assert_eq(graph_eval(&lin, CAUSAL, N, D, q, k, v, out), 0);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < D; c++) {
            double o = 0;
            for (int j = 0; j <= i; j++) {
                double s = 0;
                for (int t = 0; t < D; t++)
                    s += (double)q[i * D + t] * k[j * D + t];
                o += s * v[j * D + c];
            }
            cr_assert_float_eq(out[i * D + c], o, 1e-4 + 1e-5 * fabs(o));
        }
    /* a graph of the wrong mode is refused */
    opgraph un = parse("matmul(Q,matmul(transpose(K),V))");
    cr_assert_lt(graph_eval(&un, CAUSAL, N, D, q, k, v, out), 0);
}

Test(graph_eval, non_finite_outputs_are_detected)
{
    opgraph lin = parse("matmul(matmul(Q,transpose(K)),V)"), sm = parse(STANDARD);
    et_rng a = et_rng_from_seed(1), b = et_rng_from_seed(1), c = et_rng_from_seed(1);
    cr_assert_eq(graph_output_finite(&lin, SELF, 16, 16, 1.0, &a), 1);
    /* entries near 1e13: Q K^T near 1e26, times V past float's 3.4e38 */
    cr_assert_eq(graph_output_finite(&lin, SELF, 16, 16, 1e13, &b), 0);
    cr_assert_eq(graph_output_finite(&sm, SELF, 16, 16, 1e13, &c), 1);
}
