/* The parts of RankNAS (spec/search.md) that are plain functions of their
 * inputs: the ranking-stability stop rule, which genes a predictor feature
 * stands for, and the search-space pruning built on that. Compiled into the
 * ranknas plugin and its test; nothing here is exported.
 *
 * Features are host->arch_features' vector: first the summary features
 * (HAT's ten for seq2seq spaces: encoder E, L, mean FFN, mean heads, decoder
 * E, L, mean FFN, mean heads, mean en-de heads, mean En-De Connect; for
 * one-stack spaces E, L, mean FFN, mean heads, mean attention choice), then
 * per-layer genes up to each stack's largest depth: FFN, heads, attention,
 * block, activation, and for seq2seq decoder layers also en-de heads, en-de
 * attention and En-De Connect.
 *
 * Pruning, precisely: a feature stands for genes: a summary feature for its
 * gene in every layer of its stack (embedding dim and depth for themselves),
 * a per-layer feature for that one gene and for its stack's depth (the
 * feature is 0 while its layer is inactive, so it measures depth too).
 * The search keeps the genes of the top-k features by importance; every
 * other gene, in every layer including the inactive ones, is copied from a
 * reference arch — the collected sample that the metric ranker scores best
 * among those meeting the constraints (the "best-ranked values"). */
#ifndef ETNAS_PLUGINS_RANKNAS_PRUNE_H
#define ETNAS_PLUGINS_RANKNAS_PRUNE_H

#include <stdint.h>

#include <etnas/etnas.h>

/* ---- the stop rule ---- */

typedef struct stop_rule {
    double threshold; /* stop when tau > threshold (0.9) */
    int64_t patience; /* or when tau has not beaten its best for this many chunks in a row */
} stop_rule;

typedef struct stop_state {
    double best_tau;   /* best tau so far (-INFINITY before the first) */
    int64_t since_best; /* chunks in a row without a better tau */
} stop_state;

void stop_state_init(stop_state *s);
/* Takes the tau between the rankings of two successive chunks (NAN when it
 * is undefined, e.g. a constant ranking, which never counts as better);
 * returns 1 when training should stop. */
int stop_update(stop_state *s, const stop_rule *rule, double tau);

/* ---- genes and features ---- */

enum {
    GENE_FFN, GENE_HEADS, GENE_ATTN, GENE_BLOCK, GENE_ACT, GENE_XHEADS, GENE_XATTN, GENE_CONNECT,
    GENE_KINDS
};

/* Which genes a search may change: [stack 0 enc, 1 dec]. */
typedef struct gene_mask {
    uint8_t embed[2], layers[2];
    uint8_t layer[2][ET_MAX_LAYERS][GENE_KINDS];
} gene_mask;

/* Summary features of the space (10 for seq2seq, else 5). */
int32_t prune_summary_count(const et_space *s);
/* Total features (host->arch_features' count). */
int32_t prune_feature_count(const et_space *s);
/* Name of feature i into buf, e.g. "enc_ffn_mean", "enc3_attn", "dec0_connect". */
void prune_feature_name(const et_space *s, int32_t i, char *buf, size_t n);
/* Sets in m the genes that feature i stands for. */
void prune_feature_genes(const et_space *s, int32_t i, gene_mask *m);
/* Copies into arch every gene that `searched` does not mark, from ref. */
void prune_apply(const gene_mask *searched, const et_arch *ref, et_arch *arch);

#endif
