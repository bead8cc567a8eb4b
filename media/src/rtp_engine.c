/* The engine: its lifecycle, the worker thread and its epoll loop, the 10 ms clock.
 *
 * The clock is a periodic CLOCK_MONOTONIC timerfd: the kernel keeps the period, so deadlines
 * counted in ticks never drift, and missed expirations are reported (and caught up) instead
 * of silently stretching the period. Every timed job (playback, RFC 4733 send, mixer, taps,
 * RTP timeout and RTCP) keeps its next deadline as a tick number.
 */
#include "rtp_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define EPOLL_BATCH 256
#define TAG_TIMER UINT64_MAX
#define TAG_WAKE (UINT64_MAX - 1)

uint64_t rtp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint32_t rtp_random32(rtp_engine *e)
{
    /* xorshift64*: SSRCs and initial sequence numbers only need to be unpredictable enough
     * not to collide (RFC 3550 §8.1); the seed comes from getrandom(). */
    uint64_t x = e->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    e->rng = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

void rtp_engine_lock(rtp_engine *e) { pthread_mutex_lock(&e->lock); }
void rtp_engine_unlock(rtp_engine *e) { pthread_mutex_unlock(&e->lock); }

rtp_leg *rtp_leg_lookup(rtp_engine *e, int32_t handle)
{
    if (handle <= 0)
        return NULL;
    uint32_t slot = (uint32_t)handle & 0xffff;
    uint16_t gen = (uint16_t)(((uint32_t)handle >> 16) & 0x7fff);
    if (slot >= e->max_legs || e->gens[slot] != gen)
        return NULL;
    return e->slots[slot];
}

/* Keep `leg` on the list of legs the clock visits iff it has timed work. */
void rtp_timed_update(rtp_engine *e, rtp_leg *leg)
{
    int want = leg->play.active || leg->te_tx.active || leg->te_tx.queued > 0;
    if (want && !leg->timed) {
        leg->tprev = NULL;
        leg->tnext = e->timed;
        if (e->timed)
            e->timed->tprev = leg;
        e->timed = leg;
        leg->timed = 1;
    } else if (!want && leg->timed) {
        if (leg->tprev)
            leg->tprev->tnext = leg->tnext;
        else
            e->timed = leg->tnext;
        if (leg->tnext)
            leg->tnext->tprev = leg->tprev;
        leg->tprev = leg->tnext = NULL;
        leg->timed = 0;
    }
}

static void engine_tick(rtp_engine *e)
{
    rtp_leg *leg = e->timed;
    while (leg) {
        rtp_leg *next = leg->tnext; /* a job may take the leg off the list */
        if (leg->te_tx.active || leg->te_tx.queued > 0)
            rtp_te_tick(e, leg);
        if (leg->play.active)
            rtp_play_tick(e, leg);
        rtp_timed_update(e, leg);
        leg = next;
    }
    for (rtp_mix *m = e->mixes; m; m = m->next)
        rtp_mix_tick(e, m);
    for (rtp_tap *t = e->taps; t; t = t->next)
        rtp_tap_tick(e, t);
    /* Once a second: RTP timeouts, stale RFC 4733 events and RTCP reports. */
    if (e->tick % RTP_TICKS_PER_SECOND == 0) {
        for (rtp_leg *l = e->legs; l; l = l->next) {
            rtp_leg_check_timeouts(e, l);
            rtp_te_check_stale(e, l);
            if (l->detector)
                rtp_inband_check_stale(e, l);
            if (l->next_rtcp_ns && e->now_ns >= l->next_rtcp_ns) {
                rtp_rtcp_send_report(e, l);
                l->next_rtcp_ns = e->now_ns + RTP_RTCP_INTERVAL_NS;
            }
        }
    }
}

static void handle_timer(rtp_engine *e)
{
    uint64_t expirations = 0;
    if (read(e->timerfd, &expirations, sizeof expirations) != sizeof expirations)
        return;
    if (expirations > 1)
        e->ticks_missed += expirations - 1;
    /* Jobs compare their deadlines with e->tick and catch up a bounded number of frames. */
    e->tick += expirations;
    engine_tick(e);
}

static void *worker_main(void *arg)
{
    rtp_engine *e = arg;
    /* Signals (Ctrl-C …) belong to Python's main thread, never to the packet loop. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    struct epoll_event ready[EPOLL_BATCH];
    while (!e->stop) {
        int n = epoll_wait(e->epfd, ready, EPOLL_BATCH, 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        pthread_mutex_lock(&e->lock);
        e->now_ns = rtp_now_ns();
        for (int i = 0; i < n && !e->stop; i++) {
            uint64_t tag = ready[i].data.u64;
            if (tag == TAG_TIMER) {
                handle_timer(e);
            } else if (tag == TAG_WAKE) {
                uint64_t v;
                if (read(e->wakefd, &v, sizeof v) < 0 && errno != EAGAIN)
                    e->stop = 1;
            } else {
                rtp_leg *leg = rtp_leg_lookup(e, (int32_t)(tag >> 1));
                if (leg) /* NULL: destroyed after epoll_wait returned; the event is stale */
                    rtp_receive_ready(e, leg, (int)(tag & 1));
            }
        }
        pthread_mutex_unlock(&e->lock);
    }
    return NULL;
}

static int add_fd(int epfd, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int rtp_engine_create(const rtp_config *cfg, rtp_engine **out)
{
    if (cfg->port_min < 1024 || cfg->port_max <= cfg->port_min || cfg->rtp_timeout <= 0 ||
        cfg->max_legs == 0 || cfg->max_legs > 0x8000 || cfg->event_capacity == 0)
        return RTP_E_INVAL;
    /* One local address per family: IPv4 legs bind local_ip, IPv6 legs local_ip6. */
    rtp_addr local4, local6;
    if (rtp_addr_parse(&local4, cfg->local_ip, 0) != AF_INET)
        return RTP_E_INVAL;
    int has6 = cfg->local_ip6 && cfg->local_ip6[0];
    if (has6 && rtp_addr_parse(&local6, cfg->local_ip6, 0) != AF_INET6)
        return RTP_E_INVAL;
    rtp_engine *e = calloc(1, sizeof *e);
    if (!e)
        return RTP_E_NOMEM;
    e->epfd = e->timerfd = e->wakefd = e->notifyfd = -1;
    e->local4 = local4;
    e->has_local4 = 1;
    if (has6) {
        e->local6 = local6;
        e->has_local6 = 1;
    }
    /* RTP on even ports, RTCP on the odd one above (RFC 3550 §11). */
    e->port_min = (uint16_t)((cfg->port_min + 1) & ~1u);
    e->port_max = cfg->port_max;
    e->port_next = e->port_min;
    e->timeout_ns = (uint64_t)(cfg->rtp_timeout * 1e9);
    e->max_legs = cfg->max_legs;
    e->ev_cap = cfg->event_capacity;
    e->next_mix_id = e->next_tap_id = e->next_media_id = 1;
    if (getrandom(&e->rng, sizeof e->rng, 0) != sizeof e->rng || e->rng == 0)
        e->rng = rtp_now_ns() | 1;
    int rc = RTP_E_NOMEM;
    e->slots = calloc(e->max_legs, sizeof *e->slots);
    e->gens = calloc(e->max_legs, sizeof *e->gens);
    e->events = calloc(e->ev_cap, sizeof *e->events);
    if (!e->slots || !e->gens || !e->events)
        goto fail_nolock;
    rc = RTP_E_SYS;
    if (pthread_mutex_init(&e->lock, NULL) != 0)
        goto fail_nolock;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    e->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->notifyfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->epfd < 0 || e->timerfd < 0 || e->wakefd < 0 || e->notifyfd < 0)
        goto fail;
    struct itimerspec period = {
        .it_interval = {.tv_sec = 0, .tv_nsec = RTP_TICK_MS * 1000000L},
        .it_value = {.tv_sec = 0, .tv_nsec = RTP_TICK_MS * 1000000L},
    };
    if (timerfd_settime(e->timerfd, 0, &period, NULL) < 0)
        goto fail;
    if (add_fd(e->epfd, e->timerfd, TAG_TIMER) < 0 || add_fd(e->epfd, e->wakefd, TAG_WAKE) < 0)
        goto fail;
    if (pthread_create(&e->thread, NULL, worker_main, e) != 0)
        goto fail;
    e->thread_started = 1;
    *out = e;
    return RTP_OK;
fail:
    pthread_mutex_destroy(&e->lock);
fail_nolock:
    {
        int saved = errno;
        if (e->epfd >= 0)
            close(e->epfd);
        if (e->timerfd >= 0)
            close(e->timerfd);
        if (e->wakefd >= 0)
            close(e->wakefd);
        if (e->notifyfd >= 0)
            close(e->notifyfd);
        free(e->slots);
        free(e->gens);
        free(e->events);
        free(e);
        errno = saved;
    }
    return rc;
}

/* Stop the worker (blocking until it has left its loop) and free everything. */
void rtp_engine_destroy(rtp_engine *e)
{
    if (!e)
        return;
    if (e->thread_started) {
        e->stop = 1;
        uint64_t one = 1;
        if (write(e->wakefd, &one, sizeof one) < 0) {
            /* the counter cannot overflow from one write; the worker also wakes each second */
        }
        pthread_join(e->thread, NULL);
    }
    while (e->taps)
        rtp_tap_stop(e, e->taps->id);
    while (e->mixes)
        rtp_mix_remove(e, e->mixes->id);
    while (e->legs)
        rtp_leg_free(e, e->legs);
    while (e->media) {
        rtp_media *m = e->media;
        e->media = m->next;
        free(m->pcm);
        free(m);
    }
    close(e->epfd);
    close(e->timerfd);
    close(e->wakefd);
    close(e->notifyfd);
    pthread_mutex_destroy(&e->lock);
    free(e->slots);
    free(e->gens);
    free(e->events);
    free(e);
}
