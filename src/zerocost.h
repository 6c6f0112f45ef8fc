/* Zero-cost proxies (Abdelfattah et al., ICLR 2021; spec/search.md): scores
 * of an architecture from one minibatch at initialisation, and LTS's
 * non-embedding parameter count (Javaheripi et al., 2022).
 *   grad_norm = sum over weight tensors of ||dL/dW||_2
 *   snip      = sum |W * dL/dW|
 *   synflow   = sum W * dR/dW with every weight replaced by |W|, inputs all
 *               ones (token models keep their tokens) and R = sum of outputs
 *   jacob_cov = -sum_i (log(l_i + k) + 1 / (l_i + k)), l the eigenvalues of
 *               the correlation matrix of the per-example input Jacobians
 *               d(sum of outputs)/d input, k = 1e-5
 * Sums run over the bound slices of the weight matrices (decay = 1 tensors:
 * no norms, biases or embeddings). */
#ifndef ETNAS_CORE_ZEROCOST_H
#define ETNAS_CORE_ZEROCOST_H

#include <stdint.h>

#include "model.h"

typedef enum et_zc_kind {
    ET_ZC_GRAD_NORM = 0,
    ET_ZC_SNIP = 1,
    ET_ZC_SYNFLOW = 2,
    ET_ZC_JACOB_COV = 3,
    ET_ZC_KINDS = 4
} et_zc_kind;

/* "grad_norm", ... -> kind; -1 for an unknown name. */
int et_zc_kind_parse(const char *name);
const char *et_zc_kind_name(int kind);

/* Score `arch` on batch b: the model's parameters are re-initialised with
 * `seed` first (and left so), the arch bound for b. */
int et_zerocost(et_model *m, const et_arch *arch, const et_batch *b, int kind, uint64_t seed,
                double *score, char **err);

/* LTS: parameters of the bound arch without embeddings, positions, the
 * class token and the classifier head; decoder layers only for token
 * models with a decoder. Millions. */
double et_zerocost_lts(const et_model *m);

/* Eigenvalues of a symmetric n x n matrix a (row-major, overwritten) by
 * cyclic Jacobi rotations, into ev (n). */
void et_sym_eigenvalues(double *a, int32_t n, double *ev);

#endif
