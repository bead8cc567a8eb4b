/* Tone and cadence generation at 8 kHz, 16-bit linear PCM (ringback, busy, beep, DTMF).
 *
 * Contract shared by media._dsp and media._rtp (both compile tone.c): these signatures are
 * stable. A generator is a plain struct (no malloc, no globals): up to two sine frequencies,
 * each at its own level in dBm0, switched on for on_ms and off for off_ms per cadence cycle.
 * A cycle is on_ms of tone followed by off_ms of silence; repeats counts cycles (0 = forever);
 * off_ms = 0 with repeats = 0 is a continuous tone. Each burst starts at phase 0.
 * Levels: 0 dBm0 is a sine of amplitude TONE_DBM0_AMPLITUDE, 3.14 dB below a full-scale int16
 * sine (the G.711 convention used by ITU-T G.711 and spandsp). Sums are saturated to int16.
 */
#ifndef HOTLINE_TONE_H
#define HOTLINE_TONE_H

#include <stddef.h>
#include <stdint.h>

#define TONE_SAMPLE_RATE 8000
#define TONE_DBM0_AMPLITUDE 22827.06 /* 32768 * 10^(-3.14/20) */

typedef struct tone_gen {
    double amplitude[2];           /* peak amplitude per frequency, 0 when absent */
    double step_cos[2], step_sin[2]; /* per-sample phase rotation */
    double osc_cos[2], osc_sin[2]; /* oscillator state: cos and sin of the current phase */
    uint32_t on_samples;           /* tone part of a cycle */
    uint32_t off_samples;          /* silent part of a cycle */
    uint32_t repeats;              /* cycles to play, 0 = forever */
    uint32_t cycles_done;          /* completed cycles */
    uint32_t position;             /* sample index within the current cycle */
    int finished;                  /* 1 once a finite cadence has ended */
} tone_gen;

/* up to two frequencies (Hz; 0, negative or >= 4000 means absent), level in dBm0 each,
 * cadence on/off ms (off_ms=0: continuous), repeat count (0 = forever) */
void tone_gen_init(tone_gen *t, double f1, double f2, double level_dbm0, uint32_t on_ms,
                   uint32_t off_ms, uint32_t repeats);
/* writes n samples, returns n or fewer when a finite cadence ended (0 once finished) */
size_t tone_gen_fill(tone_gen *t, int16_t *out, size_t n);
/* One DTMF key (0-9, *, #, A-D, a-d): both tones at level_dbm0, on for on_ms, then done.
 * 0 ok, -1 bad digit (t is then left unchanged). */
int tone_gen_dtmf(tone_gen *t, char digit, double level_dbm0, uint32_t on_ms);
/* Row (low group) and column (high group) frequency of a DTMF key; 0 ok, -1 bad digit. */
int tone_dtmf_frequencies(char digit, double *low_hz, double *high_hz);

/* Presets: Chinese network tones (450 Hz) and a beep, all at -10 dBm0 */
void tone_gen_ringback_cn(tone_gen *t); /* 450 Hz, 1 s on, 4 s off, forever */
void tone_gen_busy_cn(tone_gen *t);     /* 450 Hz, 0.35 s on, 0.35 s off, forever */
void tone_gen_beep(tone_gen *t);        /* 1 kHz, 0.2 s, once */

#endif /* HOTLINE_TONE_H */
