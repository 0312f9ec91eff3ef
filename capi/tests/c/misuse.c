/* Misuse that cpuheap must catch: `misuse foreign` frees a pointer the heap never handed
 * out; `misuse double` frees an object twice in a row and `misuse interior` frees a pointer
 * into its middle (caught by the normal library, which has `misuse-checks`, as by glibc's
 * normal build; the checked build catches any double free). Each must abort with a
 * message naming the fault; reaching the end exits 0, which the runner counts as a miss. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    char *p = malloc(48);
    sink = p;
    if (strcmp(what, "foreign") == 0) {
        static char not_heap[64];
        free(not_heap);
    } else if (strcmp(what, "double") == 0) {
        free(p);
        free(p);
    } else if (strcmp(what, "interior") == 0) {
        free(p + 16);
    }
    printf("not caught: %s\n", what);
    return 0;
}
