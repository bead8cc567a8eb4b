/* RFC 4733 telephone-event: receive (decode, de-duplicate) and send (with end retransmits).
 *
 * Payload (§2.3): event (8 bits) | E (1) | R (1) | volume (6) | duration (16). One event is
 * identified by its RTP timestamp, which stays the event's start time in every packet of it
 * (§2.5.1.2); the end packet is sent three times (§2.5.1.4).
 */
#include "rtp_internal.h"

#include <string.h>

static const char DIGITS[] = "0123456789*#ABCD"; /* events 0..15, RFC 4733 §3.2 table 1 */
#define END_RETRANSMITS 3
#define STALE_NS 1000000000ULL   /* an event whose end packets were all lost ends after 1 s */
#define INTERDIGIT_TICKS 6       /* 60 ms between digits we send (Q.24 wants >= 40 ms) */

int rtp_te_event_code(char digit)
{
    const char *at = digit ? strchr(DIGITS, digit >= 'a' && digit <= 'd' ? digit - 32 : digit)
                           : NULL;
    return at ? (int)(at - DIGITS) : -1;
}

static void report(rtp_engine *e, rtp_leg *leg)
{
    rtp_te_rx *rx = &leg->te_rx;
    rtp_event ev = {.type = RTP_EV_DTMF, .leg = leg->handle, .digit = DIGITS[rx->event & 15],
                    .flag = RTP_DTMF_RFC4733,
                    .value = (int32_t)(rx->duration / (RTP_CLOCK_RATE / 1000))};
    rtp_event_push(e, &ev);
    rx->active = 0;
    rx->have_ended = 1;
    rx->ended_ts = rx->ts;
}

void rtp_te_receive(rtp_engine *e, rtp_leg *leg, const rtp_packet *p)
{
    if (p->payload_len < 4 || p->payload[0] > 15)
        return; /* not a DTMF digit (flash, fax tones …): relayed but not reported */
    rtp_te_rx *rx = &leg->te_rx;
    int end = p->payload[1] >> 7;
    uint32_t duration = ((uint32_t)p->payload[2] << 8) | p->payload[3];
    if (rx->have_ended && p->ts == rx->ended_ts)
        return; /* a retransmitted end packet, or a late update of an event already reported */
    if (rx->active && p->ts != rx->ts)
        report(e, leg); /* a new event began before the previous one's end arrived */
    if (!rx->active) {
        rx->active = 1;
        rx->ts = p->ts;
        rx->event = p->payload[0];
        rx->duration = 0;
        /* Barge-in acts on the start of the key press, not its end. */
        if (leg->play.active && leg->play.barge_in)
            rtp_play_clear(e, leg, 1);
    }
    if (duration > rx->duration)
        rx->duration = duration;
    rx->last_ns = e->now_ns;
    if (end)
        report(e, leg);
}

void rtp_te_check_stale(rtp_engine *e, rtp_leg *leg)
{
    if (leg->te_rx.active && e->now_ns - leg->te_rx.last_ns > STALE_NS)
        report(e, leg);
}

int rtp_te_send(rtp_engine *e, int32_t handle, const char *digits, int ms, int volume)
{
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (!leg)
        return RTP_E_NOLEG;
    if (leg->te_pt < 0)
        return RTP_E_STATE; /* the remote did not offer telephone-event */
    if (ms < 20 || ms > 8000 || volume < 0 || volume > 63)
        return RTP_E_INVAL;
    size_t n = strlen(digits);
    if (n == 0 || (int)n > RTP_TE_QUEUE - leg->te_tx.queued)
        return RTP_E_INVAL;
    for (size_t i = 0; i < n; i++)
        if (rtp_te_event_code(digits[i]) < 0)
            return RTP_E_INVAL;
    for (size_t i = 0; i < n; i++) {
        rtp_te_digit *d = &leg->te_tx.queue[leg->te_tx.queued++];
        d->digit = digits[i];
        d->ms = (uint16_t)ms;
        d->volume = (uint8_t)volume;
    }
    if (!leg->te_tx.active && leg->te_tx.next_tick < e->tick + 1)
        leg->te_tx.next_tick = e->tick + 1;
    rtp_timed_update(e, leg);
    return RTP_OK;
}

static void start_next(rtp_te_tx *tx)
{
    rtp_te_digit d = tx->queue[0];
    memmove(tx->queue, tx->queue + 1, (size_t)(tx->queued - 1) * sizeof *tx->queue);
    tx->queued--;
    tx->active = 1;
    tx->digit = d.digit;
    tx->event = (uint8_t)rtp_te_event_code(d.digit);
    tx->volume = d.volume;
    tx->total = (uint32_t)d.ms * (RTP_CLOCK_RATE / 1000);
    if (tx->total > 0xffff)
        tx->total = 0xffff; /* one segment (§2.5.1.3): our limit of 8 s is below 8.19 s */
    tx->duration = 0;
    tx->ends_left = END_RETRANSMITS;
    tx->serial++;
}

/* One packet per packet time: updates with growing duration, then the end packet 3 times. */
void rtp_te_tick(rtp_engine *e, rtp_leg *leg)
{
    rtp_te_tx *tx = &leg->te_tx;
    if (e->tick < tx->next_tick)
        return;
    if (!tx->active) {
        if (tx->queued == 0)
            return;
        start_next(tx);
    }
    uint32_t frame = (uint32_t)leg->ptime_ms * (RTP_CLOCK_RATE / 1000);
    if (tx->duration < tx->total) {
        tx->duration += frame;
        if (tx->duration > tx->total)
            tx->duration = tx->total;
    }
    int end = tx->duration >= tx->total;
    uint8_t payload[4] = {tx->event, (uint8_t)((end ? 0x80 : 0) | (tx->volume & 0x3f)),
                          (uint8_t)(tx->duration >> 8), (uint8_t)tx->duration};
    /* Every packet of the event carries the event's start timestamp (in_ts 0 of its own
     * source, mapped to "now" in the leg's stream when the event starts). */
    rtp_leg_send(e, leg, RTP_SOURCE(RTP_SRC_DTMF, tx->serial), 0, leg->te_pt, tx->seq++, 0,
                 payload, sizeof payload);
    tx->next_tick = e->tick + (uint64_t)leg->ptime_ms / RTP_TICK_MS;
    if (end && --tx->ends_left == 0) {
        tx->active = 0;
        tx->next_tick = e->tick + INTERDIGIT_TICKS;
        rtp_event ev = {.type = RTP_EV_DTMF_SENT, .leg = leg->handle, .digit = tx->digit,
                        .value = (int32_t)(tx->total / (RTP_CLOCK_RATE / 1000))};
        rtp_event_push(e, &ev);
    }
}
