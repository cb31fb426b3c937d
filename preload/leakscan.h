/* SPDX-License-Identifier: MIT */
/*
 * The shim's exit scan (RH_SHMALLOC_LEAK_SCAN=1): marks every live block of
 * this process's heap that a pointer reaches with RH_REF_REACHABLE, so that a
 * reader (redhawk-shmrun --leak-check) tells lost blocks from reachable ones.
 */
#ifndef RH_PRELOAD_LEAKSCAN_H
#define RH_PRELOAD_LEAKSCAN_H

#include <stdint.h>

/* The datagram each process of redhawk-shmrun's tree sends to the socket
 * named by RH_SHMRUN_SOCKET when it starts (and after fork); the sender's pid
 * comes with it from the kernel (SO_PASSCRED). tools/shmrun.c reads it. */
#define SHMRUN_HELLO_MAGIC 0x52484852u  /* "RHHR" */
struct shmrun_hello {
	uint32_t magic;
	uint32_t version;   /* 1 */
	uint64_t start;     /* the sender's /proc/<pid>/stat field 22, 0: unknown */
};

/* Scans now, once per process, when the option asks for it. Allocates
 * nothing; safe from _exit. */
void leakscan_run(void);
/* In a child made by clone(2) without CLONE_VM, which runs no fork
 * handlers: announces it to redhawk-shmrun, as a forked child is. */
void leakscan_fork_child(void);

#endif
