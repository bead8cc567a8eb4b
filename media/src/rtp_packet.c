/* RTP packet layout (RFC 3550 §5.1) and the outgoing stream's continuity mapping. */
#include "rtp_internal.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Parse the fixed header, skip CSRCs and a header extension, strip padding.
 * Returns 0, or -1 when the packet is not RTP version 2 or is truncated. */
int rtp_packet_parse(const uint8_t *buf, size_t len, rtp_packet *p)
{
    if (len < 12 || (buf[0] >> 6) != 2)
        return -1;
    size_t off = 12 + 4u * (buf[0] & 0x0f);
    if (off > len)
        return -1;
    if (buf[0] & 0x10) { /* X: 16-bit profile data, 16-bit length in words (§5.3.1) */
        if (off + 4 > len)
            return -1;
        off += 4 + 4u * rd16(buf + off + 2);
        if (off > len)
            return -1;
    }
    size_t end = len;
    if (buf[0] & 0x20) { /* P: the last octet counts the padding, itself included */
        uint8_t pad = buf[len - 1];
        if (pad == 0 || pad > end - off)
            return -1;
        end -= pad;
    }
    p->marker = buf[1] >> 7;
    p->pt = buf[1] & 0x7f;
    p->seq = rd16(buf + 2);
    p->ts = rd32(buf + 4);
    p->ssrc = rd32(buf + 8);
    p->payload = buf + off;
    p->payload_len = end - off;
    return 0;
}

/* RFC 5761 §4: with RTP and RTCP on one port, octet 2 in 192..223 means RTCP. */
int rtp_is_rtcp(const uint8_t *buf, size_t len)
{
    return len >= 8 && (buf[0] >> 6) == 2 && buf[1] >= 192 && buf[1] <= 223;
}

size_t rtp_header_write(uint8_t *b, int marker, int pt, uint16_t seq, uint32_t ts, uint32_t ssrc)
{
    b[0] = 0x80; /* V=2, P=0, X=0, CC=0 */
    b[1] = (uint8_t)((marker ? 0x80 : 0) | (pt & 0x7f));
    b[2] = (uint8_t)(seq >> 8);
    b[3] = (uint8_t)seq;
    b[4] = (uint8_t)(ts >> 24);
    b[5] = (uint8_t)(ts >> 16);
    b[6] = (uint8_t)(ts >> 8);
    b[7] = (uint8_t)ts;
    b[8] = (uint8_t)(ssrc >> 24);
    b[9] = (uint8_t)(ssrc >> 16);
    b[10] = (uint8_t)(ssrc >> 8);
    b[11] = (uint8_t)ssrc;
    return 12;
}

void rtp_out_init(rtp_out *o, uint32_t ssrc)
{
    o->ssrc = ssrc;
    o->started = 0;
    o->source = 0;
    o->packets = o->octets = 0;
}

static uint32_t elapsed_samples(const rtp_out *o, uint64_t now_ns)
{
    if (now_ns <= o->last_ns)
        return 0;
    return (uint32_t)((now_ns - o->last_ns) * RTP_CLOCK_RATE / 1000000000ULL);
}

/* The timestamp a packet sampled now would carry in this stream. */
uint32_t rtp_out_ts_now(const rtp_out *o, uint64_t now_ns)
{
    return o->started ? o->ts + elapsed_samples(o, now_ns) : o->ts;
}

/* Map a packet of `source` (its own sequence/timestamp space) into the leg's stream.
 *
 * While the source stays the same the mapping is a constant offset, so gaps and reordering
 * the source had stay visible to the far end's loss and jitter statistics. When the source
 * changes (new SSRC after hold or transfer, playback, mixer, DTMF generation) the next
 * sequence number follows the highest one sent, and the timestamp advances by the wall-clock
 * time since the last packet, so the far end sees one stream whose timestamps keep real time
 * (RFC 3550 §5.1; the marker bit flags the discontinuity as a talkspurt start, RFC 3551 §4.1).
 */
void rtp_out_map(rtp_out *o, uint64_t source, uint16_t in_seq, uint32_t in_ts, uint64_t now_ns,
                 uint16_t *seq, uint32_t *ts, int *marker)
{
    if (!o->started || o->source != source) {
        uint16_t next_seq = (uint16_t)(o->seq + 1);
        uint32_t next_ts = o->ts;
        if (o->started) {
            uint32_t gap = elapsed_samples(o, now_ns);
            next_ts += gap ? gap : 1;
        }
        o->seq_off = (uint16_t)(next_seq - in_seq);
        o->ts_off = next_ts - in_ts;
        o->source = source;
        *marker = 1;
        if (!o->started) {
            o->started = 1;
            o->seq = (uint16_t)(next_seq - 1);
        }
    }
    *seq = (uint16_t)(in_seq + o->seq_off);
    *ts = in_ts + o->ts_off;
    if ((int16_t)(*seq - o->seq) > 0) {
        o->seq = *seq;
        o->ts = *ts;
        o->last_ns = now_ns;
    }
}
