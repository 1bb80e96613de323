/*
 * Where the processes run, with --pin-cpu: the master and everything
 * it forks stay on one CPU.  Without it (the default) the scheduler
 * places every process, so a busy MX uses every CPU it is given.
 * Linux can pin a process (sched_setaffinity); OpenBSD has no such call
 * and lets its scheduler place us, so its cpu_pin() does nothing.  One
 * definition per system, whole.
 */

#include <sys/types.h>

#include <sched.h>

#include "smtpd.h"

#ifdef __OpenBSD__

void
cpu_pin(void)
{
}

#else	/* Linux */

/*
 * Stay on the CPU the scheduler put us on, with every process we fork
 * from now on (they inherit it).  Each fresh worker takes copy-on-write
 * faults on the pages it shares with the master, and the master on its
 * own after each fork; each such fault flushes the TLB of every CPU the
 * process has run on, and each hand-over between the master, a worker
 * and the relay wakes a process on another CPU: on a virtual machine
 * every one of those is an interrupt through the hypervisor.  On an
 * older kernel (2 vCPUs, conn mode, c=10) that cost 12.5 ms of CPU per
 * message spread over both CPUs against 4.3 ms on one; on Linux 6.18
 * (2 vCPUs, one message a connection) the same build pinned ran 415/409
 * messages a second at c=10/50 against 716/639 unpinned, for about the
 * same CPU per message, so pinning is off by default and kept only for
 * the hosts where it still pays (smtpd.8).
 */
void
cpu_pin(void)
{
	cpu_set_t	 set;
	int		 cpu;

	if ((cpu = sched_getcpu()) == -1)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	(void)sched_setaffinity(0, sizeof(set), &set);
}

#endif
