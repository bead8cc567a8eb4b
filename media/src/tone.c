/* Tone and cadence generation: two recursive oscillators (a rotation per sample, renormalised
 * once per call) instead of sin() per sample or a table, so any frequency is exact. */
#include "tone.h"

#include <math.h>

#define TONE_PI 3.14159265358979323846

static const char dtmf_keys[4][4] = {
    {'1', '2', '3', 'A'},
    {'4', '5', '6', 'B'},
    {'7', '8', '9', 'C'},
    {'*', '0', '#', 'D'},
};
static const double dtmf_low_hz[4] = {697.0, 770.0, 852.0, 941.0};
static const double dtmf_high_hz[4] = {1209.0, 1336.0, 1477.0, 1633.0};

int tone_dtmf_frequencies(char digit, double *low_hz, double *high_hz)
{
    if (digit >= 'a' && digit <= 'd')
        digit = (char)(digit - 'a' + 'A');
    for (int row = 0; row < 4; row++) {
        for (int col = 0; col < 4; col++) {
            if (dtmf_keys[row][col] == digit) {
                *low_hz = dtmf_low_hz[row];
                *high_hz = dtmf_high_hz[col];
                return 0;
            }
        }
    }
    return -1;
}

static uint32_t ms_to_samples(uint32_t ms)
{
    uint64_t samples = (uint64_t)ms * (TONE_SAMPLE_RATE / 1000);
    return samples > UINT32_MAX ? UINT32_MAX : (uint32_t)samples;
}

static void restart_oscillators(tone_gen *t)
{
    for (int i = 0; i < 2; i++) {
        t->osc_cos[i] = 1.0;
        t->osc_sin[i] = 0.0;
    }
}

void tone_gen_init(tone_gen *t, double f1, double f2, double level_dbm0, uint32_t on_ms,
                   uint32_t off_ms, uint32_t repeats)
{
    const double freqs[2] = {f1, f2};
    double amplitude = TONE_DBM0_AMPLITUDE * pow(10.0, level_dbm0 / 20.0);
    for (int i = 0; i < 2; i++) {
        int present = freqs[i] > 0.0 && freqs[i] < TONE_SAMPLE_RATE / 2.0;
        double omega = present ? 2.0 * TONE_PI * freqs[i] / TONE_SAMPLE_RATE : 0.0;
        t->amplitude[i] = present ? amplitude : 0.0;
        t->step_cos[i] = cos(omega);
        t->step_sin[i] = sin(omega);
    }
    restart_oscillators(t);
    t->on_samples = ms_to_samples(on_ms);
    t->off_samples = ms_to_samples(off_ms);
    t->repeats = repeats;
    t->cycles_done = 0;
    t->position = 0;
    /* a finite cadence without any sample has nothing to play */
    t->finished = repeats > 0 && t->on_samples == 0 && t->off_samples == 0;
}

static int16_t saturate(double value)
{
    if (value >= 32767.0)
        return 32767;
    if (value <= -32768.0)
        return -32768;
    return (int16_t)lrint(value);
}

size_t tone_gen_fill(tone_gen *t, int16_t *out, size_t n)
{
    int continuous = t->off_samples == 0 && t->repeats == 0;
    size_t written = 0;
    while (written < n && !t->finished) {
        if (continuous || t->position < t->on_samples) {
            /* tone: run up to the end of the burst or of the buffer */
            size_t run = n - written;
            if (!continuous && run > t->on_samples - t->position)
                run = t->on_samples - t->position;
            for (size_t k = 0; k < run; k++) {
                double sample = 0.0;
                for (int i = 0; i < 2; i++) {
                    sample += t->amplitude[i] * t->osc_sin[i];
                    double c = t->osc_cos[i] * t->step_cos[i] - t->osc_sin[i] * t->step_sin[i];
                    double s = t->osc_sin[i] * t->step_cos[i] + t->osc_cos[i] * t->step_sin[i];
                    t->osc_cos[i] = c;
                    t->osc_sin[i] = s;
                }
                out[written + k] = saturate(sample);
            }
            written += run;
            if (!continuous)
                t->position += (uint32_t)run;
        } else {
            uint32_t cycle = t->on_samples + t->off_samples;
            size_t run = n - written;
            if (run > cycle - t->position)
                run = cycle - t->position;
            for (size_t k = 0; k < run; k++)
                out[written + k] = 0;
            written += run;
            t->position += (uint32_t)run;
        }
        if (!continuous && t->position >= t->on_samples + t->off_samples) {
            t->position = 0;
            t->cycles_done++;
            restart_oscillators(t);
            if (t->repeats > 0 && t->cycles_done >= t->repeats)
                t->finished = 1;
        }
    }
    /* keep |oscillator| = 1 against rounding drift (first-order Newton step) */
    for (int i = 0; i < 2; i++) {
        double norm = t->osc_cos[i] * t->osc_cos[i] + t->osc_sin[i] * t->osc_sin[i];
        double scale = 0.5 * (3.0 - norm);
        t->osc_cos[i] *= scale;
        t->osc_sin[i] *= scale;
    }
    return written;
}

int tone_gen_dtmf(tone_gen *t, char digit, double level_dbm0, uint32_t on_ms)
{
    double low_hz, high_hz;
    if (tone_dtmf_frequencies(digit, &low_hz, &high_hz) != 0)
        return -1;
    tone_gen_init(t, low_hz, high_hz, level_dbm0, on_ms, 0, 1);
    return 0;
}

void tone_gen_ringback_cn(tone_gen *t)
{
    tone_gen_init(t, 450.0, 0.0, -10.0, 1000, 4000, 0);
}

void tone_gen_busy_cn(tone_gen *t)
{
    tone_gen_init(t, 450.0, 0.0, -10.0, 350, 350, 0);
}

void tone_gen_beep(tone_gen *t)
{
    tone_gen_init(t, 1000.0, 0.0, -10.0, 200, 0, 1);
}
