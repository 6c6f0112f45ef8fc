/* The shared kernel ("linear") attention core of spec/attention.md for ONE
 * (batch, head): given feature rows phi(q), phi(k) of any feature map, and
 * values v, it computes
 *   out_i = phi(q_i)^T KV / D(phi(q_i) . z)
 * with KV = sum_j phi(k_j) v_j^T, z = sum_j phi(k_j) over the valid keys
 * (bidirectional and cross) or over the valid keys j <= i (causal), its
 * backward, and a one-position-at-a-time decode step. cosFormer, Performer
 * and the linear Transformer compute their feature maps and call this:
 * on whole rows (et_kc_forward, et_kc_backward), or a block of rows at a
 * time from a map callback (et_kc_mapped_*) or their own loops over the
 * chunk steps, so that features never exist for a whole sequence.
 *
 * Matrices are row-major with a leading dimension (row stride, in floats),
 * so strided slices of the engine's buffers are used in place. Nothing here
 * allocates: scratch comes from `work` (et_kc_work_floats floats), and what
 * backward needs from forward goes to `saved` (et_kc_saved_floats floats).
 * Causal attention runs chunk by chunk with one r x dv running state, never a
 * state per position; backward uses chunked forward and reverse sums, never
 * "final state minus suffix" (fp32 cancellation grows with the length).
 *
 * Key padding: key rows j >= key_len are never read, so they count as zero
 * in the numerator and in the denominator, whatever they hold.
 *
 * The et_kc_naive_* functions are double-precision references (direct sums
 * and the plain recurrence) kept beside the fast path for the tests. */
#ifndef ETNAS_PLUGINS_KERNEL_CORE_H
#define ETNAS_PLUGINS_KERNEL_CORE_H

#include <stdint.h>

typedef enum et_kc_guard {
    ET_KC_GUARD_MAX = 0, /* D = max(den, eps); where the clamp is active dD/dden = 0 */
    ET_KC_GUARD_ADD = 1  /* D = den + eps */
} et_kc_guard;

/* The problem of one (batch, head). */
typedef struct et_kc_shape {
    int32_t len_q;   /* L query rows */
    int32_t len_k;   /* S key rows */
    int32_t key_len; /* valid keys, 0..S: rows >= key_len are padding (never read) */
    int32_t r;       /* feature dimension of phi */
    int32_t dim_v;   /* dv */
    int32_t causal;  /* 0: bidirectional or cross; 1: causal, query i sees keys j <= i (L == S) */
    int32_t chunk;   /* C: rows per chunk (causal blocks, backward row blocks); <= 0 means 64 */
    int32_t guard;   /* et_kc_guard */
    float eps;       /* the guard's epsilon */
} et_kc_shape;

/* Floats forward keeps for backward: den (L), the unguarded denominators. */
int64_t et_kc_saved_floats(const et_kc_shape *p);
/* Scratch floats of one forward or one backward call (one head). */
int64_t et_kc_work_floats(const et_kc_shape *p);

/* phq (L,r) row stride ldq, phk (S,r) ldk, v (S,dv) ldv -> out (L,dv) ldo;
 * saved (L) gets den. out must not alias the inputs. */
void et_kc_forward(const et_kc_shape *p, const float *phq, int64_t ldq, const float *phk,
                   int64_t ldk, const float *v, int64_t ldv, float *out, int64_t ldo, float *saved,
                   float *work);

/* dout (L,dv) -> dphq (L,r), dphk (S,r), dv (S,dv), all overwritten; the
 * padded key rows of dphk and dv are set to 0. out and saved are forward's.
 * The gradients must not alias the inputs. */
void et_kc_backward(const et_kc_shape *p, const float *phq, int64_t ldq, const float *phk,
                    int64_t ldk, const float *v, int64_t ldv, const float *out, int64_t ldo,
                    const float *dout, int64_t lddo, const float *saved, float *dphq,
                    int64_t lddq, float *dphk, int64_t lddk, float *dv, int64_t lddv, float *work);

/* Chunk steps: et_kc_forward and et_kc_backward are loops over these. A
 * caller whose feature rows are costly to keep (Performer: m of them per
 * row) runs the same loops and computes phi one chunk at a time, so its
 * working set stays a few chunks however long the sequence is.
 *
 * A state is S (r,dv) row-major followed by s (r), et_kc_state_floats
 * floats, the layout of the decode state, so a caller may rescale it. The
 * forward state holds KV and z (bidirectional, cross) or the prefix sums H
 * and z (causal); the backward state holds dKV and dz, or the suffix sums U
 * and w. A step given `n` rows reads rows 0..n-1 of each matrix at its
 * pointer; steps marked "n <= chunk" also take scratch of et_kc_step_floats
 * floats. In causal steps the rows of a chunk are queries and keys alike
 * and only its first kv key rows are valid (the others are never read). */
int64_t et_kc_state_floats(const et_kc_shape *p);
int64_t et_kc_step_floats(const et_kc_shape *p);
void et_kc_state_reset(const et_kc_shape *p, float *state);

/* Bidirectional and cross, any n: state += (phk^T v, colsum phk) over
 * phk (n,r) ldk and v (n,dv) ldv. */
void et_kc_keys_add(const et_kc_shape *p, float *state, int64_t n, const float *phk, int64_t ldk,
                    const float *v, int64_t ldv);
/* Any n: phq (n,r) ldq -> out (n,dv) ldo = phq KV / D(phq z), den (n) = phq z. */
void et_kc_queries_forward(const et_kc_shape *p, const float *state, int64_t n, const float *phq,
                           int64_t ldq, float *out, int64_t ldo, float *den);
/* n <= chunk query rows, with out (n,dv), dout (n,dv) and den (n) of forward:
 * dphq (n,r) = dnum KV^T + dden z^T, overwritten; dstate += (phq^T dnum,
 * phq^T dden). */
void et_kc_queries_backward(const et_kc_shape *p, const float *state, float *dstate, int64_t n,
                            const float *phq, int64_t ldq, const float *out, int64_t ldo,
                            const float *dout, int64_t lddo, const float *den, float *dphq,
                            int64_t lddq, float *work);
/* Any n valid key rows: dphk (n,r) = v dKV^T + 1 dz^T, dv (n,dv) = phk dKV,
 * both overwritten. */
void et_kc_keys_backward(const et_kc_shape *p, const float *dstate, int64_t n, const float *phk,
                         int64_t ldk, const float *v, int64_t ldv, float *dphk, int64_t lddk,
                         float *dv, int64_t lddv);

/* Causal, chunks in order, n <= chunk, `seen` valid keys in the state
 * before the chunk: out (n,dv) and den (n) of its rows, then the chunk's
 * valid keys join the state. */
void et_kc_causal_forward_step(const et_kc_shape *p, float *state, int64_t seen, int64_t n,
                               int64_t kv, const float *phq, int64_t ldq, const float *phk,
                               int64_t ldk, const float *v, int64_t ldv, float *out, int64_t ldo,
                               float *den, float *work);
/* Backward, first sweep, chunks in order as in the forward step:
 * dphq (n,r) = H dnum + dden z + tril(dnum V^T + dden 1^T) phk, overwritten;
 * then the chunk's valid keys join the state. */
void et_kc_causal_backward_queries(const et_kc_shape *p, float *state, int64_t seen, int64_t n,
                                   int64_t kv, const float *phk, int64_t ldk, const float *v,
                                   int64_t ldv, const float *out, int64_t ldo, const float *dout,
                                   int64_t lddo, const float *den, float *dphq, int64_t lddq,
                                   float *work);
/* Backward, second sweep, chunks in reverse order, `later` query rows in
 * dstate after the chunk: dphk, dv (n rows, those past kv set to 0) of the
 * chunk's keys, overwritten; then its queries join dstate. */
void et_kc_causal_backward_keys(const et_kc_shape *p, float *dstate, int64_t later, int64_t n,
                                int64_t kv, const float *phq, int64_t ldq, const float *phk,
                                int64_t ldk, const float *v, int64_t ldv, const float *out,
                                int64_t ldo, const float *dout, int64_t lddo, const float *den,
                                float *dphk, int64_t lddk, float *dv, int64_t lddv, float *work);

/* Chunked drivers for feature maps made a block of rows at a time: the
 * loops of et_kc_forward and et_kc_backward over the steps above, with each
 * block's features made by `map` into scratch just before the core uses
 * them and dropped after, so scratch is a few blocks of at most `chunk`
 * rows however long the sequences are (cosFormer, the linear Transformer).
 *
 * features: rows i0..i0+n-1 of the side's input -> phi (n,r), contiguous.
 * backward: phi (n,r) of those rows as features made them, dphi (n,r) (may
 *   be clobbered) -> the gradient of the side's input rows i0..i0+n-1,
 *   overwritten wherever the map keeps it.
 * Query blocks are chunks of the causal scan; key blocks (bidirectional,
 * cross) are at most `chunk` rows whatever L is. Only visible key rows are
 * ever asked for (j < key_len, and j < L in causal attention): the rows
 * past them are the caller's, and backward gives them no input gradient
 * (dv of them is set to 0 here). The features of a row are made once in
 * forward and once or twice in backward (the price of not keeping them),
 * so `features` must give the same rows the same values. */
typedef enum et_kc_side { ET_KC_SIDE_QUERY = 0, ET_KC_SIDE_KEY = 1 } et_kc_side;

typedef struct et_kc_map {
    void (*features)(void *ctx, et_kc_side side, int64_t i0, int64_t n, float *phi);
    void (*backward)(void *ctx, et_kc_side side, int64_t i0, int64_t n, const float *phi,
                     float *dphi);
    void *ctx;
} et_kc_map;

/* Scratch floats of one et_kc_mapped_forward or _backward call: the
 * states, the step scratch and three blocks (phi(q), phi(k), a gradient) of
 * min(chunk, max(L, S)) rows. It does not grow with L or S past chunk. */
int64_t et_kc_mapped_work_floats(const et_kc_shape *p);
/* map's rows, v (S,dv) ldv -> out (L,dv) ldo; saved (L) gets den, as in
 * et_kc_forward. */
void et_kc_mapped_forward(const et_kc_shape *p, const et_kc_map *map, const float *v,
                          int64_t ldv, float *out, int64_t ldo, float *saved, float *work);
/* dout (L,dv) -> map->backward for every query row and every visible key
 * row, and dv (S,dv) ldv, overwritten (padded rows 0); out, saved are
 * forward's. */
void et_kc_mapped_backward(const et_kc_shape *p, const et_kc_map *map, const float *v,
                           int64_t ldv, const float *out, int64_t ldo, const float *dout,
                           int64_t lddo, const float *saved, float *dv, int64_t lddv,
                           float *work);

/* Multiply-adds of one forward (spec/attention.md, Cost): r.dv.(L+S) + r.L,
 * or for causal 2N.r.dv + N.r + N.C.(r+dv). The feature map is not counted. */
double et_kc_macs(const et_kc_shape *p);

/* Incremental causal decoding. The state of one head is H (r,dv) row-major
 * followed by z (r): et_kc_decode_floats floats. Its layout is public so a
 * caller may rescale it (e.g. a feature map with a running stabiliser). */
int64_t et_kc_decode_floats(const et_kc_shape *p);
void et_kc_decode_reset(const et_kc_shape *p, float *state);
/* One position: H += phk v^T, z += phk, then out = phq^T H / D(phq . z).
 * phq, phk (r), v, out (dv). Only r, dim_v, guard and eps of p are used.
 * Equals row i of the causal forward when called for positions 0..i. */
void et_kc_decode_step(const et_kc_shape *p, float *state, const float *phq, const float *phk,
                       const float *v, float *out);

/* References in double. out (L,dv) and den (L, NULL-able) are contiguous.
 * naive_forward sums the pairs directly: out_i = sum_j w_ij v_j / D(sum_j w_ij),
 * w_ij = phi(q_i).phi(k_j) over the visible keys; any mode.
 * naive_recurrence runs the causal recurrence KV_i = KV_{i-1} + phi(k_i) v_i^T
 * one position at a time (p->causal must be 1). */
void et_kc_naive_forward(const et_kc_shape *p, const float *phq, int64_t ldq, const float *phk,
                         int64_t ldk, const float *v, int64_t ldv, double *out, double *den);
void et_kc_naive_recurrence(const et_kc_shape *p, const float *phq, int64_t ldq,
                            const float *phk, int64_t ldk, const float *v, int64_t ldv,
                            double *out, double *den);

#endif
