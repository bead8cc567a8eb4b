/* G.711 μ-law and A-law companding (ITU-T G.711, 16-bit linear PCM side).
 *
 * Contract shared by media._dsp and media._rtp (both compile g711.c): these signatures are
 * stable. Linear samples are int16 at the scale of ITU-T G.191: μ-law uses the 14 most
 * significant bits, A-law the 13 most significant bits, negative values by one's complement
 * (so -1..-4 encode like 0..3 in μ-law). Decoding returns the mid-point of the code's
 * interval (μ-law ±32124 max, A-law ±32256 max). Transcoding goes through that linear
 * mid-point (decode, then encode with the other law). No globals; tables are static const.
 */
#ifndef HOTLINE_G711_H
#define HOTLINE_G711_H

#include <stddef.h>
#include <stdint.h>

/* law: G711_ULAW (RTP payload type 0) or G711_ALAW (8) */
enum { G711_ULAW = 0, G711_ALAW = 8 };

uint8_t g711_linear_to_ulaw(int16_t pcm);
int16_t g711_ulaw_to_linear(uint8_t code);
uint8_t g711_linear_to_alaw(int16_t pcm);
int16_t g711_alaw_to_linear(uint8_t code);

/* Code-to-code conversion (RTP leg transcoding): out[i] = encode_other(decode(in[i])).
 * in and out may be the same buffer. */
void g711_ulaw_to_alaw(const uint8_t *in, uint8_t *out, size_t n);
void g711_alaw_to_ulaw(const uint8_t *in, uint8_t *out, size_t n);

/* Buffer forms; an unknown law writes silence (linear 0, or the law's zero code). */
void g711_decode(int law, const uint8_t *in, int16_t *out, size_t n);
void g711_encode(int law, const int16_t *in, uint8_t *out, size_t n);

#endif /* HOTLINE_G711_H */
