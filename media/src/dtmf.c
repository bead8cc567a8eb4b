/* In-band DTMF detector (ITU-T Q.23 / Q.24): see dtmf.h for the design summary.
 *
 * Why two stages: the 10 ms stage-1 blocks give the time resolution that Q.24's duration and
 * pause figures need (accept 40 ms, reject 23 ms, pause 40 ms), but a 10 ms window cannot
 * tell 1.5 % from 3.5 % of frequency. Stage 2 looks at longer per-tone windows only when a key
 * is a candidate, so it costs nothing on speech or silence. All tone measurements are mean
 * powers of a sine (2 |X|^2 / (sum of window)^2), comparable with the window's mean power.
 * tests/unit/test_media_dsp.py holds a numpy twin of every step.
 */
#include "dtmf.h"

#include <math.h>
#include <string.h>

#define DTMF_PI 3.14159265358979323846
#define DTMF_RATE 8000.0

/* Thresholds (mean power of 0 dBm0 = 22827.06^2 / 2; ratios are 10^(dB/10)). */
#define POWER_0DBM0 260537334.12180004
#define LEVEL_STRICT (POWER_0DBM0 * 0.00012589254117941674)  /* -39 dBm0 per tone */
#define LEVEL_SUSTAIN (POWER_0DBM0 * 6.309573444801929e-05)  /* -42 dBm0 per tone */
/* Twist (Q.24: 8 dB normal = row (low group) stronger, 4 dB reverse = column stronger) is
 * decided on the stage-2 windows, which measure both tones alike; the 10 ms blocks only
 * filter, with room for their estimation error. */
#define TWIST_NORMAL 10.0                       /* stage 2: 10 dB normal */
#define TWIST_REVERSE 3.9810717055349722        /* stage 2: 6 dB reverse */
#define TWIST_NORMAL_BLOCK 15.848931924611133   /* strict block: 12 dB */
#define TWIST_REVERSE_BLOCK 6.309573444801933   /* strict block: 8 dB */
#define TWIST_NORMAL_SUSTAIN 25.118864315095795 /* sustained block: 14 dB */
#define TWIST_REVERSE_SUSTAIN 10.0              /* sustained block: 10 dB */
/* A block that is only partly inside a tone shows about that part as purity: at 80 %, the
 * three strict blocks of a key need about 26 ms of tone (23 ms is always rejected); at 60 %,
 * a block at least half inside a pause is not "sustained", so a 40 ms pause always gives the
 * 4 blocks that end a key while a 20 ms gap touches at most 3. */
#define PURITY_STRICT 0.80  /* row + column share of the stage-1 block energy */
#define PURITY_SUSTAIN 0.60
#define PURITY_STAGE2 0.70  /* sum of each tone's share of its own window's energy */
#define HARMONIC_MAX 0.06309573444801933 /* -12 dB relative to the fundamental */
#define SIDE_OFFSET 0.05    /* side bins at +-5 %: the nominal bin wins within +-2.5 % */
#define OCTAVE_TOLERANCE 0.006 /* column within 0.6 % of twice the row: a harmonic */
#define RUN_TO_CONFIRM 3    /* consecutive strict blocks before stage 2 */
#define OFF_BLOCKS_TO_END 4 /* blocks without "sustained" that end a key */

static const char dtmf_keys[4][4] = {
    {'1', '2', '3', 'A'},
    {'4', '5', '6', 'B'},
    {'7', '8', '9', 'C'},
    {'*', '0', '#', 'D'},
};
/* rows 697 770 852 941 Hz, columns 1209 1336 1477 1633 Hz */
static const double dtmf_freqs[8] = {697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0};
/* 2 cos(2 pi f / 8000) */
static const double stage1_coeff[8] = {
    1.7077378093489017, 1.6452810360417196, 1.56868698386682, 1.4782045682401759,
    1.1641040230273316, 0.9963702106789817, 0.7986183892266362, 0.568532706775202,
};
/* stage-2 window lengths: round(20 periods), so every tone is seen with the same resolution
 * relative to its frequency (the side bins at +-5 % are one Hann bin away) */
static const int stage2_length[8] = {230, 208, 188, 170, 132, 120, 108, 98};
/* Hann window sin^2(pi (n + 0.5) / 80): sum 40, sum of squares 30 */
static const double hann80[DTMF_BLOCK] = {
    0.00038548187963853255, 0.0034657715225368518, 0.009607359798384776, 0.01877238177317635,
    0.030904332038757934, 0.04592841308745934, 0.06375199646360144, 0.08426519384872735,
    0.10734153455962751, 0.13283874528215722, 0.16059962723352914, 0.19045302534508302,
    0.22221488349019888, 0.25568937925152246, 0.2906701312312859, 0.32694147146125346,
    0.3642797750674629, 0.40245483899193585, 0.44123130127108123, 0.48037009212046566,
    0.5196299078795342, 0.5587686987289188, 0.5975451610080642, 0.6357202249325372,
    0.6730585285387463, 0.7093298687687138, 0.7443106207484775, 0.7777851165098012,
    0.8095469746549169, 0.8394003727664707, 0.8671612547178428, 0.8926584654403725,
    0.9157348061512726, 0.9362480035363985, 0.9540715869125408, 0.9690956679612422,
    0.9812276182268237, 0.9903926402016151, 0.9965342284774632, 0.9996145181203614,
    0.9996145181203614, 0.9965342284774632, 0.9903926402016153, 0.9812276182268237,
    0.969095667961242, 0.9540715869125408, 0.9362480035363987, 0.9157348061512726,
    0.8926584654403725, 0.8671612547178428, 0.8394003727664707, 0.8095469746549171,
    0.7777851165098012, 0.7443106207484776, 0.7093298687687144, 0.6730585285387466,
    0.6357202249325371, 0.5975451610080639, 0.5587686987289188, 0.5196299078795344,
    0.48037009212046566, 0.44123130127108134, 0.4024548389919363, 0.364279775067463,
    0.32694147146125346, 0.29067013123128577, 0.25568937925152246, 0.22221488349019908,
    0.19045302534508302, 0.1605996272335293, 0.13283874528215756, 0.10734153455962767,
    0.0842651938487274, 0.06375199646360133, 0.04592841308745935, 0.030904332038758014,
    0.018772381773176357, 0.00960735979838482, 0.003465771522536906, 0.0003854818796385417,
};

void dtmf_detector_reset(dtmf_detector *d)
{
    memset(d, 0, sizeof(*d));
}

void dtmf_detector_init(dtmf_detector *d)
{
    dtmf_detector_reset(d);
}

int dtmf_detector_last(const dtmf_detector *d, dtmf_event *ev)
{
    if (!d->last_valid)
        return -1;
    *ev = d->last;
    if (d->on_digit) {
        ev->duration_samples = d->on_end - d->on_start;
        return 1;
    }
    return 0;
}

/* Mean power of the sine at freq in the window-weighted samples: 2 |X|^2 / (sum w)^2. */
static double goertzel_power(double s1, double s2, double coeff, double window_sum)
{
    double power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    return 2.0 * power / (window_sum * window_sum);
}

/* Stage-2 measurement of one tone over the last `length` samples, Hann-windowed. */
typedef struct {
    double nominal; /* mean power at the nominal frequency */
    double lower;   /* at nominal * (1 - SIDE_OFFSET) */
    double upper;   /* at nominal * (1 + SIDE_OFFSET) */
    double mean;    /* mean power of the windowed samples */
} tone_measure;

static void measure_tone(const dtmf_detector *d, double freq, int length, tone_measure *m)
{
    const double coeff[3] = {
        2.0 * cos(2.0 * DTMF_PI * freq / DTMF_RATE),
        2.0 * cos(2.0 * DTMF_PI * freq * (1.0 - SIDE_OFFSET) / DTMF_RATE),
        2.0 * cos(2.0 * DTMF_PI * freq * (1.0 + SIDE_OFFSET) / DTMF_RATE),
    };
    double s1[3] = {0.0, 0.0, 0.0}, s2[3] = {0.0, 0.0, 0.0};
    double energy = 0.0;
    /* window sin^2(pi (n + 0.5) / L) = (1 - cos(2 pi (n + 0.5) / L)) / 2, cos by rotation */
    double step_cos = cos(2.0 * DTMF_PI / length), step_sin = sin(2.0 * DTMF_PI / length);
    double wc = cos(DTMF_PI / length), ws = sin(DTMF_PI / length);
    uint32_t first = d->sample_count - (uint32_t)length;
    for (int n = 0; n < length; n++) {
        double x = d->history[(first + (uint32_t)n) % DTMF_HISTORY];
        double xw = x * (0.5 - 0.5 * wc);
        energy += xw * xw;
        for (int k = 0; k < 3; k++) {
            double s0 = xw + coeff[k] * s1[k] - s2[k];
            s2[k] = s1[k];
            s1[k] = s0;
        }
        double c = wc * step_cos - ws * step_sin;
        ws = ws * step_cos + wc * step_sin;
        wc = c;
    }
    double window_sum = 0.5 * length;
    m->nominal = goertzel_power(s1[0], s2[0], coeff[0], window_sum);
    m->lower = goertzel_power(s1[1], s2[1], coeff[1], window_sum);
    m->upper = goertzel_power(s1[2], s2[2], coeff[2], window_sum);
    m->mean = energy / (0.375 * length);
}

/* Mean power at freq over the last stage-1 block (Hann 80): wide bins, so a harmonic of a
 * slightly detuned tone still falls inside. */
static double block_power(const dtmf_detector *d, double freq)
{
    double coeff = 2.0 * cos(2.0 * DTMF_PI * freq / DTMF_RATE);
    double s1 = 0.0, s2 = 0.0;
    uint32_t first = d->sample_count - DTMF_BLOCK;
    for (int n = 0; n < DTMF_BLOCK; n++) {
        double xw = d->history[(first + (uint32_t)n) % DTMF_HISTORY] * hann80[n];
        double s0 = xw + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    return goertzel_power(s1, s2, coeff, 40.0);
}

/* Frequency of a measured tone: parabolic interpolation of the log powers of the three bins
 * (spaced SIDE_OFFSET apart), accurate to a few Hz with the Hann window. */
static double estimated_frequency(const tone_measure *m, double nominal)
{
    double a = log(m->lower), b = log(m->nominal), c = log(m->upper);
    double curvature = a - 2.0 * b + c; /* < 0 at a peak */
    double offset = curvature < 0.0 ? 0.5 * (a - c) / curvature : 0.0;
    return nominal * (1.0 + SIDE_OFFSET * offset);
}

/* Stage 2 for the key (row, col): 1 when it is a DTMF key press. */
static int stage2_confirms(const dtmf_detector *d, int row, int col)
{
    tone_measure low, high;
    double f_low = dtmf_freqs[row], f_high = dtmf_freqs[4 + col];
    measure_tone(d, f_low, stage2_length[row], &low);
    measure_tone(d, f_high, stage2_length[4 + col], &high);
    /* frequency: within +-2.5 % of nominal (Q.24: accept 1.5 %, reject 3.5 %) */
    if (low.nominal < low.lower || low.nominal < low.upper)
        return 0;
    if (high.nominal < high.lower || high.nominal < high.upper)
        return 0;
    /* the two tones carry the signal: little else in their windows */
    if (low.mean <= 0.0 || low.lower <= 0.0 || low.upper <= 0.0 || high.mean <= 0.0 ||
        high.lower <= 0.0 || high.upper <= 0.0)
        return 0;
    if (low.nominal / low.mean + high.nominal / high.mean < PURITY_STAGE2)
        return 0;
    /* twist on the equal-length (in periods) windows */
    if (low.nominal > high.nominal * TWIST_NORMAL || high.nominal > low.nominal * TWIST_REVERSE)
        return 0;
    /* harmonics: 3rd of the row, 2nd and 3rd of the column (when below 3.8 kHz); none of
     * them is near a DTMF frequency */
    double limit_low = low.nominal * HARMONIC_MAX, limit_high = high.nominal * HARMONIC_MAX;
    if (block_power(d, 3.0 * f_low) > limit_low)
        return 0;
    if (block_power(d, 2.0 * f_high) > limit_high)
        return 0;
    if (3.0 * f_high < 3800.0 && block_power(d, 3.0 * f_high) > limit_high)
        return 0;
    /* an octave is one note and its 2nd harmonic (flute, whistle): in-spec keys keep the
     * column at least 1.17 % away from twice the row (770 Hz -1.5 %, 1477 Hz +1.5 %) */
    double row_hz = estimated_frequency(&low, f_low);
    double col_hz = estimated_frequency(&high, f_high);
    if (fabs(col_hz - 2.0 * row_hz) < OCTAVE_TOLERANCE * col_hz)
        return 0;
    return 1;
}

/* Stage 1 over the block just completed (the last 80 samples): the mean power of each DTMF
 * tone and of the windowed block. Returns 0 without running the Goertzels when the block is
 * too quiet for any tone to reach LEVEL_SUSTAIN, which is most blocks of a silent direction:
 * by Cauchy-Schwarz a tone's mean power here is at most 3 times the block's raw mean power
 * (2 sum(w^2) / (sum w)^2 = 3 / 80 for this window). */
static int analyse_block(const dtmf_detector *d, double power[8], double *mean)
{
    if (3.0 * (double)d->block_raw_energy / DTMF_BLOCK < LEVEL_SUSTAIN) {
        *mean = 0.0;
        return 0;
    }
    uint32_t first = d->sample_count - DTMF_BLOCK;
    double s1[8] = {0.0}, s2[8] = {0.0};
    double energy = 0.0;
    for (int n = 0; n < DTMF_BLOCK; n++) {
        double xw = d->history[(first + (uint32_t)n) % DTMF_HISTORY] * hann80[n];
        energy += xw * xw;
        /* unrolled so the 8 states stay in registers; c s1 + (x - s2) shortens the
         * dependency chain from sample to sample to one multiply and one add */
#pragma GCC unroll 8
        for (int f = 0; f < 8; f++) {
            double s0 = stage1_coeff[f] * s1[f] + (xw - s2[f]);
            s2[f] = s1[f];
            s1[f] = s0;
        }
    }
    for (int f = 0; f < 8; f++)
        power[f] = goertzel_power(s1[f], s2[f], stage1_coeff[f], 40.0);
    *mean = energy / 30.0;
    return 1;
}

/* A finished stage-1 block: update the key state; 1 when a key press is confirmed now. */
static int end_of_block(dtmf_detector *d, dtmf_event *event)
{
    double power[8], mean;
    int loud = analyse_block(d, power, &mean);
    uint32_t block_start = d->sample_count - DTMF_BLOCK;
    uint32_t block_end = d->sample_count;

    if (!loud) {
        for (int f = 0; f < 8; f++)
            power[f] = 0.0;
    }
    int row = 0, col = 4;
    for (int i = 1; i < 4; i++) {
        if (power[i] > power[row])
            row = i;
        if (power[4 + i] > power[col])
            col = 4 + i;
    }
    double low = power[row], high = power[col];
    char digit = dtmf_keys[row][col - 4];
    int sustained = loud && low >= LEVEL_SUSTAIN && high >= LEVEL_SUSTAIN &&
                    low <= high * TWIST_NORMAL_SUSTAIN && high <= low * TWIST_REVERSE_SUSTAIN &&
                    low + high >= PURITY_SUSTAIN * mean;
    int strict = loud && low >= LEVEL_STRICT && high >= LEVEL_STRICT &&
                 low <= high * TWIST_NORMAL_BLOCK && high <= low * TWIST_REVERSE_BLOCK &&
                 low + high >= PURITY_STRICT * mean;

    if (strict) {
        if (d->run_digit == digit) {
            d->run_blocks++;
        } else {
            d->run_digit = digit;
            d->run_blocks = 1;
        }
    } else {
        d->run_digit = 0;
        d->run_blocks = 0;
    }
    if (sustained) {
        if (d->presence_digit != digit) {
            d->presence_digit = digit;
            d->presence_start = block_start;
        }
    } else {
        d->presence_digit = 0;
    }

    if (d->on_digit) {
        if (sustained && digit == d->on_digit) {
            d->off_blocks = 0;
            d->on_end = block_end;
        } else if (++d->off_blocks >= OFF_BLOCKS_TO_END) {
            d->last.duration_samples = d->on_end - d->on_start;
            d->on_digit = 0;
        }
    }
    if (!d->on_digit && strict && d->run_blocks >= RUN_TO_CONFIRM &&
        stage2_confirms(d, row, col - 4)) {
        /* strict implies sustained, so the presence run holds this key */
        d->on_digit = digit;
        d->on_start = d->presence_start;
        d->on_end = block_end;
        d->off_blocks = 0;
        d->last.digit = digit;
        d->last.start_sample = d->on_start;
        d->last.duration_samples = 0;
        d->last_valid = 1;
        *event = d->last;
        return 1;
    }
    return 0;
}

int dtmf_detector_feed(dtmf_detector *d, const int16_t *pcm, size_t n, dtmf_event *out,
                       int max_events)
{
    int count = 0;
    size_t i = 0;
    while (i < n) {
        /* copy up to the end of the block in progress into the history ring */
        size_t run = DTMF_BLOCK - d->block_fill;
        if (run > n - i)
            run = n - i;
        int64_t raw_energy = d->block_raw_energy;
        for (size_t k = 0; k < run; k++) {
            int16_t sample = pcm[i + k];
            d->history[(d->sample_count + (uint32_t)k) % DTMF_HISTORY] = sample;
            raw_energy += (int32_t)sample * sample;
        }
        d->block_raw_energy = raw_energy;
        d->sample_count += (uint32_t)run;
        d->block_fill += (uint32_t)run;
        i += run;
        if (d->block_fill == DTMF_BLOCK) {
            dtmf_event event;
            int confirmed = end_of_block(d, &event);
            d->block_fill = 0;
            d->block_raw_energy = 0;
            if (confirmed) {
                if (count < max_events)
                    out[count++] = event;
                else
                    d->events_dropped++;
            }
        }
    }
    return count;
}
