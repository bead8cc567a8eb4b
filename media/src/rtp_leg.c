/* Legs: port pairs, remote address and codec from SDP, direction, bridging, sending. */
#include "rtp_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/ip.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* RFC 4594 §4.2: telephony media is marked Expedited Forwarding (DSCP 46). */
#define TOS_EF 0xb8

static int open_socket(rtp_engine *e, int family, uint16_t port)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    rtp_addr sa = family == AF_INET6 ? e->local6 : e->local4;
    rtp_addr_set_port(&sa, port);
    int tos = TOS_EF, on = 1;
    if (family == AF_INET6) {
        /* IPv6 only: IPv4 legs have sockets of their own on local_ip. */
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof tos); /* best effort */
    } else {
        (void)setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos); /* best effort: marking only */
    }
    if (bind(fd, &sa.sa, rtp_addr_len(&sa)) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Bind RTP on `port` and RTCP on port + 1; RTP_E_PORTS when either is taken. */
static int open_pair(rtp_engine *e, int family, uint16_t port, int *rtp_fd, int *rtcp_fd)
{
    *rtp_fd = open_socket(e, family, port);
    if (*rtp_fd < 0)
        return errno == EADDRINUSE ? RTP_E_PORTS : RTP_E_SYS;
    *rtcp_fd = open_socket(e, family, (uint16_t)(port + 1));
    if (*rtcp_fd < 0) {
        int saved = errno;
        close(*rtp_fd);
        errno = saved;
        return saved == EADDRINUSE ? RTP_E_PORTS : RTP_E_SYS;
    }
    return RTP_OK;
}

/* Bind the next free even/odd pair of the range in `family` (the leg's port and fds);
 * RTP_E_PORTS when every pair is taken. */
static int allocate_ports(rtp_engine *e, int family, int *rtp_fd, int *rtcp_fd, uint16_t *out)
{
    uint32_t pairs = ((uint32_t)e->port_max - e->port_min + 1) / 2;
    for (uint32_t i = 0; i < pairs; i++) {
        uint16_t port = e->port_next;
        e->port_next = (uint16_t)(port + 2);
        if (e->port_next < e->port_min || (uint32_t)e->port_next + 1 > e->port_max)
            e->port_next = e->port_min;
        int rc = open_pair(e, family, port, rtp_fd, rtcp_fd);
        if (rc == RTP_E_PORTS)
            continue;
        if (rc == RTP_OK)
            *out = port;
        return rc;
    }
    return RTP_E_PORTS;
}

static int family_of(rtp_engine *e, int family)
{
    if (family == 4)
        return AF_INET;
    if (family == 6 && e->has_local6)
        return AF_INET6;
    return -1;
}

static int watch(rtp_engine *e, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    return epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int rtp_leg_create(rtp_engine *e, int family, int32_t *handle, uint16_t *port)
{
    int af = family_of(e, family);
    if (af < 0)
        return RTP_E_INVAL;
    if (e->nlegs >= e->max_legs)
        return RTP_E_PORTS;
    uint32_t slot = 0;
    while (slot < e->max_legs && e->slots[slot])
        slot++;
    if (slot == e->max_legs)
        return RTP_E_PORTS;
    rtp_leg *leg = calloc(1, sizeof *leg);
    if (!leg)
        return RTP_E_NOMEM;
    int rc = allocate_ports(e, af, &leg->rtp_fd, &leg->rtcp_fd, &leg->port);
    if (rc != RTP_OK) {
        free(leg);
        return rc;
    }
    leg->family = af;
    e->gens[slot] = (uint16_t)(e->gens[slot] % 0x7fff + 1);
    leg->slot = slot;
    leg->handle = (int32_t)(((uint32_t)e->gens[slot] << 16) | slot);
    if (watch(e, leg->rtp_fd, (uint64_t)leg->handle << 1) < 0 ||
        watch(e, leg->rtcp_fd, ((uint64_t)leg->handle << 1) | 1) < 0) {
        int saved = errno;
        close(leg->rtp_fd);
        close(leg->rtcp_fd);
        free(leg);
        errno = saved;
        return RTP_E_SYS;
    }
    leg->pt = -1;
    leg->law = G711_ULAW;
    leg->ptime_ms = 20;
    leg->te_pt = -1;
    leg->direction = RTP_SENDRECV;
    rtp_out_init(&leg->out, rtp_random32(e));
    leg->out.seq = (uint16_t)rtp_random32(e); /* RFC 3550 §5.1: random initial values */
    leg->out.ts = rtp_random32(e);
    leg->next = e->legs;
    if (e->legs)
        e->legs->prev = leg;
    e->legs = leg;
    e->slots[slot] = leg;
    e->nlegs++;
    *handle = leg->handle;
    *port = leg->port;
    return RTP_OK;
}

/* Unlink and free a leg; everything pointing at it lets go first. */
void rtp_leg_free(rtp_engine *e, rtp_leg *leg)
{
    if (leg->peer) {
        leg->peer->peer = NULL;
        leg->peer = NULL;
    }
    rtp_mix_detach_leg(e, leg);
    rtp_tap_detach_leg(e, leg);
    rtp_play_clear(e, leg, 0);
    leg->te_tx.active = 0;
    leg->te_tx.queued = 0;
    rtp_timed_update(e, leg);
    free(leg->detector);
    rtp_srtp_free(leg);
    close(leg->rtp_fd); /* closing the only descriptor also leaves the epoll set */
    close(leg->rtcp_fd);
    if (leg->prev)
        leg->prev->next = leg->next;
    else
        e->legs = leg->next;
    if (leg->next)
        leg->next->prev = leg->prev;
    e->slots[leg->slot] = NULL;
    e->nlegs--;
    free(leg);
}

/* Move the leg's sockets to the other family (its party's SDP names an address of that
 * family): the same port number when it is free there, else the next free pair. Everything
 * learnt about the old remote goes; bridge, mix, taps and playback stay. */
int rtp_leg_set_family(rtp_engine *e, int32_t handle, int family, uint16_t *port)
{
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (!leg)
        return RTP_E_NOLEG;
    int af = family_of(e, family);
    if (af < 0)
        return RTP_E_INVAL;
    if (af == leg->family) {
        *port = leg->port;
        return RTP_OK;
    }
    int rtp_fd, rtcp_fd;
    uint16_t new_port = leg->port;
    int rc = open_pair(e, af, new_port, &rtp_fd, &rtcp_fd);
    if (rc == RTP_E_PORTS)
        rc = allocate_ports(e, af, &rtp_fd, &rtcp_fd, &new_port);
    if (rc != RTP_OK)
        return rc;
    if (watch(e, rtp_fd, (uint64_t)leg->handle << 1) < 0 ||
        watch(e, rtcp_fd, ((uint64_t)leg->handle << 1) | 1) < 0) {
        int saved = errno;
        close(rtp_fd); /* closing also leaves the epoll set */
        close(rtcp_fd);
        errno = saved;
        return RTP_E_SYS;
    }
    close(leg->rtp_fd);
    close(leg->rtcp_fd);
    leg->rtp_fd = rtp_fd;
    leg->rtcp_fd = rtcp_fd;
    leg->port = new_port;
    leg->family = af;
    leg->has_remote = leg->latched_ok = leg->rtcp_latched_ok = 0;
    memset(&leg->remote, 0, sizeof leg->remote);
    *port = new_port;
    return RTP_OK;
}

int rtp_leg_destroy(rtp_engine *e, int32_t handle)
{
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (!leg)
        return RTP_E_NOLEG;
    rtp_leg_free(e, leg);
    return RTP_OK;
}

int rtp_leg_set_remote(rtp_engine *e, int32_t handle, const char *ip, uint16_t port, int pt,
                       int ptime_ms, int te_pt)
{
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (!leg)
        return RTP_E_NOLEG;
    rtp_addr addr;
    int af = rtp_addr_parse(&addr, ip, port);
    if (af < 0 || port == 0)
        return RTP_E_INVAL;
    if (af != leg->family) /* rtp_leg_set_family first */
        return RTP_E_STATE;
    if (pt != 0 && pt != 8) /* G.711 only: PCMU 0, PCMA 8 (RFC 3551 §6) */
        return RTP_E_INVAL;
    if (ptime_ms < 10 || ptime_ms > 30)
        return RTP_E_INVAL;
    if (te_pt >= 0 && (te_pt > 127 || te_pt == 0 || te_pt == 8))
        return RTP_E_INVAL;
    uint64_t now = rtp_now_ns();
    int moved = !leg->has_remote || !rtp_addr_equal(&leg->remote, &addr);
    leg->remote = addr;
    leg->has_remote = 1;
    if (moved) {
        /* New SDP address: learn the source again (re-INVITE after transfer, NAT). */
        leg->latched_ok = 0;
        leg->rtcp_latched_ok = 0;
    }
    leg->pt = pt;
    leg->law = pt == 8 ? G711_ALAW : G711_ULAW;
    leg->ptime_ms = (ptime_ms + 5) / 10 * 10; /* generated media runs on the 10 ms clock */
    leg->te_pt = te_pt < 0 ? -1 : te_pt;
    leg->timeout_base_ns = now;
    leg->timeout_reported = 0;
    if (!leg->next_rtcp_ns) /* first report 1..2 s after the remote is known */
        leg->next_rtcp_ns = now + 1000000000ULL + rtp_random32(e) % 1000000000U;
    return RTP_OK;
}

int rtp_leg_set_direction(rtp_engine *e, int32_t handle, int direction)
{
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (!leg)
        return RTP_E_NOLEG;
    if (direction < RTP_SENDRECV || direction > RTP_INACTIVE)
        return RTP_E_INVAL;
    if (direction == RTP_SENDRECV && leg->direction != RTP_SENDRECV) {
        /* Off hold: the timeout counts from now, not from the last packet before hold. */
        leg->timeout_base_ns = rtp_now_ns();
        leg->timeout_reported = 0;
    }
    leg->direction = direction;
    return RTP_OK;
}

int rtp_leg_bridge(rtp_engine *e, int32_t a, int32_t b)
{
    rtp_leg *la = rtp_leg_lookup(e, a), *lb = rtp_leg_lookup(e, b);
    if (!la || !lb)
        return RTP_E_NOLEG;
    if (la == lb)
        return RTP_E_INVAL;
    if (la->mix || lb->mix)
        return RTP_E_STATE;
    if (la->peer)
        la->peer->peer = NULL;
    if (lb->peer)
        lb->peer->peer = NULL;
    la->peer = lb;
    lb->peer = la;
    return RTP_OK;
}

int rtp_leg_unbridge(rtp_engine *e, int32_t a)
{
    rtp_leg *la = rtp_leg_lookup(e, a);
    if (!la)
        return RTP_E_NOLEG;
    if (la->peer)
        la->peer->peer = NULL;
    la->peer = NULL;
    return RTP_OK;
}

int rtp_leg_set_inband(rtp_engine *e, int32_t handle, int on)
{
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (!leg)
        return RTP_E_NOLEG;
    if (on && !leg->detector) {
        leg->detector = malloc(sizeof *leg->detector);
        if (!leg->detector)
            return RTP_E_NOMEM;
        dtmf_detector_init(leg->detector);
    } else if (!on && leg->detector) {
        free(leg->detector);
        leg->detector = NULL;
        leg->inband_digit = 0;
    }
    return RTP_OK;
}

/* May media go to this leg's remote? Not before we know where, nor when the remote said it
 * will not receive (sendonly or inactive in its SDP, RFC 3264 §6.1). */
int rtp_leg_may_send(const rtp_leg *leg)
{
    return (leg->has_remote || leg->latched_ok) && leg->pt >= 0 &&
           (leg->direction == RTP_SENDRECV || leg->direction == RTP_RECVONLY);
}

/* Send one RTP packet on `leg`, mapped into its outgoing stream (rtp_out_map). */
int rtp_leg_send(rtp_engine *e, rtp_leg *leg, uint64_t source, int marker, int pt, uint16_t in_seq,
                 uint32_t in_ts, const uint8_t *payload, size_t len)
{
    if (!rtp_leg_may_send(leg) || len > RTP_MAX_PACKET - 12)
        return 0;
    uint8_t buf[RTP_MAX_PACKET + RTP_SRTP_ROOM];
    uint16_t seq;
    uint32_t ts;
    if (leg->ntaps && pt == leg->pt)
        rtp_tap_sent(leg, leg->law, payload, len); /* audio, not an RFC 4733 event */
    rtp_out_map(&leg->out, source, in_seq, in_ts, e->now_ns, &seq, &ts, &marker);
    size_t off = rtp_header_write(buf, marker, pt, seq, ts, leg->out.ssrc);
    memcpy(buf + off, payload, len);
    size_t n = off + len;
    if (leg->srtp && rtp_srtp_protect(leg, buf, &n, sizeof buf, 0) != 0)
        return 0; /* dropped and counted */
    const rtp_addr *to = leg->latched_ok ? &leg->latched : &leg->remote;
    ssize_t sent = sendto(leg->rtp_fd, buf, n, 0, &to->sa, rtp_addr_len(to));
    if (sent < 0) {
        leg->stats.dropped++;
        return 0;
    }
    leg->stats.packets_out++;
    leg->stats.bytes_out += (uint64_t)sent;
    leg->out.packets++;
    leg->out.octets += len;
    return 1;
}

/* Dead media (SPEC MED-3): neither RTP nor RTCP from the leg's party for the timeout, only
 * while the remote said sendrecv (not on hold). A phone that mutes or has no sound device
 * sends no RTP but keeps sending RTCP: its call is not released for that. */
/* Whether RTP flows toward `leg` (from its bridged party, or from the node's playback or a
 * mix): only then does RTCP from a leg that sends no RTP keep it alive. A muted phone talks
 * to a caller who streams; when neither side sends RTP, the call's media is dead however
 * faithfully both report. */
static int rtp_flows_toward(const rtp_engine *e, const rtp_leg *leg)
{
    const rtp_leg *peer = leg->peer;
    if (peer != NULL) {
        uint64_t heard = peer->last_rx_ns > peer->timeout_base_ns ? peer->last_rx_ns
                                                                   : peer->timeout_base_ns;
        return e->now_ns < heard || e->now_ns - heard < e->timeout_ns;
    }
    return 1; /* alone: prompts, music or a mix; its own RTCP says the party is there */
}

void rtp_leg_check_timeouts(rtp_engine *e, rtp_leg *leg)
{
    if (!leg->has_remote || leg->direction != RTP_SENDRECV || leg->timeout_reported)
        return;
    uint64_t since = leg->last_rx_ns > leg->timeout_base_ns ? leg->last_rx_ns : leg->timeout_base_ns;
    if (leg->last_rtcp_ns > since && rtp_flows_toward(e, leg))
        since = leg->last_rtcp_ns;
    if (e->now_ns < since || e->now_ns - since < e->timeout_ns)
        return;
    leg->timeout_reported = 1;
    rtp_event ev = {.type = RTP_EV_TIMEOUT, .leg = leg->handle,
                    .value = (int32_t)((e->now_ns - since) / 1000000ULL)};
    rtp_event_push(e, &ev);
}
