/* The bounded event queue from the worker to asyncio.
 *
 * The worker appends under the engine lock; Python drains it under the same lock when the
 * eventfd it watches with loop.add_reader becomes readable. The eventfd is written only when
 * the queue goes from empty to non-empty, so a burst of events costs one wake-up. When the
 * queue is full the newest event is dropped and counted (events() reports the count).
 */
#include "rtp_internal.h"

#include <errno.h>
#include <unistd.h>

void rtp_event_push(rtp_engine *e, const rtp_event *ev)
{
    if (e->ev_count == e->ev_cap) {
        e->ev_overflow++;
        return;
    }
    e->events[(e->ev_head + e->ev_count) % e->ev_cap] = *ev;
    e->ev_count++;
    if (e->ev_count == 1) {
        uint64_t one = 1;
        if (write(e->notifyfd, &one, sizeof one) < 0 && errno != EAGAIN)
            e->ev_overflow++; /* cannot happen with an eventfd; counted rather than ignored */
    }
}

/* Move up to `max` events to `out` and reset the eventfd; returns how many. */
uint32_t rtp_event_drain(rtp_engine *e, rtp_event *out, uint32_t max)
{
    uint64_t counter;
    if (read(e->notifyfd, &counter, sizeof counter) < 0 && errno != EAGAIN)
        return 0;
    uint32_t n = 0;
    while (n < max && e->ev_count > 0) {
        out[n++] = e->events[e->ev_head];
        e->ev_head = (e->ev_head + 1) % e->ev_cap;
        e->ev_count--;
    }
    if (e->ev_count > 0) {
        /* more than `max` were waiting: keep the reader awake */
        uint64_t one = 1;
        if (write(e->notifyfd, &one, sizeof one) < 0 && errno != EAGAIN)
            e->ev_overflow++;
    }
    return n;
}
