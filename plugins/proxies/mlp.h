/* HAT's latency predictor (spec/search.md): a ReLU MLP regressor from an
 * architecture's feature vector to its latency, trained with Adam on the
 * mean squared error. Compiled into the plugins that use it (with
 * src/stats.c for Kendall's tau); nothing here is exported.
 *
 * Each input feature is divided by its maximum |value| (from the training
 * rows, or given by the caller, e.g. the space's maxima as HAT does) and the
 * target by the training rows' maximum |y| (HAT's lat_norm); both scales
 * live in the model, so callers predict in their own units.
 *
 * The network is Linear(f, hidden) + ReLU, then hidden_layers times
 * Linear(hidden, hidden) + ReLU, then Linear(hidden, 1): with the defaults
 * 10 -> 400 -> 400 -> 400 -> 400 -> 1, HAT's Net with hidden_layer_num 3.
 * Layers are initialised like PyTorch's nn.Linear (weights and biases
 * uniform in +-1/sqrt(fan_in)) from the seed; training runs `steps` Adam
 * updates on minibatches of `batch` rows drawn without replacement from a
 * seeded reshuffle of the training rows each epoch (the last batch of an
 * epoch may be smaller). Same data, config and seed give the same model for
 * a fixed OpenBLAS thread count.
 *
 * Matrices are row-major floats: x (n, f). Every function that can fail
 * returns 0 or a negative et_status and, when err is not NULL, puts a
 * malloc'd one-line message in *err. */
#ifndef ETNAS_PLUGINS_MLP_H
#define ETNAS_PLUGINS_MLP_H

#include <stddef.h>
#include <stdint.h>

typedef struct mlp_config {
    int32_t hidden;        /* units of every hidden layer: 400 */
    int32_t hidden_layers; /* hidden-to-hidden layers after the first: 3 */
    double lr;             /* Adam learning rate: 1e-5 (HAT) */
    double beta1, beta2;   /* 0.9, 0.999 */
    double eps;            /* 1e-8 */
    int32_t batch;         /* rows per update: 128 */
    int64_t steps;         /* Adam updates: 5000 */
    uint64_t seed;         /* initialisation and shuffling */
} mlp_config;

typedef struct mlp mlp;

/* Fills cfg with the defaults above. */
void mlp_config_default(mlp_config *cfg);

/* Trains on x (n, f) and y (n), every value finite, n >= 1. x_max (f) gives
 * the input scales (finite, > 0), or NULL to take each column's max |x| of
 * the training rows (1 for an all-zero column). */
int mlp_train(const mlp_config *cfg, const float *x, const float *y, int64_t n, int64_t f,
              const float *x_max, mlp **out, char **err);

/* y (n) predicted for the rows x (n, f), f = mlp_features(m). */
int mlp_predict(const mlp *m, const float *x, int64_t n, float *y, char **err);

/* RMSE (in y's units) and Kendall tau-b (NAN when a side is constant or
 * n < 2) of the predictions for held-out rows x (n, f), y (n). */
int mlp_evaluate(const mlp *m, const float *x, const float *y, int64_t n, double *rmse,
                 double *tau, char **err);

int64_t mlp_features(const mlp *m);
/* Mean squared error of the last epoch's updates, in scaled units (y / y_max). */
double mlp_train_loss(const mlp *m);

/* The model as little-endian bytes in a malloc'd *buf of *len bytes. */
int mlp_save(const mlp *m, uint8_t **buf, size_t *len, char **err);
int mlp_load(const uint8_t *buf, size_t len, mlp **out, char **err);

/* Safe on NULL. */
void mlp_destroy(mlp *m);

/* ---- the parts underneath, for tests and references ---- */

/* An untrained network of f inputs initialised from cfg (hidden,
 * hidden_layers, seed), with every scale 1. */
int mlp_create(const mlp_config *cfg, int64_t f, mlp **out, char **err);

/* The parameters, one array: for each Linear layer l = 0, 1, ... in order,
 * its weight (out_l, in_l) row-major, then its bias (out_l). */
int64_t mlp_param_count(const mlp *m);
float *mlp_params(mlp *m);
/* Linear layers (hidden_layers + 2) and the width of each: in_0 = f,
 * out_l = in_{l+1} = hidden, out_last = 1. */
int32_t mlp_layer_count(const mlp *m);
int64_t mlp_layer_in(const mlp *m, int32_t l);
int64_t mlp_layer_out(const mlp *m, int32_t l);
/* The input scales (f floats) and the target scale. */
const float *mlp_x_scale(const mlp *m);
float mlp_y_scale(const mlp *m);

/* *loss gets the mean over the n rows of (net(xs_i) - ys_i)^2 on already
 * scaled inputs xs (n, f) and targets ys (n); when grad is not NULL it gets
 * the gradient of that loss with respect to mlp_params (mlp_param_count
 * floats). */
int mlp_loss_grad(const mlp *m, const float *xs, const float *ys, int64_t n, double *loss,
                  float *grad, char **err);

#endif
