/*
 * The C test programs' one assertion: count a pass, or print where and
 * why it failed.  Each program prints "N passed, N failed" at the end.
 */

#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>

static int	 passed, failed;

#define CHECK(cond, ...) do {						\
	if (cond)							\
		passed++;						\
	else {								\
		failed++;						\
		printf("FAIL %s:%d: ", __FILE__, __LINE__);		\
		printf(__VA_ARGS__);					\
		printf("\n");						\
	}								\
} while (0)

#endif /* CHECK_H */
