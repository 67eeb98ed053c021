/* Distribution over processes (see asam/dist.h): MPI when compiled in and launched by an MPI
 * launcher, a single-rank no-op implementation otherwise. */
#define _GNU_SOURCE
#include "asam/dist.h"
#include "asam/error.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef ASAM_HAVE_MPI
#include <mpi.h>
#include <pthread.h>
#include <time.h>
static int g_active = 0;     /* MPI was started by us and is running */
static int g_threads_ok = 0; /* MPI_THREAD_MULTIPLE granted: the queue may use a server thread */
#endif

static int g_rank = 0, g_size = 1, g_local = 1;

int asam_dist_compiled(void) {
#ifdef ASAM_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

int asam_dist_rank(void) {
    return g_rank;
}
int asam_dist_size(void) {
    return g_size;
}
int asam_dist_local_size(void) {
    return g_local;
}

int asam_dist_default_threads(void) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    int bound = 0;
    if (!sched_getaffinity(0, sizeof set, &set)) bound = CPU_COUNT(&set);
    if (online < 1) online = 1;
    /* a launcher that pinned this rank to some cores already chose its share */
    if (bound > 0 && bound < online) return bound;
    int n = (int)(online / (g_local > 0 ? g_local : 1));
    return n > 0 ? n : 1;
}

/* Started by mpirun (Open MPI), mpiexec (MPICH/Hydra) or srun with a PMI plugin?
 * ASAM_MPI=0 / 1 overrides. Without a launcher we never call MPI_Init, so a plain `asam ...`
 * starts as fast as without MPI and needs no MPI runtime on the machine. */
static int launched_by_mpi(void) {
    const char *force = getenv("ASAM_MPI");
    if (force && *force) return atoi(force) != 0;
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK",
                          "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

#ifndef ASAM_HAVE_MPI
/* ---- single rank ------------------------------------------------------------------------ */
int asam_dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* N copies of a build without MPI would each do the whole job: refuse */
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (launched_by_mpi() && n && atoi(n) > 1)
        return asam_error("started as one of %s MPI ranks, but this asam was built without MPI "
                          "(install libopenmpi-dev and rebuild)",
                          n);
    return 0;
}
void asam_dist_finalize(void) {}
void asam_dist_abort(int code) {
    exit(code);
}
int asam_dist_barrier(void) {
    return 0;
}
int asam_dist_bcast(void *buf, size_t bytes, int root) {
    (void)buf, (void)bytes, (void)root;
    return 0;
}
int asam_dist_sum_f64(double *buf, size_t n) {
    (void)buf, (void)n;
    return 0;
}
int asam_dist_sum_f32(float *buf, size_t n) {
    (void)buf, (void)n;
    return 0;
}
int asam_dist_agree(int rc) {
    return rc < 0 ? -1 : rc > 0 ? 1 : 0;
}

struct asam_dist_queue {
    int64_t n, next, last;
    double t_start;
    asam_dist_done_fn on_done;
    void *user;
};

int asam_dist_queue_open(int64_t n, asam_dist_done_fn on_done, void *user, asam_dist_queue **q) {
    *q = calloc(1, sizeof **q);
    if (!*q) return asam_error("work queue: out of memory");
    (*q)->n = n;
    (*q)->last = -1;
    (*q)->on_done = on_done;
    (*q)->user = user;
    return 0;
}

int asam_dist_queue_next(asam_dist_queue *q, int did_work, double seconds, int64_t *item) {
    if (q->last >= 0 && q->on_done) {
        asam_dist_done d = {q->last, 0, did_work, seconds};
        q->on_done(q->user, &d);
    }
    q->last = -1;
    if (q->next >= q->n) return 0;
    *item = q->last = q->next++;
    return 1;
}

int asam_dist_queue_close(asam_dist_queue *q, int failed, int did_work, double seconds) {
    if (!q) return 0;
    if (!failed && q->last >= 0 && q->on_done) {
        asam_dist_done d = {q->last, 0, did_work, seconds};
        q->on_done(q->user, &d);
    }
    free(q);
    return 0;
}

#else
/* ---- MPI ----------------------------------------------------------------------------------- */

static int mpi_fail(const char *what, int err) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, msg, &len);
    return asam_error("MPI %s failed on rank %d: %.*s", what, g_rank, len, msg);
}
#define MPI_TRY(what, call)                                                                        \
    do {                                                                                           \
        int e_ = (call);                                                                           \
        if (e_ != MPI_SUCCESS) return mpi_fail(what, e_);                                          \
    } while (0)

int asam_dist_init(int *argc, char ***argv) {
    if (g_active || !launched_by_mpi()) return 0;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return asam_error("MPI_Init failed (started by a launcher, but MPI cannot start)");
    /* errors come back as codes, so each one becomes an asam error line */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    g_active = 1;
    g_threads_ok = provided >= MPI_THREAD_MULTIPLE;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) ==
        MPI_SUCCESS) {
        MPI_Comm_size(local, &g_local);
        MPI_Comm_free(&local);
    }
    return 0;
}

void asam_dist_finalize(void) {
    if (!g_active) return;
    MPI_Finalize();
    g_active = 0;
}

void asam_dist_abort(int code) {
    if (g_active) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

/* Wait for every rank without spinning: a blocking MPI collective busy-polls, and a rank that
 * waits hours for the others at the end of a job (or seconds in every training step) would
 * take a core from the ranks still working on the same machine. A non-blocking barrier,
 * tested every millisecond, costs at most a millisecond per call. */
static int gentle_sync(void) {
    MPI_Request req;
    MPI_TRY("barrier", MPI_Ibarrier(MPI_COMM_WORLD, &req));
    const struct timespec nap = {0, 1000000};
    for (int done = 0;;) {
        MPI_TRY("barrier", MPI_Test(&req, &done, MPI_STATUS_IGNORE));
        if (done) return 0;
        nanosleep(&nap, NULL);
    }
}

int asam_dist_barrier(void) {
    return g_size > 1 ? gentle_sync() : 0;
}

int asam_dist_bcast(void *buf, size_t bytes, int root) {
    if (g_size == 1) return 0;
    if (gentle_sync()) return -1;
    const size_t chunk = (size_t)1 << 30; /* MPI counts are ints */
    for (size_t off = 0; off < bytes; off += chunk) {
        size_t n = bytes - off < chunk ? bytes - off : chunk;
        MPI_TRY("broadcast", MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, root, MPI_COMM_WORLD));
    }
    return 0;
}

/* One block of at most BLOCK doubles: a reduce-scatter done by hand. Rank j owns part j of
 * the block; every rank sends part j to rank j (all-to-all), rank j adds the P copies in rank
 * order, then every part is gathered back onto every rank. Traffic per rank is about twice
 * the block, whatever the number of ranks. */
#define BLOCK ((size_t)1 << 22)
static int sum_block(double *x, int L, double *recv, int *cnt, int *off, int *rcnt, int *roff) {
    const int P = g_size, r = g_rank;
    for (int j = 0; j < P; j++) {
        off[j] = (int)((int64_t)L * j / P);
        cnt[j] = (int)((int64_t)L * (j + 1) / P) - off[j];
    }
    const int mine = cnt[r];
    for (int i = 0; i < P; i++) {
        rcnt[i] = mine;
        roff[i] = i * mine;
    }
    MPI_TRY("all-to-all",
            MPI_Alltoallv(x, cnt, off, MPI_DOUBLE, recv, rcnt, roff, MPI_DOUBLE, MPI_COMM_WORLD));
    double *dst = x + off[r];
    for (int e = 0; e < mine; e++) {
        double s = recv[e]; /* rank 0's value, then ranks 1, 2, ... in order */
        for (int i = 1; i < P; i++) s += recv[(size_t)i * mine + e];
        dst[e] = s;
    }
    MPI_TRY("all-gather",
            MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DOUBLE, x, cnt, off, MPI_DOUBLE, MPI_COMM_WORLD));
    return 0;
}

static int sum_common(double *d, const float *f_in, float *f_out, size_t n) {
    if (gentle_sync()) return -1; /* everyone is here: the collectives below do not wait long */
    size_t L0 = n < BLOCK ? n : BLOCK;
    double *recv = malloc((L0 + (size_t)g_size) * sizeof *recv);
    double *tmp = f_in ? malloc((L0 ? L0 : 1) * sizeof *tmp) : NULL;
    int *ints = malloc(4 * (size_t)g_size * sizeof *ints);
    int rc = (!recv || !ints || (f_in && !tmp)) ? asam_error("MPI sum: out of memory") : 0;
    for (size_t b = 0; b < n && !rc; b += BLOCK) {
        int L = (int)(n - b < BLOCK ? n - b : BLOCK);
        double *x = f_in ? tmp : d + b;
        if (f_in)
            for (int i = 0; i < L; i++) tmp[i] = f_in[b + i];
        rc = sum_block(x, L, recv, ints, ints + g_size, ints + 2 * g_size, ints + 3 * g_size);
        if (!rc && f_out)
            for (int i = 0; i < L; i++) f_out[b + i] = (float)tmp[i];
    }
    free(recv);
    free(tmp);
    free(ints);
    return rc;
}

int asam_dist_sum_f64(double *buf, size_t n) {
    if (g_size == 1 || n == 0) return 0;
    return sum_common(buf, NULL, NULL, n);
}

int asam_dist_sum_f32(float *buf, size_t n) {
    if (g_size == 1 || n == 0) return 0;
    return sum_common(NULL, buf, buf, n);
}

int asam_dist_agree(int rc) {
    if (g_size == 1) return rc < 0 ? -1 : rc > 0 ? 1 : 0;
    double v[2] = {rc<0, rc> 0};
    if (asam_dist_sum_f64(v, 2)) return -1;
    int out = v[0] > 0 ? -1 : v[1] > 0 ? 1 : 0;
    if (out < 0 && rc >= 0) asam_error("stopped because another rank failed (see its message)");
    return out;
}

/* ---- work queue ------------------------------------------------------------------------ */
/* A message from rank r to rank 0 on the queue's own communicator: the report of its last
 * item (when has_report), whether it wants another (want) and whether the queue must stop
 * (drain: r failed). Rank 0 answers a want with the next item or -1. */
typedef struct {
    double has_report, item, did_work, seconds, want, drain;
} q_msg;
#define Q_MSG_N 6
enum { Q_TAG = 7 };

struct asam_dist_queue {
    int64_t n, next, last;
    int served;   /* dynamic (rank 0 serves) or static striding (no thread support) */
    int finished; /* this rank took its last item or quit */
    MPI_Comm comm;
    pthread_t server;
    int server_started;
    pthread_mutex_t mu;
    asam_dist_done_fn on_done;
    void *user;
};

static void report(asam_dist_queue *q, int64_t item, int rank, int did_work, double seconds) {
    if (!q->on_done || g_rank != 0) return; /* rank 0 shows the job's progress */
    asam_dist_done d = {item, rank, did_work, seconds};
    q->on_done(q->user, &d);
}

static int64_t take(asam_dist_queue *q) {
    return q->next < q->n ? q->next++ : -1;
}

/* rank 0's helper thread: answer the other ranks until every one has had its -1 or quit */
static void *serve(void *arg) {
    asam_dist_queue *q = arg;
    int active = g_size - 1;
    const struct timespec nap = {0, 2000000}; /* 2 ms: idle polling costs nothing measurable */
    while (active > 0) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, Q_TAG, q->comm, &flag, &st) != MPI_SUCCESS) break;
        if (!flag) {
            nanosleep(&nap, NULL);
            continue;
        }
        q_msg m;
        if (MPI_Recv(&m, Q_MSG_N, MPI_DOUBLE, st.MPI_SOURCE, Q_TAG, q->comm, MPI_STATUS_IGNORE) !=
            MPI_SUCCESS)
            break;
        pthread_mutex_lock(&q->mu);
        if (m.has_report) report(q, (int64_t)m.item, st.MPI_SOURCE, (int)m.did_work, m.seconds);
        if (m.drain) q->next = q->n;
        int64_t next = m.want ? take(q) : -1;
        pthread_mutex_unlock(&q->mu);
        if (m.want) {
            if (MPI_Send(&next, 1, MPI_INT64_T, st.MPI_SOURCE, Q_TAG, q->comm) != MPI_SUCCESS)
                break;
        }
        if (next < 0) active--;
    }
    return NULL;
}

int asam_dist_queue_open(int64_t n, asam_dist_done_fn on_done, void *user, asam_dist_queue **out) {
    *out = NULL;
    asam_dist_queue *q = calloc(1, sizeof *q);
    if (!q) return asam_error("work queue: out of memory");
    q->n = n;
    q->last = -1;
    q->on_done = on_done;
    q->user = user;
    q->comm = MPI_COMM_NULL;
    pthread_mutex_init(&q->mu, NULL);
    q->served = g_size > 1 && g_threads_ok;
    if (!g_size || g_size == 1) {
        *out = q;
        return 0;
    }
    if (!q->served) q->next = g_rank; /* static striding: rank r takes r, r + P, ... */
    int rc = 0;
    if (q->served) {
        if (MPI_Comm_dup(MPI_COMM_WORLD, &q->comm) != MPI_SUCCESS)
            rc = asam_error("work queue: MPI_Comm_dup failed");
        if (!rc && g_rank == 0) {
            if (pthread_create(&q->server, NULL, serve, q))
                rc = asam_error("work queue: cannot start the server thread");
            else
                q->server_started = 1;
        }
    }
    rc = asam_dist_agree(rc);
    if (rc) {
        asam_dist_queue_close(q, 1, 0, 0);
        return asam_error("work queue: could not start on every rank");
    }
    *out = q;
    return 0;
}

int asam_dist_queue_next(asam_dist_queue *q, int did_work, double seconds, int64_t *item) {
    if (q->finished) return 0;
    int64_t prev = q->last, next;
    q->last = -1;
    if (!q->served || g_rank == 0) {
        pthread_mutex_lock(&q->mu);
        if (prev >= 0) report(q, prev, g_rank, did_work, seconds);
        if (q->served) {
            next = take(q);
        } else {
            next = q->next < q->n ? q->next : -1;
            q->next += g_size;
        }
        pthread_mutex_unlock(&q->mu);
    } else {
        q_msg m = {prev >= 0, (double)prev, did_work, seconds, 1, 0};
        MPI_TRY("work queue send", MPI_Send(&m, Q_MSG_N, MPI_DOUBLE, 0, Q_TAG, q->comm));
        MPI_TRY("work queue receive",
                MPI_Recv(&next, 1, MPI_INT64_T, 0, Q_TAG, q->comm, MPI_STATUS_IGNORE));
    }
    if (next < 0) {
        q->finished = 1;
        return 0;
    }
    *item = q->last = next;
    return 1;
}

int asam_dist_queue_close(asam_dist_queue *q, int failed, int did_work, double seconds) {
    if (!q) return 0;
    int rc = 0, report_last = !failed && q->last >= 0;
    if (!q->finished && (!q->served || g_rank == 0)) {
        pthread_mutex_lock(&q->mu);
        if (report_last) report(q, q->last, g_rank, did_work, seconds);
        if (failed && q->served) q->next = q->n; /* hand out nothing more */
        pthread_mutex_unlock(&q->mu);
    } else if (!q->finished && q->comm != MPI_COMM_NULL) {
        /* stopping early: no more requests from this rank */
        q_msg m = {report_last, (double)q->last, did_work, seconds, 0, failed};
        if (MPI_Send(&m, Q_MSG_N, MPI_DOUBLE, 0, Q_TAG, q->comm) != MPI_SUCCESS)
            rc = asam_error("work queue: cannot tell rank 0 that rank %d stops", g_rank);
    }
    if (q->server_started) pthread_join(q->server, NULL);
    if (q->comm != MPI_COMM_NULL) MPI_Comm_free(&q->comm);
    pthread_mutex_destroy(&q->mu);
    free(q);
    if (g_size > 1 && asam_dist_barrier()) rc = -1;
    return rc;
}
#endif
