/*
 * offload.c -- blocking calls run on worker threads, finished through an fd.
 *
 * Some calls have no non-blocking form: getaddrinfo, fsync. Made on the
 * loop thread they stop every client for as long as a DNS server or a
 * disk takes. Here a job carries such a call to one of a few worker
 * threads; when the call returns, the job's eventfd becomes readable, so
 * the loop thread waits for it like for any socket (and a thread outside
 * any loop can simply poll it).
 *
 * Ownership: a job belongs to its submitter until msk_offload_release.
 * Released while a worker runs it, the worker frees it afterwards (after
 * the job's cleanup function, which frees whatever the result holds), so
 * a task that is stopped mid-wait leaks nothing and the worker never
 * writes to a closed fd. Every state change happens under one mutex.
 *
 * Threads: at most MAX_THREADS, started when a job finds none idle, with
 * every signal blocked (signals belong to the loop thread). They live
 * until the last user calls msk_offload_drop, which joins them.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "msk.h"

#define MAX_THREADS 4

enum { QUEUED, RUNNING, DONE };

struct msk_offload {
    msk_offload_fn *work, *cleanup;
    int efd;
    int state;
    int released;
    msk_offload *next;        /* queue */
    union { long double d; void *p; long long i; } data[];  /* size bytes */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static msk_offload *head, *tail;
static pthread_t threads[MAX_THREADS];
static int nthreads, nidle, stopping, users;

static void destroy(msk_offload *j)
{
    if (j->cleanup != NULL)
        j->cleanup(j->data);
    if (j->efd >= 0)
        close(j->efd);
    free(j);
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (head == NULL && !stopping) {
            nidle++;
            pthread_cond_wait(&wake, &lock);
            nidle--;
        }
        if (head == NULL)                 /* stopping, nothing left */
            break;
        msk_offload *j = head;
        head = j->next;
        if (head == NULL)
            tail = NULL;
        j->state = RUNNING;
        pthread_mutex_unlock(&lock);
        j->work(j->data);
        pthread_mutex_lock(&lock);
        j->state = DONE;
        if (j->released) {
            pthread_mutex_unlock(&lock);
            destroy(j);
            pthread_mutex_lock(&lock);
        } else {
            uint64_t one = 1;
            ssize_t w = write(j->efd, &one, sizeof one);
            (void)w;             /* an eventfd write of 1 cannot fail */
        }
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

msk_offload *msk_offload_new(msk_offload_fn *work, msk_offload_fn *cleanup,
                             size_t size)
{
    msk_offload *j = calloc(1, sizeof *j + size);
    if (j == NULL)
        return NULL;
    j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (j->efd < 0) {
        free(j);
        return NULL;
    }
    j->work = work;
    j->cleanup = cleanup;
    j->state = -1;
    return j;
}

void *msk_offload_data(msk_offload *j)
{
    return j->data;
}

int msk_offload_fd(const msk_offload *j)
{
    return j->efd;
}

/* Start one more worker. Called with the lock held. */
static int spawn(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&threads[nthreads], NULL, worker, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    nthreads++;
    return 0;
}

int msk_offload_submit(msk_offload *j)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    if (nidle == 0 && nthreads < MAX_THREADS)
        rc = spawn();
    if (nthreads == 0) {                /* not even one thread */
        pthread_mutex_unlock(&lock);
        return rc < 0 ? rc : -EAGAIN;
    }
    stopping = 0;
    j->state = QUEUED;
    j->next = NULL;
    if (tail)
        tail->next = j;
    else
        head = j;
    tail = j;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    return 0;
}

int msk_offload_finished(const msk_offload *j)
{
    pthread_mutex_lock(&lock);
    int done = j->state == DONE;
    pthread_mutex_unlock(&lock);
    return done;
}

void msk_offload_release(msk_offload *j)
{
    if (j == NULL)
        return;
    pthread_mutex_lock(&lock);
    if (j->state == QUEUED) {           /* never started: unqueue it */
        msk_offload **pp = &head, *prev = NULL;
        while (*pp != j) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        *pp = j->next;
        if (tail == j)
            tail = prev;
    } else if (j->state == RUNNING) {   /* the worker frees it */
        j->released = 1;
        pthread_mutex_unlock(&lock);
        return;
    }
    pthread_mutex_unlock(&lock);
    destroy(j);
}

void msk_offload_retain(void)
{
    pthread_mutex_lock(&lock);
    users++;
    pthread_mutex_unlock(&lock);
}

void msk_offload_drop(void)
{
    pthread_mutex_lock(&lock);
    if (users > 0)
        users--;
    if (users > 0 || nthreads == 0) {
        pthread_mutex_unlock(&lock);
        return;
    }
    /* Last user: let the workers finish what is queued, then join. */
    stopping = 1;
    pthread_cond_broadcast(&wake);
    int n = nthreads;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_lock(&lock);
    nthreads = 0;
    pthread_mutex_unlock(&lock);
}
