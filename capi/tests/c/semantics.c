/* C semantics of libcpuheap.so, called through the C symbols. Run under
 * LD_PRELOAD=target/release/libcpuheap.so. Prints one line per check ("ok ..." or
 * "FAIL ...") and exits 1 if any failed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cpuheap_stats {
    size_t in_use_bytes, peak_in_use_bytes, allocs, frees, source_bytes;
};

static int failed;

#define CHECK(name, cond)                                                  \
    do {                                                                   \
        if (cond) {                                                        \
            printf("ok   %s\n", name);                                     \
        } else {                                                           \
            printf("FAIL %s (%s:%d: %s)\n", name, __FILE__, __LINE__, #cond); \
            failed++;                                                      \
        }                                                                  \
    } while (0)

/* Keep the compiler from reasoning about the allocator's results. */
static void *volatile sink;
static size_t opaque(size_t x) {
    volatile size_t v = x;
    return v;
}

int main(void) {
    /* The preload is in effect: cpuheap's own symbol is there, and it counts our calls. */
    int (*stats)(struct cpuheap_stats *) =
        (int (*)(struct cpuheap_stats *))dlsym(RTLD_DEFAULT, "cpuheap_stats");
    CHECK("preloaded: cpuheap_stats is defined", stats != NULL);
    if (stats == NULL) {
        printf("(not running under LD_PRELOAD=libcpuheap.so)\n");
        return 1;
    }
    struct cpuheap_stats before, after;
    stats(&before);
    for (int i = 0; i < 1000; i++) {
        sink = malloc(opaque(24));
        free(sink);
    }
    stats(&after);
    CHECK("preloaded: malloc/free are cpuheap's", after.allocs >= before.allocs + 1000 &&
                                                    after.frees >= before.frees + 1000);
    /* glibc gives 24 usable bytes for malloc(20); cpuheap's 16-aligned class is 32. */
    void *p = malloc(opaque(20));
    CHECK("preloaded: malloc_usable_size(malloc(20)) == 32 (cpuheap's class)",
          malloc_usable_size(p) == 32);
    free(p);

    /* malloc */
    p = malloc(opaque(0));
    void *q = malloc(opaque(0));
    CHECK("malloc(0) is a unique non-null pointer", p != NULL && q != NULL && p != q);
    free(p);
    free(q);
    int align_ok = 1, usable_ok = 1;
    void *keep[600];
    for (size_t i = 0; i < 600; i++) {
        size_t n = i < 300 ? i : (i - 299) * 997;
        keep[i] = malloc(opaque(n));
        if (keep[i] == NULL) align_ok = 0;
        size_t want = n >= 16 ? 16 : 8;
        if ((uintptr_t)keep[i] % want != 0) align_ok = 0;
        if (malloc_usable_size(keep[i]) < n) usable_ok = 0;
        memset(keep[i], 0xAB, malloc_usable_size(keep[i]));
    }
    CHECK("malloc: 16-byte aligned for sizes >= 16 (8 below)", align_ok);
    CHECK("malloc_usable_size >= requested, and all of it writable", usable_ok);
    for (int i = 0; i < 600; i++) free(keep[i]);
    CHECK("malloc_usable_size(NULL) == 0", malloc_usable_size(NULL) == 0);

    errno = 0;
    p = malloc(opaque(SIZE_MAX - 8));
    CHECK("malloc(SIZE_MAX - 8) is NULL with ENOMEM", p == NULL && errno == ENOMEM);
    errno = 0;
    p = malloc(opaque((size_t)1 << 62));
    CHECK("malloc(2^62) is NULL with ENOMEM", p == NULL && errno == ENOMEM);

    /* free */
    free(NULL);
    CHECK("free(NULL) does nothing", 1);

    /* calloc */
    errno = 0;
    p = calloc(opaque(SIZE_MAX / 2), opaque(3));
    CHECK("calloc overflow is NULL with ENOMEM", p == NULL && errno == ENOMEM);
    errno = 0;
    p = calloc(opaque((size_t)1 << 33), opaque((size_t)1 << 33));
    CHECK("calloc 2^33 * 2^33 overflow is NULL with ENOMEM", p == NULL && errno == ENOMEM);
    {
        int zero = 1;
        for (size_t n = 1; n < 200000; n = n * 3 + 1) {
            /* Dirty memory of this size first, so calloc must really zero it. */
            unsigned char *d = malloc(opaque(n));
            memset(d, 0x5A, n);
            free(d);
            unsigned char *c = calloc(opaque(n), 1);
            for (size_t k = 0; k < n; k++)
                if (c[k]) zero = 0;
            free(c);
        }
        CHECK("calloc memory is zeroed (after reuse of dirty memory)", zero);
    }

    /* realloc */
    p = realloc(NULL, opaque(100));
    CHECK("realloc(NULL, n) is malloc(n)", p != NULL && malloc_usable_size(p) >= 100);
    memset(p, 7, 100);
    q = realloc(p, opaque(100000));
    {
        int same = q != NULL;
        for (int k = 0; same && k < 100; k++)
            if (((unsigned char *)q)[k] != 7) same = 0;
        CHECK("realloc grows and keeps the contents", same);
    }
    memset(q, 9, 100000);
    p = realloc(q, opaque(10));
    CHECK("realloc shrinks and keeps the contents",
          p != NULL && ((unsigned char *)p)[0] == 9 && ((unsigned char *)p)[9] == 9);
    errno = 0;
    q = realloc(p, opaque(SIZE_MAX - 100));
    CHECK("realloc failure: NULL with ENOMEM, old block untouched",
          q == NULL && errno == ENOMEM && ((unsigned char *)p)[9] == 9);
    q = realloc(p, opaque(0));
    CHECK("realloc(p, 0) frees p and returns NULL (as glibc)", q == NULL);
    p = realloc(NULL, opaque(0));
    CHECK("realloc(NULL, 0) is malloc(0)", p != NULL);
    free(p);
    {
        /* A page span grown and shrunk in place or moved, keeping its data. */
        size_t n = 40000;
        unsigned char *b = malloc(n);
        for (size_t k = 0; k < n; k++) b[k] = (unsigned char)(k * 31);
        int ok = 1;
        for (size_t m = 50000; m < 3000000; m = m * 2) {
            b = realloc(b, opaque(m));
            if (b == NULL) { ok = 0; break; }
            for (size_t k = 0; k < n; k++)
                if (b[k] != (unsigned char)(k * 31)) ok = 0;
        }
        b = realloc(b, opaque(n));
        for (size_t k = 0; b && k < n; k++)
            if (b[k] != (unsigned char)(k * 31)) ok = 0;
        CHECK("realloc of large blocks keeps the contents", ok && b != NULL);
        free(b);
    }

    /* reallocarray */
    p = malloc(16);
    errno = 0;
    q = reallocarray(p, opaque(SIZE_MAX / 4), opaque(8));
    CHECK("reallocarray overflow is NULL with ENOMEM, old block kept", q == NULL && errno == ENOMEM);
    q = reallocarray(p, opaque(100), opaque(8));
    CHECK("reallocarray(p, 100, 8) gives >= 800 bytes", q != NULL && malloc_usable_size(q) >= 800);
    free(q);

    /* posix_memalign */
    errno = 12345;
    p = (void *)1;
    int r = posix_memalign(&p, opaque(24), 10);
    CHECK("posix_memalign(24) is EINVAL, errno and *out untouched",
          r == EINVAL && errno == 12345 && p == (void *)1);
    r = posix_memalign(&p, opaque(4), 10);
    CHECK("posix_memalign(4) (below sizeof(void*)) is EINVAL", r == EINVAL);
    r = posix_memalign(&p, opaque(0), 10);
    CHECK("posix_memalign(0) is EINVAL", r == EINVAL);
    r = posix_memalign(&p, opaque(64), SIZE_MAX - 100);
    CHECK("posix_memalign failure is ENOMEM, errno untouched", r == ENOMEM && errno == 12345);
    {
        int ok = 1;
        for (size_t a = sizeof(void *); a <= ((size_t)1 << 21); a <<= 1) {
            for (size_t n = 0; n < 70000; n = n * 5 + 3) {
                void *m = NULL;
                if (posix_memalign(&m, opaque(a), opaque(n)) != 0 || m == NULL ||
                    (uintptr_t)m % a != 0 || malloc_usable_size(m) < n) {
                    ok = 0;
                    printf("  posix_memalign(%zu, %zu) -> %p\n", a, n, m);
                } else {
                    memset(m, 1, n);
                    free(m);
                }
            }
        }
        CHECK("posix_memalign: every alignment 8 .. 2 MiB honoured", ok);
    }

    /* aligned_alloc, memalign, valloc, pvalloc */
    p = aligned_alloc(opaque(256), 1000);
    CHECK("aligned_alloc(256, 1000)", p != NULL && (uintptr_t)p % 256 == 0);
    free(p);
    p = aligned_alloc(opaque(64), 100); /* size not a multiple of the alignment: accepted */
    CHECK("aligned_alloc(64, 100) (size not a multiple) is accepted", p != NULL && (uintptr_t)p % 64 == 0);
    free(p);
    errno = 0;
    p = aligned_alloc(opaque(48), 96);
    CHECK("aligned_alloc(48) (not a power of two) is NULL with EINVAL", p == NULL && errno == EINVAL);
    p = memalign(opaque(4096), 5);
    CHECK("memalign(4096, 5)", p != NULL && (uintptr_t)p % 4096 == 0);
    free(p);
    p = memalign(opaque(100), 5); /* rounded up to 128, as glibc */
    CHECK("memalign(100) rounds the alignment up to 128", p != NULL && (uintptr_t)p % 128 == 0);
    free(p);
    long page = sysconf(_SC_PAGESIZE);
    p = valloc(opaque(10));
    CHECK("valloc is page-aligned", p != NULL && (uintptr_t)p % page == 0);
    free(p);
    p = pvalloc(opaque(page + 1));
    CHECK("pvalloc rounds up to whole pages",
          p != NULL && (uintptr_t)p % page == 0 && malloc_usable_size(p) >= (size_t)(2 * page));
    free(p);
    errno = 0;
    p = pvalloc(opaque(SIZE_MAX - 10));
    CHECK("pvalloc overflow is NULL with ENOMEM", p == NULL && errno == ENOMEM);

    /* strdup and friends (glibc's own calls into malloc) and free of them */
    char *s = strdup("hello, cpuheap");
    CHECK("strdup (glibc calling our malloc) frees with our free",
          s != NULL && malloc_usable_size(s) >= 15 && strcmp(s, "hello, cpuheap") == 0);
    free(s);

    printf("%s: %d failed\n", failed ? "FAIL" : "ok", failed);
    return failed ? 1 : 0;
}
