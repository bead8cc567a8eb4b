/* Playback into a leg: a queue of items (registered PCM, generated tone, silence) sent as
 * G.711 frames of the leg's packet time, paced by the engine clock.
 *
 * Pacing: each leg keeps the tick number of its next frame and adds exactly one packet time
 * per frame, so the rate is the timerfd's, with no drift. After a stall the leg catches up at
 * most 3 frames at once, then resynchronises (a burst larger than that would only overrun the
 * far end's jitter buffer).
 */
#include "rtp_internal.h"

#include <stdlib.h>
#include <string.h>

#define CATCH_UP_FRAMES 3

rtp_media *rtp_media_lookup(rtp_engine *e, int32_t id)
{
    for (rtp_media *m = e->media; m; m = m->next)
        if (m->id == id && m->registered)
            return m;
    return NULL;
}

/* Register 8 kHz 16-bit mono samples (decoded by the Python side from WAV or raw files and
 * cached there by path); returns the id, or a negative RTP_E_* code. */
int32_t rtp_media_add(rtp_engine *e, const int16_t *pcm, size_t samples)
{
    rtp_media *m = calloc(1, sizeof *m);
    if (!m)
        return RTP_E_NOMEM;
    m->pcm = malloc(samples ? samples * sizeof *pcm : 1);
    if (!m->pcm) {
        free(m);
        return RTP_E_NOMEM;
    }
    if (samples)
        memcpy(m->pcm, pcm, samples * sizeof *pcm);
    m->samples = samples;
    m->id = e->next_media_id++;
    m->registered = 1;
    m->next = e->media;
    e->media = m;
    return m->id;
}

static void media_free_if_unused(rtp_engine *e, rtp_media *m)
{
    if (m->registered || m->refs > 0)
        return;
    for (rtp_media **at = &e->media; *at; at = &(*at)->next) {
        if (*at == m) {
            *at = m->next;
            break;
        }
    }
    free(m->pcm);
    free(m);
}

/* Forget a registration; items already queued keep their reference and play to the end. */
int rtp_media_remove(rtp_engine *e, int32_t id)
{
    rtp_media *m = rtp_media_lookup(e, id);
    if (!m)
        return RTP_E_NOLEG;
    m->registered = 0;
    media_free_if_unused(e, m);
    return RTP_OK;
}

void rtp_media_release(rtp_engine *e, rtp_media *m)
{
    m->refs--;
    media_free_if_unused(e, m);
}

static void item_free(rtp_engine *e, rtp_play_item *item)
{
    if (item->media)
        rtp_media_release(e, item->media);
    free(item);
}

void rtp_play_items_free(rtp_engine *e, rtp_play_item *items)
{
    while (items) {
        rtp_play_item *next = items->next;
        item_free(e, items);
        items = next;
    }
}

static void done(rtp_engine *e, rtp_leg *leg, rtp_play_item *item, int stopped)
{
    rtp_event ev = {.type = RTP_EV_PLAY_DONE, .leg = leg->handle, .item = item->index,
                    .flag = (uint8_t)stopped};
    rtp_event_push(e, &ev);
}

/* Append items (a list the caller built; media references already taken) to the queue. */
int rtp_play_append(rtp_engine *e, int32_t handle, rtp_play_item *items, int barge_in)
{
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (!leg)
        return RTP_E_NOLEG;
    if (!items)
        return RTP_OK;
    rtp_play *play = &leg->play;
    if (!play->active) {
        play->active = 1;
        play->serial++;
        play->next_tick = e->tick + 1;
    }
    play->barge_in = barge_in;
    if (play->tail)
        play->tail->next = items;
    else
        play->head = items;
    while (items->next)
        items = items->next;
    play->tail = items;
    rtp_timed_update(e, leg);
    return RTP_OK;
}

/* Drop every queued item; with `report`, each gets its "done (stopped)" event. */
void rtp_play_clear(rtp_engine *e, rtp_leg *leg, int report)
{
    rtp_play *play = &leg->play;
    rtp_play_item *item = play->head;
    while (item) {
        rtp_play_item *next = item->next;
        if (report)
            done(e, leg, item, 1);
        item_free(e, item);
        item = next;
    }
    play->head = play->tail = NULL;
    play->active = 0;
    rtp_timed_update(e, leg);
}

int rtp_play_stop(rtp_engine *e, int32_t handle)
{
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (!leg)
        return RTP_E_NOLEG;
    rtp_play_clear(e, leg, 1);
    return RTP_OK;
}

/* Fill up to n samples from one item; returns how many, fewer when the item is finished. */
static size_t item_fill(rtp_play_item *item, int16_t *out, size_t n)
{
    size_t got = 0;
    switch (item->kind) {
    case RTP_ITEM_MEDIA: {
        size_t left = item->media->samples - item->pos;
        got = left < n ? left : n;
        memcpy(out, item->media->pcm + item->pos, got * sizeof *out);
        item->pos += got;
        break;
    }
    case RTP_ITEM_TONE:
        got = tone_gen_fill(&item->tone, out, n);
        break;
    case RTP_ITEM_SILENCE:
        got = item->silence_left < n ? item->silence_left : n;
        memset(out, 0, got * sizeof *out);
        item->silence_left -= (uint32_t)got;
        break;
    default:
        break;
    }
    return got;
}

/* Build one frame; returns 0 when the queue was already empty. */
static int next_frame(rtp_engine *e, rtp_leg *leg, int16_t *pcm, size_t n)
{
    rtp_play *play = &leg->play;
    size_t got = 0;
    while (got < n && play->head) {
        rtp_play_item *item = play->head;
        size_t filled = item_fill(item, pcm + got, n - got);
        got += filled;
        if (got < n || filled == 0) { /* the item ran out within this frame */
            play->head = item->next;
            if (!play->head)
                play->tail = NULL;
            done(e, leg, item, 0);
            item_free(e, item);
        }
    }
    if (got == 0)
        return 0;
    memset(pcm + got, 0, (n - got) * sizeof *pcm);
    return 1;
}

void rtp_play_tick(rtp_engine *e, rtp_leg *leg)
{
    rtp_play *play = &leg->play;
    uint64_t step = (uint64_t)leg->ptime_ms / RTP_TICK_MS;
    size_t n = (size_t)leg->ptime_ms * (RTP_CLOCK_RATE / 1000);
    int frames = 0;
    while (play->active && play->next_tick <= e->tick && frames < CATCH_UP_FRAMES) {
        play->next_tick += step;
        frames++;
        if (leg->te_tx.active)
            continue; /* an RFC 4733 digit owns the stream: playback pauses meanwhile */
        int16_t pcm[RTP_MAX_FRAME];
        if (!next_frame(e, leg, pcm, n)) {
            play->active = 0;
            break;
        }
        uint8_t payload[RTP_MAX_FRAME];
        g711_encode(leg->law, pcm, payload, n);
        rtp_leg_send(e, leg, RTP_SOURCE(RTP_SRC_PLAY, play->serial), 0, leg->pt, play->seq++,
                     play->ts, payload, n);
        play->ts += (uint32_t)n;
        if (!play->head)
            play->active = 0;
    }
    if (play->active && play->next_tick <= e->tick)
        play->next_tick = e->tick + step; /* still behind after catching up: resynchronise */
    rtp_timed_update(e, leg);
}
