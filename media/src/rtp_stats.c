/* Receive statistics per leg: RFC 3550 A.1 (sequence tracking), A.3 (loss), A.8 (jitter). */
#include "rtp_internal.h"

#define MAX_DROPOUT 3000
#define MAX_MISORDER 100

uint32_t rtp_stats_ext_max(const rtp_stats *s) { return s->cycles + s->max_seq; }

static int64_t lost_current(const rtp_stats *s)
{
    if (!s->have_seq)
        return 0;
    int64_t expected = (int64_t)rtp_stats_ext_max(s) - (int64_t)s->base_seq + 1;
    return expected - (int64_t)s->received;
}

/* Packets lost on this leg so far, over every SSRC it has seen (duplicates can make the
 * current stream's count negative, RFC 3550 §6.4.1; it is reported as 0 then). */
int64_t rtp_stats_lost(const rtp_stats *s)
{
    int64_t cur = lost_current(s);
    return s->lost_before + (cur > 0 ? cur : 0);
}

static void restart(rtp_stats *s, const rtp_packet *p)
{
    if (s->have_seq) {
        int64_t cur = lost_current(s);
        s->lost_before += cur > 0 ? cur : 0;
    }
    s->ssrc = p->ssrc;
    s->have_seq = 1;
    s->base_seq = p->seq;
    s->max_seq = p->seq;
    s->cycles = 0;
    s->received = 0;
    s->expected_prior = s->received_prior = 0;
    s->have_transit = 0;
}

void rtp_stats_packet(rtp_stats *s, const rtp_packet *p, uint64_t now_ns, int audio)
{
    if (!s->have_seq || p->ssrc != s->ssrc) {
        restart(s, p);
    } else {
        uint16_t udelta = (uint16_t)(p->seq - s->max_seq);
        if (udelta < MAX_DROPOUT) {
            if (p->seq < s->max_seq) /* wrapped: one more 64K cycle (A.1) */
                s->cycles += 65536;
            s->max_seq = p->seq;
        } else if (udelta <= 65536 - MAX_MISORDER) {
            /* A very large jump: the source restarted its numbering; start over. */
            restart(s, p);
        }
        /* else: a duplicate or a reordered packet, counted as received only */
    }
    s->received++;
    if (!audio)
        return; /* telephone-event packets repeat one timestamp: no jitter sample (A.8) */
    /* A.8: transit time in timestamp units; only its variation matters, so the clock origin
     * and the 32-bit wrap cancel out in the difference. */
    uint32_t arrival = (uint32_t)(now_ns * RTP_CLOCK_RATE / 1000000000ULL);
    int64_t transit = (int32_t)(arrival - p->ts);
    if (s->have_transit) {
        int64_t d = (int32_t)(transit - s->last_transit);
        if (d < 0)
            d = -d;
        s->jitter += ((double)d - s->jitter) / 16.0;
    }
    s->last_transit = transit;
    s->have_transit = 1;
}

/* Fraction lost since the previous report, as RFC 3550 A.3 computes it (8-bit fixed point). */
uint8_t rtp_stats_fraction_lost(rtp_stats *s)
{
    if (!s->have_seq)
        return 0;
    uint32_t expected = rtp_stats_ext_max(s) - s->base_seq + 1;
    uint32_t expected_interval = expected - s->expected_prior;
    uint32_t received_interval = (uint32_t)s->received - s->received_prior;
    s->expected_prior = expected;
    s->received_prior = (uint32_t)s->received;
    int64_t lost_interval = (int64_t)expected_interval - (int64_t)received_interval;
    if (expected_interval == 0 || lost_interval <= 0)
        return 0;
    return (uint8_t)((lost_interval << 8) / expected_interval);
}
