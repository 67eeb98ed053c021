/* One job over many processes and machines (MPI). Every long command runs unchanged under
 * `mpirun -np N asam ...` / `srun asam ...`: this module is the only place that talks to MPI.
 *
 * Without MPI compiled in (no ASAM_HAVE_MPI), or when the program was not started by an MPI
 * launcher, it is a single-rank implementation: rank 0 of 1, reductions and broadcasts leave
 * the buffers alone, the work queue hands out 0, 1, 2, ... in this process.
 *
 * Reproducibility: asam_dist_sum_f64/_f32 add the ranks' values element by element in rank
 * order 0, 1, ..., N-1 (never MPI_Allreduce, whose order is up to the implementation), so a
 * run with a given N gives the same bits every time. The trainers go further: they add each
 * sample's gradient into a double accumulator, so the float result does not depend on how the
 * samples were split over ranks as long as those double sums are exact (see asam/train.h). */
#ifndef ASAM_DIST_H
#define ASAM_DIST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this build has MPI. */
int asam_dist_compiled(void);
/* Start MPI when a launcher started this process (mpirun / srun environment); otherwise stay
 * single-rank without touching MPI. Returns 0 or -1 (message in asam_last_error()). */
int asam_dist_init(int *argc, char ***argv);
void asam_dist_finalize(void);
/* Stop every rank (after a failure that the others cannot learn about). */
void asam_dist_abort(int code);

int asam_dist_rank(void);       /* 0 .. size-1 */
int asam_dist_size(void);       /* ranks in the job (1 without MPI) */
int asam_dist_local_size(void); /* ranks on this machine */
/* Threads for this rank: the CPUs it is bound to when the launcher bound it to fewer than the
 * machine has, otherwise the machine's CPUs divided by the ranks on this machine (at least 1). */
int asam_dist_default_threads(void);

int asam_dist_barrier(void);
int asam_dist_bcast(void *buf, size_t bytes, int root);
/* Element-wise sum over the ranks, in rank order, result on every rank. */
int asam_dist_sum_f64(double *buf, size_t n);
/* Floats: summed in double in rank order, rounded to float once. */
int asam_dist_sum_f32(float *buf, size_t n);
/* All ranks agree on an outcome: -1 when any rank has -1, else 1 when any has 1, else 0
 * (collective; ranks that did nothing wrong learn that another one failed). */
int asam_dist_agree(int rc);

/* ---- dynamic work queue ----------------------------------------------------------------
 * Items 0 .. n-1 are handed out one at a time in increasing order to whichever rank asks
 * next (rank 0 serves the requests from a helper thread), so a slow item delays only the
 * rank that has it. Rank 0 learns of every finished item and calls on_done for it (from one
 * thread at a time; the callback must only print or count). */
typedef struct {
    int64_t item;   /* finished item */
    int rank;       /* rank that did it */
    int did_work;   /* 0: it was already finished (skipped) */
    double seconds; /* time it took */
} asam_dist_done;
typedef void (*asam_dist_done_fn)(void *user, const asam_dist_done *d);
typedef struct asam_dist_queue asam_dist_queue;

/* Collective. on_done / user: used on rank 0 only (may be NULL). */
int asam_dist_queue_open(int64_t n, asam_dist_done_fn on_done, void *user, asam_dist_queue **q);
/* Report the previous item (did_work, seconds; ignored on the first call) and take the next:
 * returns 1 with *item set, or 0 when the queue is empty (then stop calling). -1 on error. */
int asam_dist_queue_next(asam_dist_queue *q, int did_work, double seconds, int64_t *item);
/* Collective; frees q. A rank that stops before the queue is empty calls it at once:
 * failed = 0 (e.g. a stop hook): its last item is reported as finished (did_work, seconds) and
 * the others keep the queue going; failed = 1: its last item is not reported and no rank gets
 * another item (they finish the ones they have), as a single process stops at its first
 * failure. Returns when every rank has finished. */
int asam_dist_queue_close(asam_dist_queue *q, int failed, int did_work, double seconds);

#ifdef __cplusplus
}
#endif
#endif
