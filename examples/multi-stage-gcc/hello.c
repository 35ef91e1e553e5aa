/* A small C program: prints a greeting and the sum of its arguments. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long sum = 0;
    for (int i = 1; i < argc; i++) sum += strtol(argv[i], NULL, 10);
    printf("Hello from C, compiled in a build stage. Sum of %d arguments: %ld\n", argc - 1, sum);
    return 0;
}
