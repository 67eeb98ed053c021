/* What train-sam and train-controlnet share in their resumable state files (internal to the
 * asam layer): integer metadata and the "param.<name>" tensors + Adam moments read back. */
#ifndef ASAM_TRAIN_STATE_H
#define ASAM_TRAIN_STATE_H

#include "asam/checkpoint.h"
#include "asam/engine.h"
#include "asam/optim.h"

#include <stddef.h>
#include <stdint.h>

/* The non-negative integer stored under key; -1 with one line naming the file and key. */
int train_state_meta_ll(const asam_checkpoint *ck, const char *key, long long *out);

/* Reads "param.<names[i]>" into params[i] (same element count) and "optim.m" / "optim.v"
 * into opt, whose step count becomes optim_step. 0, or -1 with one line naming path. */
int train_state_read_weights(const asam_checkpoint *ck, const char *path,
                             asam_tensor *const *params, const char *const *names, size_t n,
                             asam_optim *opt, long long optim_step);

/* The dataset item of global training sample k: a fresh permutation of the N items every epoch
 * (k / N), a pure function of (seed, k), so a resumed run draws what an uninterrupted one does.
 * perm (N entries) and *perm_epoch cache the current epoch's permutation (start at UINT64_MAX). */
size_t train_sample_index(uint64_t seed, size_t N, uint64_t k, size_t *perm, uint64_t *perm_epoch);

#endif
