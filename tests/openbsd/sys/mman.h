/*
 * make lint-openbsd: this system's <sys/mman.h> with what OpenBSD's
 * adds and smtpd uses, declared as shm_mkstemp(3) gives it.  Never part
 * of a build.
 */

#ifndef SMTPD_LINT_OPENBSD_SYS_MMAN_H
#define SMTPD_LINT_OPENBSD_SYS_MMAN_H

#include_next <sys/mman.h>

int	shm_mkstemp(char *);

#endif
