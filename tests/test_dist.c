/* asam/dist.h: the single-rank implementation (always), and, when the build has MPI and
 * $ASAM_MPIEXEC names the launcher, the MPI implementation on 2 ranks: this program starts
 * itself under `mpirun -np 2 ... --mpi-child` and checks the sums (rank order, several
 * blocks), the broadcast, agree(), and the work queue (every item exactly once, a slow rank
 * gets fewer, a failing rank stops the hand-out). */
#include "asam/dist.h"
#include "asam/error.h"
#include "test_util.h"

#include <time.h>

typedef struct {
    int calls, work;
    int64_t last;
    char *seen;
} done_log;

static void on_done(void *user, const asam_dist_done *d) {
    done_log *l = user;
    l->calls++;
    l->work += d->did_work;
    l->last = d->item;
    if (l->seen) l->seen[d->item]++;
}

static void nap_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void single_rank(void) {
    CHECK(asam_dist_init(NULL, NULL) == 0, "init: %s", "failed");
    CHECK(asam_dist_rank() == 0 && asam_dist_size() == 1, "rank %d of %d", asam_dist_rank(),
          asam_dist_size());
    CHECK(asam_dist_default_threads() >= 1, "threads");
    double d[3] = {1, 2, 3};
    float f[2] = {0.5f, -1};
    CHECK(asam_dist_sum_f64(d, 3) == 0 && d[0] == 1 && d[2] == 3,
          "sum f64 changes one rank's data");
    CHECK(asam_dist_sum_f32(f, 2) == 0 && f[0] == 0.5f && f[1] == -1, "sum f32 on one rank");
    CHECK(asam_dist_agree(0) == 0 && asam_dist_agree(1) == 1 && asam_dist_agree(-1) == -1,
          "agree on one rank");
    char seen[10] = {0};
    done_log log = {.seen = seen};
    asam_dist_queue *q;
    CHECK(asam_dist_queue_open(10, on_done, &log, &q) == 0, "queue open");
    int64_t it, expect = 0;
    int got, order_ok = 1;
    while ((got = asam_dist_queue_next(q, (int)(expect % 2), 0.1, &it)) == 1) {
        order_ok &= it == expect;
        expect++;
        if (expect == 7) break; /* stop early: close reports item 6 */
    }
    CHECK(asam_dist_queue_close(q, 0, 1, 0.1) == 0, "queue close");
    CHECK(order_ok && expect == 7, "items in order (%lld)", (long long)expect);
    int once = 1;
    for (int i = 0; i < 7; i++) once &= seen[i] == 1;
    CHECK(log.calls == 7 && once && log.last == 6, "each finished item reported once (%d calls)",
          log.calls);
    printf("ok   single rank: no-op reductions, queue 0..n-1, each item reported once\n");
}

static int mpi_child(int *argc, char ***argv) {
    if (asam_dist_init(argc, argv)) {
        fprintf(stderr, "init: %s\n", asam_last_error());
        return 1;
    }
    const int P = asam_dist_size(), R = asam_dist_rank();
    CHECK(P == 2, "size %d, want 2", P);
    CHECK(asam_dist_local_size() == 2, "local size %d", asam_dist_local_size());
    /* sums over more than one block; the float sum is done in double, rounded once */
    const size_t n = ((size_t)1 << 22) + 1001;
    double *d = malloc(n * sizeof *d);
    float *f = malloc(n * sizeof *f);
    size_t bad_d = 0, bad_f = 0;
    for (size_t i = 0; i < n; i++) {
        d[i] = R == 0 ? 1.0 + (double)i : 1e-17 * (double)(i % 7);
        f[i] = R == 0 ? 1.0f : 1e-8f * (float)(i % 5);
    }
    CHECK(asam_dist_sum_f64(d, n) == 0 && asam_dist_sum_f32(f, n) == 0, "sums: %s",
          asam_last_error());
    for (size_t i = 0; i < n; i++) {
        bad_d += d[i] != (1.0 + (double)i) + 1e-17 * (double)(i % 7);
        bad_f += f[i] != (float)((double)1.0f + (double)(1e-8f * (float)(i % 5)));
    }
    CHECK(bad_d == 0 && bad_f == 0, "%zu / %zu sums differ from rank-order double sums", bad_d,
          bad_f);
    free(d);
    free(f);
    int64_t b[4] = {R, R, R, 40 + R};
    CHECK(asam_dist_bcast(b, sizeof b, 1) == 0 && b[0] == 1 && b[3] == 41, "broadcast");
    CHECK(asam_dist_agree(R == 1 ? -1 : 0) == -1, "agree: a failure reaches every rank");
    CHECK(asam_dist_agree(R == 0 ? 1 : 0) == 1, "agree: a stop reaches every rank");
    CHECK(asam_dist_agree(0) == 0, "agree: all fine");

    /* dynamic queue: rank 1 is slow (30 ms an item), rank 0 fast (1 ms) */
    const int NQ = 60;
    char seen[60] = {0};
    done_log log = {.seen = seen};
    double mine[60] = {0}, cnt[2] = {0, 0};
    asam_dist_queue *q;
    CHECK(asam_dist_queue_open(NQ, on_done, &log, &q) == 0, "queue open: %s", asam_last_error());
    int64_t it;
    int got;
    while ((got = asam_dist_queue_next(q, 1, 0.0, &it)) == 1) {
        mine[it] += 1;
        cnt[R] += 1;
        nap_ms(R == 1 ? 30 : 1);
    }
    CHECK(got == 0, "queue next: %s", asam_last_error());
    CHECK(asam_dist_queue_close(q, 0, 1, 0) == 0, "queue close");
    CHECK(asam_dist_sum_f64(mine, NQ) == 0 && asam_dist_sum_f64(cnt, 2) == 0, "sum");
    int once = 1;
    for (int i = 0; i < NQ; i++) once &= mine[i] == 1;
    CHECK(once, "every item handed out exactly once");
    CHECK(cnt[1] < cnt[0], "the slow rank took fewer items (%g vs %g)", cnt[1], cnt[0]);
    if (R == 0) {
        int rep_once = 1;
        for (int i = 0; i < NQ; i++) rep_once &= seen[i] == 1;
        CHECK(log.calls == NQ && rep_once, "rank 0 saw %d of %d finished items once", log.calls,
              NQ);
    }

    /* a failing rank stops the hand-out: rank 1 fails on its first item */
    const int NF = 2000;
    double taken[2] = {0, 0};
    CHECK(asam_dist_queue_open(NF, NULL, NULL, &q) == 0, "queue open");
    int failed = 0;
    while (!failed && asam_dist_queue_next(q, 1, 0.0, &it) == 1) {
        taken[R] += 1;
        if (R == 1) failed = 1;
        nap_ms(2);
    }
    CHECK(asam_dist_queue_close(q, failed, 0, 0) == 0, "queue close after failure");
    CHECK(asam_dist_sum_f64(taken, 2) == 0, "sum");
    CHECK(taken[1] == 1 && taken[0] < NF - 1, "hand-out stopped after the failure (%g, %g)",
          taken[0], taken[1]);
    if (R == 0 && !test_failures)
        printf("ok   2 ranks: rank-order sums (2 blocks), broadcast, agree, dynamic queue "
               "(fast rank %g items, slow rank %g), a failure stops the queue after %g items\n",
               cnt[0], cnt[1], taken[0] + taken[1]);
    asam_dist_finalize();
    return test_failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--mpi-child")) return mpi_child(&argc, &argv);
    single_rank();
    const char *mpiexec = getenv("ASAM_MPIEXEC");
    if (!asam_dist_compiled() || !mpiexec || !*mpiexec) {
        printf("SKIP: the MPI part (no MPI in this build or no ASAM_MPIEXEC)\n");
        return test_failures ? 1 : 77;
    }
    char self[4096], cmd[9000];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(len > 0, "cannot find this program");
    if (len <= 0) return 1;
    self[len] = 0;
    /* LeakSanitizer cannot tell the Open MPI runtime's allocations kept until exit (in plugins
     * unloaded by then) from ours, so the ranks run without it; this code's own allocations
     * are leak-checked in the single-rank part above and by the other tests */
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" "
             "'%s' --allow-run-as-root --oversubscribe -np 2 '%s' --mpi-child",
             mpiexec, self);
    int st = system(cmd);
    CHECK(st == 0, "the 2-rank run failed (status %d)", st);
    return test_failures ? 1 : 0;
}
