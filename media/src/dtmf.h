/* In-band DTMF detector (ITU-T Q.23 / Q.24) for 8 kHz 16-bit linear PCM.
 *
 * Contract shared by media._dsp and media._rtp (both compile dtmf.c): these signatures are
 * stable, the struct is complete here so a leg can embed it (no malloc, no globals) and its
 * fields are private to dtmf.c.
 *
 * Design (dtmf.c has the details and the reasons):
 * - stage 1, every 10 ms block of 80 samples: Hann-windowed Goertzel at the 8 DTMF
 *   frequencies and the block energy; a block is "strict" when the strongest row and column
 *   tones are each >= -39 dBm0, within 12 dB / 8 dB of each other and together hold >= 80 %
 *   of the block energy, "sustained" with looser limits (-42 dBm0, 14 / 10 dB, 60 %);
 * - stage 2, once 3 consecutive blocks are strict for the same key: per-tone Hann windows of
 *   20 periods (98..230 samples) measure each tone at its nominal frequency and at +-5 %:
 *   the nominal bin must be the strongest (tone within 2.5 % of nominal: Q.24 accepts 1.5 %,
 *   rejects 3.5 %); both tones hold >= 70 % of their windows' energy; twist <= 10 dB normal
 *   (row stronger) and <= 6 dB reverse (Q.24: 8 and 4); the row's 3rd harmonic and the
 *   column's 2nd and 3rd are >= 12 dB down, and the column is not the row's octave (speech
 *   and music are rich in harmonics, keypads are not). The key is then reported;
 * - the key ends after 4 blocks (~40 ms) without "sustained", so a lost 20 ms frame inside a
 *   tone is bridged while a 40 ms interdigit pause separates two presses.
 * Timing: tones of 36 ms and more are accepted, 23 ms and less rejected (Q.24: 40 / 23 ms);
 * start_sample is accurate to about 5 ms. dtmf_detector_last() describes the newest key only:
 * when a key ends and the next one starts within one feed call, the first one's duration is
 * not kept (only happens without the 40 ms pause that Q.24 requires).
 * Levels: 0 dBm0 is a sine of amplitude 22827 (3.14 dB below a full-scale int16 sine).
 */
#ifndef HOTLINE_DTMF_H
#define HOTLINE_DTMF_H

#include <stddef.h>
#include <stdint.h>

#define DTMF_BLOCK 80     /* stage-1 block: 10 ms */
#define DTMF_HISTORY 256  /* ring of recent samples for stage 2 (longest window: 230) */

typedef struct {
    char digit;                /* '0'-'9', '*', '#', 'A'-'D' */
    uint32_t start_sample;     /* relative to the detector's sample counter (wraps at 2^32) */
    uint32_t duration_samples; /* 0 while the key is still pressed */
} dtmf_event;

typedef struct dtmf_detector {
    /* sample clock and recent samples */
    uint32_t sample_count; /* samples fed since init/reset */
    uint32_t block_fill;   /* samples of the block in progress */
    int64_t block_raw_energy; /* sum of their squares */
    int16_t history[DTMF_HISTORY];
    /* decisions */
    char on_digit;         /* key currently reported as pressed, 0 when none */
    uint32_t on_start;
    uint32_t on_end;       /* end of the last "sustained" block */
    int off_blocks;        /* consecutive blocks without "sustained" while on */
    char run_digit;        /* key of the current run of strict blocks */
    int run_blocks;
    char presence_digit;   /* key of the current run of sustained blocks */
    uint32_t presence_start;
    dtmf_event last;       /* most recent key press, see dtmf_detector_last() */
    int last_valid;
    uint32_t events_dropped; /* events beyond max_events in a feed call */
} dtmf_detector;

void dtmf_detector_init(dtmf_detector *d);
void dtmf_detector_reset(dtmf_detector *d);
/* Feed any number of samples (e.g. 160 = one 20 ms frame). Writes at most max_events events
   to out and returns how many; an event is reported once per key press as soon as it is
   confirmed (start_sample relative to the detector's sample counter), duration filled when
   known (0 if still on). Events beyond max_events are counted in events_dropped. */
int dtmf_detector_feed(dtmf_detector *d, const int16_t *pcm, size_t n, dtmf_event *out,
                       int max_events);
/* The most recent key press with its duration so far (still on) or final (ended).
 * Returns 1 if the key is still pressed, 0 if it has ended, -1 if there was none. */
int dtmf_detector_last(const dtmf_detector *d, dtmf_event *ev);

#endif /* HOTLINE_DTMF_H */
