/* fork() in a multi-threaded program: worker threads allocate and free without pause while
 * the main thread forks again and again. Each child allocates (small, large, on a new
 * thread too), checks its memory and exits 0. A heap lock held across fork by a worker
 * would deadlock the child (the test runner's timeout catches that). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 3
#define FORKS 60

static atomic_int stop;

static void *worker(void *arg) {
    uint64_t s = (uintptr_t)arg * 2654435761u + 1;
    void *held[128] = {0};
    while (!atomic_load(&stop)) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        size_t i = s % 128;
        free(held[i]);
        size_t n = (s >> 9) % 100 == 0 ? 100000 : (s >> 9) % 2000;
        held[i] = malloc(n);
        memset(held[i], (int)i, n);
    }
    for (int i = 0; i < 128; i++) free(held[i]);
    return NULL;
}

static int child_work(void) {
    void *v[500];
    for (int i = 0; i < 500; i++) {
        size_t n = (size_t)(i * 37) % 5000 + (i % 50 == 0 ? 300000 : 0);
        v[i] = malloc(n);
        if (!v[i]) return 1;
        memset(v[i], i & 0xff, n);
    }
    for (int i = 0; i < 500; i++) {
        size_t n = (size_t)(i * 37) % 5000 + (i % 50 == 0 ? 300000 : 0);
        for (size_t k = 0; k < n; k++)
            if (((unsigned char *)v[i])[k] != (unsigned char)(i & 0xff)) return 1;
        free(v[i]);
    }
    return 0;
}

static void *child_thread(void *arg) {
    (void)arg;
    return (void *)(intptr_t)child_work();
}

int main(void) {
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    int ok = 0;
    for (int f = 0; f < FORKS; f++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 2; }
        if (pid == 0) {
            int bad = child_work();
            pthread_t ct;
            void *r = (void *)1;
            if (pthread_create(&ct, NULL, child_thread, NULL) == 0) pthread_join(ct, &r);
            exit(bad || r != NULL ? 1 : 0);
        }
        int st = 0;
        if (waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++;
        else fprintf(stderr, "fork %d: child status %#x\n", f, st);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++) pthread_join(t[i], NULL);
    printf("fork: %d of %d children exited 0\n", ok, FORKS);
    return ok == FORKS ? 0 : 1;
}
