/* SRTP and SRTCP per leg (RFC 3711) with keys from SDP security descriptions (RFC 4568),
 * on libsrtp2.
 *
 * A leg has up to two libsrtp sessions: `in` unprotects what its party sends (the key that
 * party put in its a=crypto), `out` protects what the node sends it (the key of our own
 * a=crypto). Each is keyed once and covers every SSRC of its direction (ssrc_any_inbound /
 * ssrc_any_outbound), RTP and RTCP alike, so a party that changes its SSRC (hold, transfer)
 * needs no new key. Packets are unprotected in the receive buffer before anything else looks
 * at them (latching, statistics, relay, DTMF, mixing, taps) and protected in the send buffer
 * after everything else wrote them: the rest of the engine only ever sees plain RTP.
 *
 * A packet that fails authentication or the replay check (RFC 3711 §3.3.2, §3.4) is dropped
 * and counted; it never latches the leg on its source. Keying the same suite and key again
 * keeps the context (and its replay window and rollover counter); a different key or suite
 * is a new context (RFC 4568 §7.1.4).
 */
#include "rtp_internal.h"

#include <pthread.h>
#include <srtp2/srtp.h>
#include <stdlib.h>
#include <string.h>

/* libsrtp may write a tag, an MKI and (SRTCP) the index behind a packet: the send buffers
 * keep RTP_SRTP_ROOM for that. */
_Static_assert(RTP_SRTP_ROOM >= SRTP_MAX_TRAILER_LEN + 4, "RTP_SRTP_ROOM too small");
_Static_assert(RTP_SRTP_KEY_MAX >= SRTP_AES_ICM_256_KEY_LEN_WSALT, "RTP_SRTP_KEY_MAX too small");

typedef struct {
    srtp_t session;
    int suite;
    size_t key_len;
    uint8_t key[RTP_SRTP_KEY_MAX];
} srtp_direction;

struct rtp_srtp {
    srtp_direction in, out;
    rtp_srtp_counters count;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static srtp_err_status_t init_status = srtp_err_status_init_fail;

static void init_library(void) { init_status = srtp_init(); }

/* libsrtp is initialised once per process, whichever engine keys a leg first. */
static int library_ready(void)
{
    pthread_once(&init_once, init_library);
    return init_status == srtp_err_status_ok;
}

/* Master key + salt length of a suite (RFC 4568 §6.2, RFC 6188 §7), 0 when unknown. */
size_t rtp_srtp_key_len(int suite)
{
    switch (suite) {
    case RTP_SRTP_AES_CM_128_HMAC_SHA1_80:
    case RTP_SRTP_AES_CM_128_HMAC_SHA1_32:
        return SRTP_AES_ICM_128_KEY_LEN_WSALT;
    case RTP_SRTP_AES_256_CM_HMAC_SHA1_80:
        return SRTP_AES_ICM_256_KEY_LEN_WSALT;
    default:
        return 0;
    }
}

static void set_policy(srtp_policy_t *policy, int suite)
{
    switch (suite) {
    case RTP_SRTP_AES_CM_128_HMAC_SHA1_32:
        /* RFC 4568 §6.2.2: the 32-bit tag is for SRTP only; SRTCP keeps 80 bits. */
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&policy->rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy->rtcp);
        break;
    case RTP_SRTP_AES_256_CM_HMAC_SHA1_80:
        srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&policy->rtp);
        srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&policy->rtcp);
        break;
    default:
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy->rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy->rtcp);
        break;
    }
}

static void direction_clear(srtp_direction *d)
{
    if (d->session)
        srtp_dealloc(d->session);
    d->session = NULL;
    d->suite = RTP_SRTP_NONE;
    d->key_len = 0;
    memset(d->key, 0, sizeof d->key); /* no key material left behind in freed memory */
}

/* (Re)key one direction; the same suite and key keep the running context. */
static int direction_set(srtp_direction *d, int suite, const uint8_t *key, size_t len,
                         int inbound)
{
    if (suite == d->suite && len == d->key_len && (len == 0 || memcmp(key, d->key, len) == 0))
        return RTP_OK;
    srtp_t session = NULL;
    if (suite != RTP_SRTP_NONE) {
        srtp_policy_t policy;
        memset(&policy, 0, sizeof policy);
        set_policy(&policy, suite);
        policy.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
        policy.key = (unsigned char *)key; /* libsrtp copies what it derives from it */
        policy.window_size = 128;          /* RFC 3711 §3.3.2: at least 64 */
        policy.allow_repeat_tx = 0;        /* a sequence number is never encrypted twice */
        srtp_err_status_t rc = srtp_create(&session, &policy);
        if (rc != srtp_err_status_ok)
            return rc == srtp_err_status_alloc_fail ? RTP_E_NOMEM : RTP_E_INVAL;
    }
    direction_clear(d);
    d->session = session;
    d->suite = suite;
    d->key_len = len;
    if (len)
        memcpy(d->key, key, len);
    return RTP_OK;
}

int rtp_srtp_set(rtp_engine *e, int32_t handle, int in_suite, const uint8_t *in_key,
                 size_t in_len, int out_suite, const uint8_t *out_key, size_t out_len)
{
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (!leg)
        return RTP_E_NOLEG;
    if ((in_suite != RTP_SRTP_NONE && in_len != rtp_srtp_key_len(in_suite)) ||
        (out_suite != RTP_SRTP_NONE && out_len != rtp_srtp_key_len(out_suite)) ||
        (in_suite == RTP_SRTP_NONE && in_len) || (out_suite == RTP_SRTP_NONE && out_len))
        return RTP_E_INVAL;
    if (in_suite == RTP_SRTP_NONE && out_suite == RTP_SRTP_NONE && !leg->srtp)
        return RTP_OK; /* plain RTP, as every leg starts */
    if (!library_ready())
        return RTP_E_SYS;
    if (!leg->srtp) {
        leg->srtp = calloc(1, sizeof *leg->srtp);
        if (!leg->srtp)
            return RTP_E_NOMEM;
    }
    int rc = direction_set(&leg->srtp->in, in_suite, in_key, in_len, 1);
    if (rc == RTP_OK)
        rc = direction_set(&leg->srtp->out, out_suite, out_key, out_len, 0);
    return rc;
}

void rtp_srtp_free(rtp_leg *leg)
{
    if (!leg->srtp)
        return;
    direction_clear(&leg->srtp->in);
    direction_clear(&leg->srtp->out);
    free(leg->srtp);
    leg->srtp = NULL;
}

static void count_failure(rtp_leg *leg, srtp_err_status_t rc)
{
    rtp_srtp_counters *c = &leg->srtp->count;
    if (rc == srtp_err_status_auth_fail)
        c->auth_failed++;
    else if (rc == srtp_err_status_replay_fail || rc == srtp_err_status_replay_old)
        c->replayed++;
    else
        c->failed++;
    leg->stats.dropped++;
}

/* Unprotect a received packet in place; 0 when it may go on (plain on a leg without an
 * inbound key), -1 when it is dropped (and counted). */
int rtp_srtp_unprotect(rtp_leg *leg, uint8_t *buf, size_t *len, int rtcp)
{
    srtp_t session = leg->srtp ? leg->srtp->in.session : NULL;
    if (!session)
        return 0;
    if (*len < 12 || *len > RTP_MAX_PACKET) {
        count_failure(leg, srtp_err_status_bad_param);
        return -1;
    }
    int n = (int)*len;
    srtp_err_status_t rc = rtcp || rtp_is_rtcp(buf, *len) ? srtp_unprotect_rtcp(session, buf, &n)
                                                          : srtp_unprotect(session, buf, &n);
    if (rc != srtp_err_status_ok) {
        count_failure(leg, rc);
        return -1;
    }
    leg->srtp->count.in++;
    *len = (size_t)n;
    return 0;
}

/* Protect a packet about to be sent, in place; `cap` is the buffer's size, which must leave
 * RTP_SRTP_ROOM behind the packet. 0: send it; -1: drop it (counted). */
int rtp_srtp_protect(rtp_leg *leg, uint8_t *buf, size_t *len, size_t cap, int rtcp)
{
    srtp_t session = leg->srtp ? leg->srtp->out.session : NULL;
    if (!session)
        return 0;
    if (cap < *len + RTP_SRTP_ROOM) {
        count_failure(leg, srtp_err_status_bad_param);
        return -1;
    }
    int n = (int)*len;
    srtp_err_status_t rc =
        rtcp ? srtp_protect_rtcp(session, buf, &n) : srtp_protect(session, buf, &n);
    if (rc != srtp_err_status_ok) {
        count_failure(leg, rc);
        return -1;
    }
    leg->srtp->count.out++;
    *len = (size_t)n;
    return 0;
}

void rtp_srtp_counters_get(const rtp_leg *leg, rtp_srtp_counters *out, int *in_suite,
                           int *out_suite)
{
    static const rtp_srtp_counters none;
    *out = leg->srtp ? leg->srtp->count : none;
    *in_suite = leg->srtp ? leg->srtp->in.suite : RTP_SRTP_NONE;
    *out_suite = leg->srtp ? leg->srtp->out.suite : RTP_SRTP_NONE;
}
