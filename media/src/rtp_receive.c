/* The receive path: one recvmmsg batch per ready socket, latching, statistics, and the
 * hand-over of each packet to the bridge, the mixer, the record tap and DTMF detection. */
#include "rtp_internal.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#define RECV_BATCH 8 /* a leg gets one packet per 20 ms: a small batch keeps the buffers in cache */
/* A latched source that has been silent this long may be replaced by a new one (NAT rebinding,
 * a phone that changed its port); until then packets from elsewhere are dropped. */
#define RELATCH_NS 1000000000ULL

/* Symmetric RTP (RFC 4961): send to where the packets come from. Returns 0 to drop.
 * The address the party's SDP names takes the latch back at once: a stray stream that
 * reached the port first (the previous owner's peer still sending, a scanner) must not hold
 * the leg for a second while the real party talks and its prompt or call goes elsewhere. */
static int latch(rtp_engine *e, rtp_leg *leg, const rtp_addr *from)
{
    if (leg->latched_ok && rtp_addr_equal(&leg->latched, from)) {
        leg->latched_last_ns = e->now_ns;
        return 1;
    }
    int relatch = leg->latched_ok;
    int from_sdp = leg->has_remote && rtp_addr_equal(&leg->remote, from);
    if (relatch && !from_sdp && e->now_ns - leg->latched_last_ns < RELATCH_NS)
        return 0;
    leg->latched = *from;
    leg->latched_ok = 1;
    leg->latched_last_ns = e->now_ns;
    rtp_event ev = {.type = RTP_EV_FIRST_PACKET, .leg = leg->handle, .flag = (uint8_t)relatch};
    rtp_addr_to_event(from, &ev);
    rtp_event_push(e, &ev);
    return 1;
}

/* Audio from `leg` to its bridged peer: re-sent with the peer's SSRC and continuity, and
 * transcoded when the peer negotiated the other G.711 law. */
static void relay_audio(rtp_engine *e, rtp_leg *leg, const rtp_packet *p, int law)
{
    rtp_leg *peer = leg->peer;
    if (!peer || peer->mix || peer->play.active || peer->te_tx.active || peer->pt < 0)
        return;
    const uint8_t *payload = p->payload;
    uint8_t converted[RTP_MAX_PACKET];
    if (law != peer->law) {
        if (law == G711_ULAW)
            g711_ulaw_to_alaw(p->payload, converted, p->payload_len);
        else
            g711_alaw_to_ulaw(p->payload, converted, p->payload_len);
        payload = converted;
    }
    uint64_t source = RTP_SOURCE(RTP_SRC_RELAY, p->ssrc ^ (uint32_t)leg->handle);
    rtp_leg_send(e, peer, source, p->marker, peer->pt, p->seq, p->ts, payload, p->payload_len);
}

/* RFC 4733 relay: the event goes on with the peer's negotiated payload type. */
static void relay_event(rtp_engine *e, rtp_leg *leg, const rtp_packet *p)
{
    rtp_leg *peer = leg->peer;
    if (!peer || peer->te_pt < 0 || peer->mix || peer->play.active || peer->te_tx.active)
        return;
    uint64_t source = RTP_SOURCE(RTP_SRC_RELAY, p->ssrc ^ (uint32_t)leg->handle);
    rtp_leg_send(e, peer, source, p->marker, peer->te_pt, p->seq, p->ts, p->payload,
                 p->payload_len);
}

static void inband_report(rtp_engine *e, rtp_leg *leg, char digit, uint32_t samples)
{
    rtp_event ev = {.type = RTP_EV_DTMF, .leg = leg->handle, .digit = digit,
                    .flag = RTP_DTMF_INBAND, .value = (int32_t)(samples / (RTP_CLOCK_RATE / 1000))};
    rtp_event_push(e, &ev);
    leg->inband_digit = 0;
}

/* The detector confirms a key while it is still pressed: barge-in acts then, and the digit is
 * reported once the key has ended, with its duration (like an RFC 4733 end packet). */
static void inband_detect(rtp_engine *e, rtp_leg *leg, const int16_t *pcm, size_t n)
{
    dtmf_event found[8];
    int count = dtmf_detector_feed(leg->detector, pcm, n, found, 8);
    for (int i = 0; i < count; i++) {
        if (leg->inband_digit) /* a new key before the last one's end was seen */
            inband_report(e, leg, leg->inband_digit, 0);
        if (leg->play.active && leg->play.barge_in)
            rtp_play_clear(e, leg, 1);
        if (found[i].duration_samples > 0)
            inband_report(e, leg, found[i].digit, found[i].duration_samples);
        else
            leg->inband_digit = found[i].digit;
    }
    dtmf_event last;
    if (leg->inband_digit && dtmf_detector_last(leg->detector, &last) == 0)
        inband_report(e, leg, last.digit, last.duration_samples);
}

/* Audio stopped while a key was on: report it with the duration seen so far. */
void rtp_inband_check_stale(rtp_engine *e, rtp_leg *leg)
{
    dtmf_event last;
    if (leg->inband_digit && e->now_ns - leg->last_rx_ns > 200000000ULL) {
        int state = dtmf_detector_last(leg->detector, &last);
        inband_report(e, leg, leg->inband_digit, state >= 0 ? last.duration_samples : 0);
    }
}

static void handle_rtp(rtp_engine *e, rtp_leg *leg, const uint8_t *buf, size_t len,
                       const rtp_addr *from)
{
    if (rtp_is_rtcp(buf, len)) { /* RTCP multiplexed on the RTP port (RFC 5761) */
        rtp_rtcp_receive(e, leg, buf, len, NULL);
        return;
    }
    rtp_packet p;
    if (rtp_packet_parse(buf, len, &p) != 0 || !latch(e, leg, from)) {
        leg->stats.dropped++;
        return;
    }
    leg->stats.packets_in++;
    leg->stats.bytes_in += len;
    leg->last_rx_ns = e->now_ns;
    leg->timeout_reported = 0;
    if (leg->te_pt >= 0 && p.pt == leg->te_pt) {
        rtp_stats_packet(&leg->stats, &p, e->now_ns, 0);
        rtp_te_receive(e, leg, &p);
        relay_event(e, leg, &p);
        return;
    }
    if (p.pt != 0 && p.pt != 8) { /* comfort noise or a codec we do not anchor */
        rtp_stats_packet(&leg->stats, &p, e->now_ns, 0);
        leg->stats.dropped++;
        return;
    }
    rtp_stats_packet(&leg->stats, &p, e->now_ns, 1);
    /* Trust the packet's own payload type: a peer may switch law within its offer. */
    int law = p.pt == 8 ? G711_ALAW : G711_ULAW;
    if (leg->detector || leg->mix || leg->ntaps) {
        int16_t pcm[RTP_MAX_PACKET];
        g711_decode(law, p.payload, pcm, p.payload_len);
        if (leg->detector)
            inband_detect(e, leg, pcm, p.payload_len);
        if (leg->mix)
            rtp_mix_input(leg, pcm, p.payload_len);
        if (leg->ntaps)
            rtp_tap_input(leg, pcm, p.payload_len);
    }
    if (!leg->mix)
        relay_audio(e, leg, &p, law);
}

void rtp_receive_ready(rtp_engine *e, rtp_leg *leg, int rtcp)
{
    uint8_t bufs[RECV_BATCH][RTP_MAX_PACKET];
    rtp_addr from[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    struct mmsghdr msgs[RECV_BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < RECV_BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = sizeof bufs[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    int fd = rtcp ? leg->rtcp_fd : leg->rtp_fd;
    int32_t handle = leg->handle;
    int n = recvmmsg(fd, msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
    for (int i = 0; i < n; i++) {
        /* A DTMF event can stop playback but never frees the leg; still, look it up again
         * rather than trust the pointer across callbacks. */
        if (rtp_leg_lookup(e, handle) != leg)
            return;
        /* A source of the leg's own family, whole (an IPv6 leg's sockets are V6ONLY). */
        if (from[i].sa.sa_family != leg->family ||
            msgs[i].msg_hdr.msg_namelen != rtp_addr_len(&from[i]))
            continue;
        size_t len = msgs[i].msg_len;
        if (leg->srtp && rtp_srtp_unprotect(leg, bufs[i], &len, rtcp) != 0)
            continue; /* SRTP: forged, replayed or damaged; dropped and counted */
        if (rtcp)
            rtp_rtcp_receive(e, leg, bufs[i], len, &from[i]);
        else
            handle_rtp(e, leg, bufs[i], len, &from[i]);
    }
}
