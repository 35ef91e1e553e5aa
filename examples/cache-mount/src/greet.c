#include <stdio.h>
#include "greet.h"

void greet(const char *who) { printf("Hello, %s! (built with a cache mount)\n", who); }
