/* Hostile and huge requests through the C symbols, run with and without
 * LD_PRELOAD=libcpuheap.so: stdout (what each call returned, and errno) must be the same as
 * glibc's. Each impossible request must fail within a second in all, with resident memory
 * (VmRSS) growing by at most a few MB; 200 live sparse 1 GiB blocks, each touched at both
 * ends, must stay within a small bound and give it back when freed. Measurements go to
 * stderr. Exits 1 if a bound is broken. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failed;

/* Keep the compiler from reasoning about sizes and results. */
static size_t opaque(size_t x) {
    volatile size_t v = x;
    return v;
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static const char *err_name(int e) {
    switch (e) {
    case 0: return "0";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    default: return "other";
    }
}

static void report(const char *what, void *p, int err) {
    printf("%-40s %s errno=%s\n", what, p ? "ptr" : "NULL", err_name(err));
    if (p) free(p);
}

#define TRY(what, expr)                 \
    do {                                \
        errno = 0;                      \
        void *p_ = (expr);              \
        report(what, p_, errno);        \
    } while (0)

int main(void) {
    const size_t sizes[] = {(size_t)1 << 40, (size_t)1 << 44, (size_t)1 << 46,
                            (size_t)PTRDIFF_MAX + 1, SIZE_MAX - 4096};
    const char *names[] = {"2^40", "2^44", "2^46", "PTRDIFF_MAX+1", "SIZE_MAX-4096"};
    char what[64];
    /* Warm up: the heap's first use is not what is measured. */
    free(malloc(opaque(64 << 20)));
    long rss0 = rss_kib();
    double t0 = now();
    for (int i = 0; i < 5; i++) {
        size_t n = opaque(sizes[i]);
        snprintf(what, sizeof what, "malloc(%s)", names[i]);
        TRY(what, malloc(n));
        snprintf(what, sizeof what, "calloc(1, %s)", names[i]);
        TRY(what, calloc(1, n));
        snprintf(what, sizeof what, "aligned_alloc(4096, %s)", names[i]);
        TRY(what, aligned_alloc(4096, n));
        snprintf(what, sizeof what, "memalign(1 MiB, %s)", names[i]);
        TRY(what, memalign(1 << 20, n));
        snprintf(what, sizeof what, "valloc(%s)", names[i]);
        TRY(what, valloc(n));
        snprintf(what, sizeof what, "pvalloc(%s)", names[i]);
        TRY(what, pvalloc(n));
        void *q = NULL;
        errno = 0;
        int rc = posix_memalign(&q, 64, n);
        /* errno is not compared: glibc sets ENOMEM as a side effect, cpuheap leaves it
         * (the man page: "The value of errno is not set"). */
        printf("%-40s rc=%s %s\n", "posix_memalign(64, size)", err_name(rc),
               q ? "ptr" : "untouched");
        if (q) free(q);
        /* realloc of a live block to a huge size: NULL, ENOMEM, block intact. */
        char *b = malloc(opaque(100000));
        memset(b, 7, 100000);
        errno = 0;
        void *r = realloc(b, n);
        snprintf(what, sizeof what, "realloc(100000 B, %s)", names[i]);
        printf("%-40s %s errno=%s intact=%d\n", what, r ? "ptr" : "NULL", err_name(errno),
               r ? -1 : b[99999] == 7);
        free(r ? r : b);
    }
    {
        void *q = NULL;
        errno = 0;
        int rc = posix_memalign(&q, opaque((size_t)1 << 40), opaque(100));
        printf("%-40s rc=%s %s\n", "posix_memalign(2^40, 100)", err_name(rc),
               q ? "ptr" : "untouched");
        if (q) free(q);
    }
    TRY("aligned_alloc(2^40, 100)", aligned_alloc(opaque((size_t)1 << 40), opaque(100)));
    TRY("memalign(2^40, 100)", memalign(opaque((size_t)1 << 40), opaque(100)));
    TRY("calloc(2^23, 2^23) (2^46)", calloc(opaque(1 << 23), opaque(1 << 23)));
    TRY("calloc(SIZE_MAX, 2) (overflow)", calloc(opaque(SIZE_MAX), opaque(2)));
    TRY("reallocarray(NULL, SIZE_MAX, 2)", reallocarray(NULL, opaque(SIZE_MAX), opaque(2)));
    double t1 = now();
    long rss1 = rss_kib();
    fprintf(stderr, "impossible requests: %.3f s, RSS %+ld KiB\n", t1 - t0, rss1 - rss0);
    if (t1 - t0 > 1.0) {
        printf("FAIL impossible requests took %.2f s\n", t1 - t0);
        failed++;
    }
    if (rss1 - rss0 > 4096) {
        printf("FAIL impossible requests grew RSS by %ld KiB\n", rss1 - rss0);
        failed++;
    }

    /* 200 live sparse 1 GiB blocks, each touched at both ends. */
    enum { N = 200 };
    const size_t gib = (size_t)1 << 30;
    static char *blocks[N];
    long before = rss_kib();
    double s0 = now();
    int got = 0;
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(opaque(gib));
        if (!blocks[i]) break;
        blocks[i][0] = 1;
        blocks[i][gib - 1] = 1;
        got++;
    }
    long live = rss_kib();
    for (int i = 0; i < got; i++) free(blocks[i]);
    long after = rss_kib();
    double s1 = now();
    printf("%d sparse 1 GiB blocks allocated\n", got);
    fprintf(stderr, "%d x 1 GiB live: RSS %+ld KiB; after free: %+ld KiB; %.3f s\n", got,
            live - before, after - before, s1 - s0);
    if (live - before > 24 * 1024) {
        printf("FAIL %d live sparse blocks grew RSS by %ld KiB\n", got, live - before);
        failed++;
    }
    if (after - before > 6 * 1024) {
        printf("FAIL after freeing them RSS stays %ld KiB up\n", after - before);
        failed++;
    }
    return failed ? 1 : 0;
}
