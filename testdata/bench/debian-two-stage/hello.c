#include <stdio.h>

int main(void) {
    puts("hello from the build stage");
    return 0;
}
