/*
 * make lint-openbsd: this system's <unistd.h> with what OpenBSD's adds
 * and smtpd uses, declared as pledge(2) and unveil(2) give them, so
 * that the OpenBSD code compiles where no OpenBSD is at hand.  Never
 * part of a build.
 */

#ifndef SMTPD_LINT_OPENBSD_UNISTD_H
#define SMTPD_LINT_OPENBSD_UNISTD_H

#include_next <unistd.h>

int	pledge(const char *, const char *);
int	unveil(const char *, const char *);

#endif
