/* Socket addresses of either family (IPv4, IPv6): parse, compare, print, port arithmetic.
 *
 * A leg's sockets are of one family, chosen when it is created (the family of its party's
 * address) and changed only by rtp_leg_set_family; every address it keeps (the SDP's, the
 * latched RTP and RTCP sources) is of that family. `rtp_addr` is a union rather than a
 * sockaddr_storage so that a leg keeps three of them in 84 bytes, not 384.
 */
#include "rtp_internal.h"

#include <arpa/inet.h>
#include <string.h>

int rtp_addr_parse(rtp_addr *a, const char *ip, uint16_t port)
{
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, ip, &a->v4.sin_addr) == 1) {
        a->v4.sin_family = AF_INET;
        a->v4.sin_port = htons(port);
        return AF_INET;
    }
    if (inet_pton(AF_INET6, ip, &a->v6.sin6_addr) == 1) {
        a->v6.sin6_family = AF_INET6;
        a->v6.sin6_port = htons(port);
        return AF_INET6;
    }
    return -1;
}

socklen_t rtp_addr_len(const rtp_addr *a)
{
    return a->sa.sa_family == AF_INET6 ? (socklen_t)sizeof a->v6 : (socklen_t)sizeof a->v4;
}

int rtp_addr_equal(const rtp_addr *a, const rtp_addr *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return 0;
    if (a->sa.sa_family == AF_INET6)
        return a->v6.sin6_port == b->v6.sin6_port &&
               memcmp(&a->v6.sin6_addr, &b->v6.sin6_addr, sizeof a->v6.sin6_addr) == 0 &&
               a->v6.sin6_scope_id == b->v6.sin6_scope_id;
    return a->v4.sin_port == b->v4.sin_port && a->v4.sin_addr.s_addr == b->v4.sin_addr.s_addr;
}

uint16_t rtp_addr_port(const rtp_addr *a)
{
    return ntohs(a->sa.sa_family == AF_INET6 ? a->v6.sin6_port : a->v4.sin_port);
}

void rtp_addr_set_port(rtp_addr *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET6)
        a->v6.sin6_port = htons(port);
    else
        a->v4.sin_port = htons(port);
}

/* The address part in text ("192.0.2.1", "2001:db8::1"); "" for an unset address. */
void rtp_addr_format(const rtp_addr *a, char *out, size_t size)
{
    const void *raw = a->sa.sa_family == AF_INET6 ? (const void *)&a->v6.sin6_addr
                                                  : (const void *)&a->v4.sin_addr;
    if (size == 0)
        return;
    out[0] = '\0';
    if (a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6)
        return;
    if (!inet_ntop(a->sa.sa_family, raw, out, (socklen_t)size))
        out[0] = '\0';
}

/* Copy the raw address of `a` into an event (family and 4 or 16 bytes). */
void rtp_addr_to_event(const rtp_addr *a, rtp_event *ev)
{
    ev->family = (uint8_t)(a->sa.sa_family == AF_INET6 ? 6 : 4);
    memset(ev->addr, 0, sizeof ev->addr);
    if (a->sa.sa_family == AF_INET6)
        memcpy(ev->addr, &a->v6.sin6_addr, 16);
    else
        memcpy(ev->addr, &a->v4.sin_addr, 4);
    ev->port = rtp_addr_port(a);
}
