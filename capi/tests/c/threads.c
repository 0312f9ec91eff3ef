/* Cross-thread frees: producers allocate objects of mixed sizes, fill them with a pattern
 * and pass them through bounded queues to consumers on other threads, which check the
 * pattern, sometimes realloc, and free. Everything is deterministic except scheduling, and
 * the output (totals and checksums) does not depend on it: the run must print the same with
 * and without LD_PRELOAD=libcpuheap.so. Exit status 1 on a pattern mismatch. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRODUCERS 4
#define CONSUMERS 4
#define PER_PRODUCER 120000
#define QCAP 512
#define HELD 64

struct obj {
    uint64_t id;
    size_t size; /* bytes after the header */
    unsigned char data[];
};

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    struct obj *items[QCAP];
    size_t head, len;
};

static struct queue queues[CONSUMERS];

static void push(struct queue *q, struct obj *o) {
    pthread_mutex_lock(&q->mu);
    while (q->len == QCAP) pthread_cond_wait(&q->not_full, &q->mu);
    q->items[(q->head + q->len) % QCAP] = o;
    q->len++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

static struct obj *pop(struct queue *q) {
    pthread_mutex_lock(&q->mu);
    while (q->len == 0) pthread_cond_wait(&q->not_empty, &q->mu);
    struct obj *o = q->items[q->head];
    q->head = (q->head + 1) % QCAP;
    q->len--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return o;
}

static uint64_t next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static unsigned char pat(uint64_t id, size_t k) { return (unsigned char)(id * 131 + k * 7 + (k >> 8)); }

static size_t pick_size(uint64_t *rng) {
    uint64_t r = next(rng);
    uint64_t k = r % 1000;
    if (k < 2) return 100000 + (r >> 10) % 600000; /* rare: page spans */
    if (k < 40) return 1024 + (r >> 10) % 40000;     /* size classes to 32 KiB and past */
    return (r >> 10) % 600;                          /* mostly small */
}

static struct obj *make(uint64_t id, size_t size) {
    struct obj *o = malloc(sizeof(struct obj) + size);
    if (!o) { fprintf(stderr, "malloc failed\n"); exit(2); }
    o->id = id;
    o->size = size;
    for (size_t k = 0; k < size; k++) o->data[k] = pat(id, k);
    return o;
}

static int check(const struct obj *o, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (o->data[k] != pat(o->id, k)) return 0;
    return 1;
}

static void *producer(void *arg) {
    uint64_t me = (uint64_t)(uintptr_t)arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (me + 1);
    /* Also keep some objects on this thread for a while (mixed lifetimes). */
    struct obj *held[HELD] = {0};
    for (uint64_t i = 0; i < PER_PRODUCER; i++) {
        uint64_t id = me * PER_PRODUCER + i;
        struct obj *o = make(id, pick_size(&rng));
        if (i % 5 == 0) {
            size_t slot = next(&rng) % HELD;
            struct obj *old = held[slot];
            held[slot] = o;
            if (!old) continue;
            o = old; /* an older object goes to a consumer instead */
        }
        push(&queues[(me + i) % CONSUMERS], o);
    }
    for (size_t s = 0; s < HELD; s++)
        if (held[s]) push(&queues[s % CONSUMERS], held[s]);
    for (int c = 0; c < CONSUMERS; c++) push(&queues[c], NULL);
    return NULL;
}

struct result {
    uint64_t objects, bytes, idsum, bad;
};

static void *consumer(void *arg) {
    struct queue *q = arg;
    struct result *r = calloc(1, sizeof *r);
    int ends = 0;
    while (ends < PRODUCERS) {
        struct obj *o = pop(q);
        if (!o) { ends++; continue; }
        if (!check(o, o->size)) r->bad++;
        r->objects++;
        r->bytes += o->size;
        r->idsum += o->id;
        if (o->id % 7 == 0) {
            /* Grow or shrink across size classes; the common prefix must survive. */
            size_t keep = o->size / 2;
            size_t nsize = o->id % 14 == 0 ? o->size * 2 + 100 : keep;
            struct obj *n = realloc(o, sizeof(struct obj) + nsize);
            if (!n) { fprintf(stderr, "realloc failed\n"); exit(2); }
            if (!check(n, keep)) r->bad++;
            o = n;
        }
        free(o);
    }
    return r;
}

int main(void) {
    pthread_t p[PRODUCERS], c[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        pthread_mutex_init(&queues[i].mu, NULL);
        pthread_cond_init(&queues[i].not_empty, NULL);
        pthread_cond_init(&queues[i].not_full, NULL);
        pthread_create(&c[i], NULL, consumer, &queues[i]);
    }
    for (int i = 0; i < PRODUCERS; i++) pthread_create(&p[i], NULL, producer, (void *)(uintptr_t)i);
    for (int i = 0; i < PRODUCERS; i++) pthread_join(p[i], NULL);
    struct result total = {0};
    for (int i = 0; i < CONSUMERS; i++) {
        struct result *r;
        pthread_join(c[i], (void **)&r);
        total.objects += r->objects;
        total.bytes += r->bytes;
        total.idsum += r->idsum;
        total.bad += r->bad;
        free(r);
    }
    printf("threads: objects=%llu bytes=%llu idsum=%llu bad=%llu\n",
           (unsigned long long)total.objects, (unsigned long long)total.bytes,
           (unsigned long long)total.idsum, (unsigned long long)total.bad);
    return total.bad ? 1 : 0;
}
