/* RankNAS's plain parts (plugins/search/ranknas_prune.h): the early stop
 * fires on scripted Kendall tau sequences; the feature layout the pruning
 * assumes is the core's, name for name; pruning copies exactly the genes it
 * does not search; on a synthetic target the importance keeps the
 * informative features, whose genes the pruned search then keeps; and the
 * ranker of the quickstart's few dozen samples ranks fresh archs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

#include "inifile.h"
#include "ranker.h"
#include "ranknas_prune.h"
#include "space.h"
#include "stats.h"
#include "testutil.h"

static const char *const enc_space =
    "encoder_embed_dim = 16, 32, 48\nencoder_layers = 2..4\nencoder_ffn_dim = 16, 32, 64\n"
    "encoder_heads = 1, 2, 4\nencoder_attention = softmax, cosformer\n"
    "encoder_activation = relu, gelu\nhead_dim = 4\n";

static const char *const seq_space =
    "encoder_embed_dim = 640, 512\nencoder_layers = 6\nencoder_ffn_dim = 3072, 2048, 1024\n"
    "encoder_heads = 8, 4\nencoder_attention = softmax, cosformer\n"
    "decoder_embed_dim = 640, 512\ndecoder_layers = 1..6\n"
    "decoder_ffn_dim = 3072, 2048, 1024\ndecoder_heads = 8, 4\n"
    "decoder_attention = softmax, cosformer\ndecoder_cross_heads = 8, 4\n"
    "decoder_connect = 1, 2, 3\nqkv_dim = 512\n";

/* Index of the first step at which the rule stops (1-based), 0 for none. */
static int stops_at(const double *tau, int n, double threshold, int64_t patience)
{
    stop_rule rule = {threshold, patience};
    stop_state s;
    stop_state_init(&s);
    for (int i = 0; i < n; i++)
        if (stop_update(&s, &rule, tau[i]))
            return i + 1;
    return 0;
}

Test(ranknas, early_stop_on_scripted_tau)
{
    /* above the threshold: stop there */
    double a[] = {0.2, 0.5, 0.91, 0.3};
    cr_assert_eq(stops_at(a, 4, 0.9, 3), 3);
    /* exactly at the threshold is not above it */
    double b[] = {0.9, 0.9, 0.9};
    cr_assert_eq(stops_at(b, 3, 0.9, 5), 0);
    /* rising tau never runs out of patience */
    double c[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
    cr_assert_eq(stops_at(c, 6, 0.9, 1), 0);
    /* patience 2: the best is 0.6 at step 2; steps 3 and 4 do not beat it */
    double d[] = {0.4, 0.6, 0.55, 0.6, 0.7};
    cr_assert_eq(stops_at(d, 5, 0.9, 2), 4);
    /* a better tau resets the count */
    double e[] = {0.4, 0.3, 0.5, 0.45, 0.2};
    cr_assert_eq(stops_at(e, 5, 0.9, 2), 5);
    /* an undefined tau (constant ranking) never counts as better */
    double f[] = {NAN, NAN};
    cr_assert_eq(stops_at(f, 2, 0.9, 2), 2);
}

/* The pruning reads host->arch_features by position: its layout and names
 * must be the core's. */
static void same_layout(const char *body)
{
    et_space s = tu_space(body);
    int32_t n = et_arch_feature_count(&s);
    cr_assert_eq(prune_feature_count(&s), n);
    for (int32_t i = 0; i < n; i++) {
        char name[64];
        prune_feature_name(&s, i, name, sizeof name);
        cr_assert_str_eq(name, et_arch_feature_name(&s, i), "feature %d", i);
    }
}

Test(ranknas, feature_layout_is_the_cores)
{
    same_layout(enc_space);
    same_layout(seq_space);
}

/* Changing only the genes a feature stands for changes that feature (and
 * features of the same genes), never a feature whose genes are fixed. */
Test(ranknas, prune_apply_copies_the_unsearched_genes)
{
    et_space s = tu_space(seq_space);
    int32_t nf = et_arch_feature_count(&s);
    et_rng rng = et_rng_from_seed(5);
    for (int32_t i = 0; i < nf; i++) {
        gene_mask m;
        memset(&m, 0, sizeof m);
        prune_feature_genes(&s, i, &m);
        for (int trial = 0; trial < 20; trial++) {
            et_arch ref, a;
            et_arch_sample(&s, &rng, &ref);
            et_arch_sample(&s, &rng, &a);
            prune_apply(&m, &ref, &a);
            /* every unsearched gene is the reference's */
            for (int st = 0; st < 2; st++) {
                const et_stack_arch *x = st ? &a.dec : &a.enc, *y = st ? &ref.dec : &ref.enc;
                if (!m.embed[st])
                    cr_assert_eq(x->embed_dim, y->embed_dim);
                if (!m.layers[st])
                    cr_assert_eq(x->layers, y->layers);
                for (int32_t l = 0; l < ET_MAX_LAYERS; l++) {
                    if (!m.layer[st][l][GENE_FFN])
                        cr_assert_eq(x->layer[l].ffn_dim, y->layer[l].ffn_dim);
                    if (!m.layer[st][l][GENE_HEADS])
                        cr_assert_eq(x->layer[l].heads, y->layer[l].heads);
                    if (!m.layer[st][l][GENE_ATTN])
                        cr_assert_eq(x->layer[l].attention, y->layer[l].attention);
                    if (!m.layer[st][l][GENE_CONNECT])
                        cr_assert_eq(x->layer[l].connect, y->layer[l].connect);
                    if (!m.layer[st][l][GENE_XHEADS])
                        cr_assert_eq(x->layer[l].cross_heads, y->layer[l].cross_heads);
                }
            }
        }
        /* the feature moves with its genes: some draw changes it */
        float fr[1024], fa[1024];
        int moved = 0;
        for (int trial = 0; trial < 200 && !moved; trial++) {
            et_arch ref, a;
            et_arch_sample(&s, &rng, &ref);
            et_arch_sample(&s, &rng, &a);
            prune_apply(&m, &ref, &a);
            et_arch_features(&s, &ref, fr);
            et_arch_features(&s, &a, fa);
            moved = fr[i] != fa[i];
        }
        char name[64];
        prune_feature_name(&s, i, name, sizeof name);
        int constant = strstr(name, "xattn") || strstr(name, "block") || strstr(name, "act") ||
                       !strcmp(name, "enc_layers");
        if (!constant)
            cr_assert(moved, "feature %s never moved with its genes searched", name);
    }
}

/* A target of a few genes only: the top 4 features by |tau| stand for them
 * (the fourth is the mean FFN, which layer 0's FFN moves). */
Test(ranknas, importance_keeps_the_informative_features)
{
    et_space s = tu_space(enc_space);
    int32_t f = et_arch_feature_count(&s);
    enum { N = 400 };
    float *x = malloc(sizeof *x * (size_t)(N * f)), y[N];
    cr_assert_not_null(x);
    et_rng rng = et_rng_from_seed(9);
    for (int i = 0; i < N; i++) {
        et_arch a;
        et_arch_sample(&s, &rng, &a);
        et_arch_features(&s, &a, x + (size_t)i * (size_t)f);
        y[i] = (float)(a.enc.embed_dim + 0.5 * a.enc.layer[0].ffn_dim +
                       24.0 * a.enc.layer[1].attention + 0.1 * et_rng_uniform(&rng));
    }
    double imp[512];
    char *err = NULL;
    cr_assert_eq(ranker_tau_importance(x, y, N, f, imp, &err), 0, "%s", err);
    int64_t idx[4];
    cr_assert_eq(ranker_top_k(imp, f, 4, idx), 4);
    gene_mask m;
    memset(&m, 0, sizeof m);
    for (int k = 0; k < 4; k++)
        prune_feature_genes(&s, (int32_t)idx[k], &m);
    cr_assert(m.embed[0], "the embedding dim was pruned");
    cr_assert(m.layer[0][0][GENE_FFN], "layer 0's FFN dim was pruned");
    cr_assert(m.layer[0][1][GENE_ATTN], "layer 1's attention was pruned");
    cr_assert(!m.layer[0][2][GENE_HEADS] && !m.layer[0][0][GENE_ACT],
              "an uninformative gene was kept");
    free(x);
}

static const char *const quickstart_space =
    "encoder_embed_dim = 48, 64\nencoder_layers = 2..4\nencoder_ffn_dim = 96, 128, 192\n"
    "encoder_heads = 2, 4\nencoder_attention = softmax, cosformer\nencoder_activation = gelu\n"
    "head_dim = 16\npooling = cls\n";

/* A supernet accuracy of the quickstart's kind: near 0.8, a spread of about
 * 0.01 from a few genes, and noise. */
static double toy_accuracy(const et_arch *a, et_rng *rng, double *truth)
{
    double t = (a->enc.embed_dim == 64) + 0.5 * (a->enc.layers - 2);
    for (int32_t l = 0; l < a->enc.layers; l++)
        t += 0.3 * (a->enc.layer[l].ffn_dim == 192) - 0.4 * a->enc.layer[l].attention;
    *truth = t;
    return 0.8 + 0.005 * (t + 0.5 * et_rng_normal(rng));
}

/* The quickstart's ranker data in miniature: 36 training archs of its space
 * (40 samples, some held out), its 25 features. The ranker with ranknas's
 * defaults (5 folds choose the rounds, at least 50) must rank 500 fresh
 * archs with at least half the tau that their noiseless accuracy reaches,
 * and clearly better than the old training (a 4-row split stopping from
 * round 1). Means over five data sets. */
Test(ranknas, ranker_of_a_few_dozen_samples_ranks_fresh_archs)
{
    et_space s = tu_space(quickstart_space);
    int32_t f = et_arch_feature_count(&s);
    cr_assert_eq(f, 25);
    enum { N = 36, NT = 500, SETS = 5 };
    float *x = malloc(sizeof *x * (size_t)(N * f)), *xt = malloc(sizeof *xt * (size_t)(NT * f));
    float y[N], s_t[NT];
    double yt[NT], truth[NT], score[NT], scratch, best = 0, tau[2] = {0, 0}, rounds = 0;
    cr_assert(x && xt);
    for (int set = 0; set < SETS; set++) {
        et_rng rng = et_rng_from_seed(12 + (uint64_t)set);
        for (int i = 0; i < N; i++) {
            et_arch a;
            et_arch_sample(&s, &rng, &a);
            et_arch_features(&s, &a, x + (size_t)i * (size_t)f);
            y[i] = (float)toy_accuracy(&a, &rng, &scratch);
        }
        for (int i = 0; i < NT; i++) {
            et_arch a;
            et_arch_sample(&s, &rng, &a);
            et_arch_features(&s, &a, xt + (size_t)i * (size_t)f);
            yt[i] = toy_accuracy(&a, &rng, &truth[i]);
        }
        best += et_kendall_tau(truth, yt, NT) / SETS;
        for (int way = 0; way < 2; way++) {
            ranker_config cfg;
            ranker_config_default(&cfg);
            cfg.seed = (uint64_t)set;
            if (way == 1) { /* the old training */
                cfg.folds = 0;
                cfg.min_rounds = 1;
            }
            ranker *r = NULL;
            char *err = NULL;
            cr_assert_eq(ranker_train(&cfg, x, y, N, f, &r, &err), 0, "%s", err);
            cr_assert_eq(ranker_predict(r, xt, NT, s_t, &err), 0, "%s", err);
            for (int i = 0; i < NT; i++)
                score[i] = s_t[i];
            tau[way] += et_kendall_tau(score, yt, NT) / SETS;
            if (way == 0)
                rounds += (double)ranker_rounds(r) / SETS;
            ranker_destroy(r);
        }
    }
    cr_log_info("fresh-arch tau %.3f (%.1f rounds), the old way %.3f, attainable %.3f", tau[0],
                rounds, tau[1], best);
    cr_assert_geq(rounds, 50.0);
    cr_assert_gt(tau[0], 0.5 * best, "fresh-arch tau %.3f, attainable %.3f", tau[0], best);
    cr_assert_gt(tau[0], tau[1] + 0.05, "fresh-arch tau %.3f, the old way %.3f", tau[0], tau[1]);
    free(x);
    free(xt);
}
