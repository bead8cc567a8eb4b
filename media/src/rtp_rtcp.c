/* RTCP: the engine terminates it on each leg instead of passing it through.
 *
 * Why: after SSRC/sequence/timestamp rewriting and transcoding, the far end's sender reports
 * describe a stream that no longer exists on the other leg, so relayed SR/RR would be wrong.
 * Each leg therefore sends its own compound SR (or RR before it has sent media) + SDES CNAME
 * every 5 s (RFC 3550 §6.4, §6.5.1, minimum interval §6.2), with a report block about the
 * stream it receives, and reads the remote's SR only for the LSR/DLSR round-trip fields.
 */
#include "rtp_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define RTCP_SR 200
#define RTCP_RR 201
#define RTCP_SDES 202
#define NTP_UNIX_OFFSET 2208988800ULL /* seconds from 1900-01-01 to 1970-01-01 */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void rtp_rtcp_receive(rtp_engine *e, rtp_leg *leg, const uint8_t *buf, size_t len,
                      const rtp_addr *from)
{
    leg->stats.rtcp_in++;
    leg->last_rtcp_ns = e->now_ns; /* a muted phone (no RTP) still reports: not dead */
    leg->timeout_reported = 0;
    if (from) {
        leg->rtcp_latched = *from;
        leg->rtcp_latched_ok = 1;
    }
    /* Walk the compound packet (RFC 3550 §6.1); each length is in 32-bit words minus one. */
    size_t off = 0;
    while (off + 8 <= len && (buf[off] >> 6) == 2) {
        size_t plen = 4u * ((size_t)((buf[off + 2] << 8) | buf[off + 3]) + 1);
        if (off + plen > len)
            break;
        if (buf[off + 1] == RTCP_SR && plen >= 28) {
            /* §6.4.1: LSR is the middle 32 bits of the 64-bit NTP timestamp */
            uint32_t ntp_sec = get32(buf + off + 8), ntp_frac = get32(buf + off + 12);
            leg->stats.lsr = (ntp_sec << 16) | (ntp_frac >> 16);
            leg->stats.lsr_ns = e->now_ns;
        }
        off += plen;
    }
}

static size_t report_block(rtp_engine *e, rtp_leg *leg, uint8_t *p)
{
    rtp_stats *s = &leg->stats;
    int64_t lost = rtp_stats_lost(s);
    if (lost > 0x7fffff)
        lost = 0x7fffff;
    put32(p, s->ssrc);
    put32(p + 4, ((uint32_t)rtp_stats_fraction_lost(s) << 24) | ((uint32_t)lost & 0xffffff));
    put32(p + 8, rtp_stats_ext_max(s));
    put32(p + 12, (uint32_t)s->jitter);
    uint32_t dlsr = 0;
    if (s->lsr_ns) /* delay since last SR in units of 1/65536 s */
        dlsr = (uint32_t)(((e->now_ns - s->lsr_ns) << 16) / 1000000000ULL);
    put32(p + 16, s->lsr);
    put32(p + 20, s->lsr_ns ? dlsr : 0);
    return 24;
}

void rtp_rtcp_send_report(rtp_engine *e, rtp_leg *leg)
{
    rtp_addr to;
    if (leg->rtcp_latched_ok) {
        to = leg->rtcp_latched;
    } else if (leg->has_remote) {
        to = leg->remote; /* RFC 3550 §11: RTCP on the next higher (odd) port */
        rtp_addr_set_port(&to, (uint16_t)(rtp_addr_port(&to) + 1));
    } else {
        return;
    }
    uint8_t buf[256 + RTP_SRTP_ROOM];
    size_t off = 0;
    int blocks = leg->stats.have_seq ? 1 : 0;
    if (leg->out.packets > 0) {
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        buf[0] = (uint8_t)(0x80 | blocks);
        buf[1] = RTCP_SR;
        size_t words = (28 + 24u * blocks) / 4 - 1;
        buf[2] = (uint8_t)(words >> 8);
        buf[3] = (uint8_t)words;
        put32(buf + 4, leg->out.ssrc);
        put32(buf + 8, (uint32_t)((uint64_t)wall.tv_sec + NTP_UNIX_OFFSET));
        put32(buf + 12, (uint32_t)(((uint64_t)wall.tv_nsec << 32) / 1000000000ULL));
        put32(buf + 16, rtp_out_ts_now(&leg->out, e->now_ns));
        put32(buf + 20, (uint32_t)leg->out.packets);
        put32(buf + 24, (uint32_t)leg->out.octets);
        off = 28;
    } else {
        buf[0] = (uint8_t)(0x80 | blocks);
        buf[1] = RTCP_RR;
        size_t words = (8 + 24u * blocks) / 4 - 1;
        buf[2] = (uint8_t)(words >> 8);
        buf[3] = (uint8_t)words;
        put32(buf + 4, leg->out.ssrc);
        off = 8;
    }
    if (blocks)
        off += report_block(e, leg, buf + off);
    /* SDES with a CNAME (§6.5.1), required in every compound packet (§6.1). */
    char cname[80]; /* "hotline@" + the longest IPv6 text: at most 8 + 45 octets */
    char ip[INET6_ADDRSTRLEN];
    rtp_addr_format(leg->family == AF_INET6 ? &e->local6 : &e->local4, ip, sizeof ip);
    int clen = snprintf(cname, sizeof cname, "hotline@%s", ip);
    if (clen < 0 || (size_t)clen >= sizeof cname)
        return;
    size_t sdes = off;
    buf[off] = 0x81; /* V=2, SC=1 */
    buf[off + 1] = RTCP_SDES;
    put32(buf + off + 4, leg->out.ssrc);
    size_t item = off + 8;
    buf[item] = 1; /* CNAME */
    buf[item + 1] = (uint8_t)clen;
    memcpy(buf + item + 2, cname, (size_t)clen);
    size_t end = item + 2 + (size_t)clen;
    do /* the item list ends with at least one null octet, padded to 32 bits */
        buf[end++] = 0;
    while ((end - sdes) % 4);
    size_t words = (end - sdes) / 4 - 1;
    buf[sdes + 2] = (uint8_t)(words >> 8);
    buf[sdes + 3] = (uint8_t)words;
    if (leg->srtp && rtp_srtp_protect(leg, buf, &end, sizeof buf, 1) != 0)
        return; /* SRTCP (RFC 3711 §3.4): dropped and counted */
    if (sendto(leg->rtcp_fd, buf, end, 0, &to.sa, rtp_addr_len(&to)) > 0)
        leg->stats.rtcp_out++;
}
