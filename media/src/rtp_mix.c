/* Mixing: a set of up to 16 legs where each leg hears a chosen subset of the others.
 *
 * Every 20 ms the mixer takes one frame of decoded audio from each member's FIFO (silence
 * where a member sent nothing) and sends each listener the saturated sum of the members in
 * its `hears` mask, encoded in the listener's law. Three-way calls (all hear all), silent
 * monitor (the supervisor hears both, nobody hears the supervisor), whisper (the agent also
 * hears the supervisor) and barge (all hear all) are just different masks.
 */
#include "rtp_internal.h"

#include <stdlib.h>
#include <string.h>

#define CATCH_UP_FRAMES 3
#define FRAME_TICKS (RTP_MIX_FRAME / (RTP_CLOCK_RATE / 1000) / RTP_TICK_MS)

/* Append samples; when full, the oldest are dropped so latency stays bounded. */
void rtp_fifo_write(rtp_fifo *f, const int16_t *pcm, size_t n)
{
    if (n > RTP_FIFO_SAMPLES) {
        f->dropped += n - RTP_FIFO_SAMPLES;
        pcm += n - RTP_FIFO_SAMPLES;
        n = RTP_FIFO_SAMPLES;
    }
    size_t excess = f->count + n > RTP_FIFO_SAMPLES ? f->count + n - RTP_FIFO_SAMPLES : 0;
    f->head = (f->head + excess) % RTP_FIFO_SAMPLES;
    f->count -= excess;
    f->dropped += excess;
    for (size_t i = 0; i < n; i++)
        f->buf[(f->head + f->count + i) % RTP_FIFO_SAMPLES] = pcm[i];
    f->count += n;
}

/* Take n samples; what the FIFO lacks is silence. Returns how many were real. */
size_t rtp_fifo_read(rtp_fifo *f, int16_t *pcm, size_t n)
{
    size_t got = f->count < n ? f->count : n;
    for (size_t i = 0; i < got; i++)
        pcm[i] = f->buf[(f->head + i) % RTP_FIFO_SAMPLES];
    memset(pcm + got, 0, (n - got) * sizeof *pcm);
    f->head = (f->head + got) % RTP_FIFO_SAMPLES;
    f->count -= got;
    return got;
}

/* out[k] = saturate(sum of frames[i][k] for each i in mask) to the int16 range. */
void rtp_mix_sum(const int16_t *const *frames, uint32_t mask, int n, int16_t *out, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        int32_t acc = 0;
        for (int i = 0; i < n; i++)
            if (mask & (1u << i))
                acc += frames[i][k];
        out[k] = (int16_t)(acc > 32767 ? 32767 : acc < -32768 ? -32768 : acc);
    }
}

static rtp_mix *find(rtp_engine *e, int32_t id)
{
    for (rtp_mix *m = e->mixes; m; m = m->next)
        if (m->id == id)
            return m;
    return NULL;
}

static void release_members(rtp_mix *m)
{
    for (int i = 0; i < m->n; i++)
        if (m->legs[i]) {
            m->legs[i]->mix = NULL;
            m->legs[i] = NULL;
        }
    m->n = 0;
}

/* Create (*mix_id == 0) or reconfigure a mix. Members leave any bridge; a leg already in
 * another mix is refused (RTP_E_STATE). hears[i] is a bitmask over the indexes of `handles`. */
int rtp_mix_set(rtp_engine *e, int32_t *mix_id, const int32_t *handles, const uint32_t *hears,
                int n)
{
    if (n < 1 || n > RTP_MIX_MAX)
        return RTP_E_INVAL;
    rtp_mix *m = *mix_id ? find(e, *mix_id) : NULL;
    if (*mix_id && !m)
        return RTP_E_NOLEG;
    rtp_leg *legs[RTP_MIX_MAX];
    for (int i = 0; i < n; i++) {
        legs[i] = rtp_leg_lookup(e, handles[i]);
        if (!legs[i])
            return RTP_E_NOLEG;
        if (legs[i]->mix && legs[i]->mix != m)
            return RTP_E_STATE;
        for (int j = 0; j < i; j++)
            if (legs[j] == legs[i])
                return RTP_E_INVAL;
    }
    if (!m) {
        m = calloc(1, sizeof *m);
        if (!m)
            return RTP_E_NOMEM;
        m->id = e->next_mix_id++;
        m->next = e->mixes;
        e->mixes = m;
        m->next_tick = e->tick + FRAME_TICKS;
    }
    release_members(m);
    uint32_t all = n == 32 ? UINT32_MAX : (1u << n) - 1;
    for (int i = 0; i < n; i++) {
        rtp_leg *leg = legs[i];
        if (leg->peer) {
            leg->peer->peer = NULL;
            leg->peer = NULL;
        }
        leg->mix = m;
        leg->mix_index = i;
        m->legs[i] = leg;
        m->hears[i] = hears[i] & all & ~(1u << i); /* nobody hears themselves */
        memset(&m->in[i], 0, sizeof m->in[i]);
    }
    m->n = n;
    *mix_id = m->id;
    return RTP_OK;
}

int rtp_mix_remove(rtp_engine *e, int32_t mix_id)
{
    for (rtp_mix **at = &e->mixes; *at; at = &(*at)->next) {
        if ((*at)->id == mix_id) {
            rtp_mix *m = *at;
            *at = m->next;
            release_members(m);
            free(m);
            return RTP_OK;
        }
    }
    return RTP_E_NOLEG;
}

void rtp_mix_detach_leg(rtp_engine *e, rtp_leg *leg)
{
    if (!leg->mix)
        return;
    rtp_mix *m = leg->mix;
    m->legs[leg->mix_index] = NULL; /* the slot stays: the others' masks keep their meaning */
    m->hears[leg->mix_index] = 0;
    leg->mix = NULL;
}

void rtp_mix_input(rtp_leg *leg, const int16_t *pcm, size_t n)
{
    rtp_fifo_write(&leg->mix->in[leg->mix_index], pcm, n);
}

void rtp_mix_tick(rtp_engine *e, rtp_mix *m)
{
    int frames_done = 0;
    while (m->next_tick <= e->tick && frames_done < CATCH_UP_FRAMES) {
        m->next_tick += FRAME_TICKS;
        frames_done++;
        int16_t frames[RTP_MIX_MAX][RTP_MIX_FRAME];
        const int16_t *inputs[RTP_MIX_MAX];
        for (int i = 0; i < m->n; i++) {
            rtp_fifo_read(&m->in[i], frames[i], RTP_MIX_FRAME);
            inputs[i] = frames[i];
        }
        for (int j = 0; j < m->n; j++) {
            rtp_leg *leg = m->legs[j];
            if (!leg || !m->hears[j] || leg->play.active || leg->te_tx.active)
                continue;
            int16_t sum[RTP_MIX_FRAME];
            uint8_t payload[RTP_MIX_FRAME];
            rtp_mix_sum(inputs, m->hears[j], m->n, sum, RTP_MIX_FRAME);
            g711_encode(leg->law, sum, payload, RTP_MIX_FRAME);
            rtp_leg_send(e, leg, RTP_SOURCE(RTP_SRC_MIX, m->id), 0, leg->pt, leg->mix_seq++,
                         leg->mix_ts, payload, RTP_MIX_FRAME);
            leg->mix_ts += RTP_MIX_FRAME;
        }
    }
    if (m->next_tick <= e->tick)
        m->next_tick = e->tick + FRAME_TICKS;
}
