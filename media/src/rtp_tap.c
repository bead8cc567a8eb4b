/* Record taps: both directions of a call as time-aligned stereo PCM for the recorder.
 *
 * Each leg's decoded audio goes into its side's FIFO as packets arrive; every 20 ms the tap
 * takes one frame from each side (silence where a side sent nothing, e.g. on hold) and
 * appends 160 interleaved [a, b] sample pairs to a bounded ring. Python drains the ring when
 * a TAP_DATA event says a block is ready. If Python falls behind and the ring is full, new
 * frames are dropped and counted (`overflow`), never the ones already waiting.
 *
 * Three shapes share the same stereo blocks:
 * - two legs (a, b): what each party says, a on channel 0 and b on channel 1;
 * - one leg (b = RTP_TAP_ONE_LEG: voicemail, a caller in an IVR): what a's party says on
 *   channel 0, channel 1 silent;
 * - one leg heard (b = RTP_TAP_HEARD: the call recording): what a's party says on channel 0
 *   and, on channel 1, every audio packet the node sends to a, decoded — the other party
 *   relayed, prompts, music on hold, a conference mix — so the recording follows the
 *   customer across transfers and holds as the customer heard them.
 * A leg feeds up to RTP_LEG_TAPS taps at once (a call recording beside a voicemail or a
 * speech recogniser); it needs no bridge.
 */
#include "rtp_internal.h"

#include <stdlib.h>
#include <string.h>

#define CATCH_UP_FRAMES 3
#define FRAME_TICKS (RTP_MIX_FRAME / (RTP_CLOCK_RATE / 1000) / RTP_TICK_MS)

rtp_tap *rtp_tap_lookup(rtp_engine *e, int32_t id)
{
    for (rtp_tap *t = e->taps; t; t = t->next)
        if (t->id == id)
            return t;
    return NULL;
}

static int leg_attach(rtp_leg *leg, rtp_tap *t, int side)
{
    for (int i = 0; i < RTP_LEG_TAPS; i++) {
        if (!leg->taps[i]) {
            leg->taps[i] = t;
            leg->tap_sides[i] = (uint8_t)side;
            if (i >= leg->ntaps)
                leg->ntaps = i + 1;
            return 1;
        }
    }
    return 0;
}

static void leg_detach(rtp_leg *leg, const rtp_tap *t)
{
    for (int i = 0; i < leg->ntaps; i++)
        if (leg->taps[i] == t)
            leg->taps[i] = NULL;
    while (leg->ntaps > 0 && !leg->taps[leg->ntaps - 1])
        leg->ntaps--;
}

static int leg_free_slots(const rtp_leg *leg)
{
    int free_slots = RTP_LEG_TAPS - leg->ntaps;
    for (int i = 0; i < leg->ntaps; i++)
        free_slots += !leg->taps[i];
    return free_slots;
}

int rtp_tap_start(rtp_engine *e, int32_t a, int32_t b, uint32_t capacity_ms, uint32_t block_ms,
                  int32_t *tap_id)
{
    if (b < RTP_TAP_HEARD)
        return RTP_E_INVAL;
    rtp_leg *la = rtp_leg_lookup(e, a), *lb = b < 0 ? NULL : rtp_leg_lookup(e, b);
    if (!la || (b >= 0 && !lb))
        return RTP_E_NOLEG;
    if (la == lb || capacity_ms < 20 || capacity_ms > 600000 || block_ms < 20 ||
        block_ms > capacity_ms)
        return RTP_E_INVAL;
    if (leg_free_slots(la) < 1 || (lb && leg_free_slots(lb) < 1))
        return RTP_E_STATE;
    rtp_tap *t = calloc(1, sizeof *t);
    if (!t)
        return RTP_E_NOMEM;
    t->capacity = (size_t)capacity_ms * (RTP_CLOCK_RATE / 1000);
    t->ring = malloc(t->capacity * 2 * sizeof *t->ring);
    if (!t->ring) {
        free(t);
        return RTP_E_NOMEM;
    }
    t->block = block_ms * (RTP_CLOCK_RATE / 1000);
    t->id = e->next_tap_id++;
    t->heard = b == RTP_TAP_HEARD;
    t->legs[0] = la;
    t->legs[1] = lb;
    leg_attach(la, t, 0);
    if (lb)
        leg_attach(lb, t, 1);
    t->next_tick = e->tick + FRAME_TICKS;
    t->next = e->taps;
    e->taps = t;
    *tap_id = t->id;
    return RTP_OK;
}

int rtp_tap_stop(rtp_engine *e, int32_t tap_id)
{
    for (rtp_tap **at = &e->taps; *at; at = &(*at)->next) {
        if ((*at)->id == tap_id) {
            rtp_tap *t = *at;
            *at = t->next;
            for (int s = 0; s < 2; s++)
                if (t->legs[s])
                    leg_detach(t->legs[s], t);
            free(t->ring);
            free(t);
            return RTP_OK;
        }
    }
    return RTP_E_NOLEG;
}

/* Copy up to max_frames waiting frames (interleaved int16 pairs) out of the ring. */
int rtp_tap_read(rtp_engine *e, int32_t tap_id, int16_t *out, size_t max_frames, size_t *frames,
                 uint64_t *overflow)
{
    rtp_tap *t = rtp_tap_lookup(e, tap_id);
    if (!t)
        return RTP_E_NOLEG;
    size_t n = t->count < max_frames ? t->count : max_frames;
    size_t first = t->capacity - t->head < n ? t->capacity - t->head : n;
    memcpy(out, t->ring + 2 * t->head, first * 2 * sizeof *out);
    memcpy(out + 2 * first, t->ring, (n - first) * 2 * sizeof *out);
    t->head = (t->head + n) % t->capacity;
    t->count -= n;
    *frames = n;
    *overflow = t->overflow;
    return RTP_OK;
}

void rtp_tap_detach_leg(rtp_engine *e, rtp_leg *leg)
{
    for (int i = 0; i < leg->ntaps; i++) {
        rtp_tap *t = leg->taps[i];
        if (t && t->legs[leg->tap_sides[i]] == leg)
            t->legs[leg->tap_sides[i]] = NULL; /* that side records silence from now on */
        leg->taps[i] = NULL;
    }
    leg->ntaps = 0;
}

/* What the leg's party said (decoded), into each tap it feeds. */
void rtp_tap_input(rtp_leg *leg, const int16_t *pcm, size_t n)
{
    for (int i = 0; i < leg->ntaps; i++)
        if (leg->taps[i])
            rtp_fifo_write(&leg->taps[i]->in[leg->tap_sides[i]], pcm, n);
}

/* An audio packet the node sends to the leg: channel 1 of the taps that record it heard. */
void rtp_tap_sent(rtp_leg *leg, int law, const uint8_t *payload, size_t n)
{
    int16_t pcm[RTP_MAX_PACKET];
    int decoded = 0;
    for (int i = 0; i < leg->ntaps; i++) {
        rtp_tap *t = leg->taps[i];
        if (!t || !t->heard || leg->tap_sides[i] != 0)
            continue;
        if (!decoded) {
            g711_decode(law, payload, pcm, n);
            decoded = 1;
        }
        rtp_fifo_write(&t->in[1], pcm, n);
    }
}

void rtp_tap_tick(rtp_engine *e, rtp_tap *t)
{
    int frames_done = 0;
    while (t->next_tick <= e->tick && frames_done < CATCH_UP_FRAMES) {
        t->next_tick += FRAME_TICKS;
        frames_done++;
        int16_t side[2][RTP_MIX_FRAME];
        rtp_fifo_read(&t->in[0], side[0], RTP_MIX_FRAME);
        rtp_fifo_read(&t->in[1], side[1], RTP_MIX_FRAME);
        for (size_t k = 0; k < RTP_MIX_FRAME; k++) {
            if (t->count == t->capacity) {
                t->overflow += RTP_MIX_FRAME - k;
                break;
            }
            size_t at = (t->head + t->count) % t->capacity;
            t->ring[2 * at] = side[0][k];
            t->ring[2 * at + 1] = side[1][k];
            t->count++;
        }
        t->frames += RTP_MIX_FRAME;
        t->since_notify += RTP_MIX_FRAME;
        if (t->since_notify >= t->block) {
            t->since_notify = 0;
            rtp_event ev = {.type = RTP_EV_TAP_DATA, .leg = t->id, .value = (int32_t)t->count};
            rtp_event_push(e, &ev);
        }
    }
    if (t->next_tick <= e->tick)
        t->next_tick = e->tick + FRAME_TICKS;
}
