/*
 * workers.h -- the supervisor behind `moonsock --workers N` (workers.c).
 * Part of the moonsock program, not of the library: a host that embeds
 * moonsock decides for itself how many processes it runs.
 */
#ifndef MSK_WORKERS_H
#define MSK_WORKERS_H

/* Fork n workers and supervise them. Returns -1 in a worker, with
 * *worker_no set to its number (1..n), which then runs as a lone moonsock
 * would. In the supervisor it returns only when the workers are gone:
 * the program's exit status. Call it before creating anything else. */
int msk_workers_run(int n, int *worker_no);

#endif
