/* Internal types of the RTP engine shared by the rtp_*.c files (not a public API).
 *
 * Threading: one worker thread owns the epoll set and does all packet work. Python's control
 * calls and the worker serialise on `rtp_engine.lock`; the worker holds it while it handles
 * one batch of ready sockets / one timer tick and never while it sleeps in epoll_wait. No
 * code here touches the Python C API, so the GIL is never needed on the packet path.
 */
#ifndef HOTLINE_RTP_INTERNAL_H
#define HOTLINE_RTP_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

#include "dtmf.h"
#include "g711.h"
#include "tone.h"

#define RTP_CLOCK_RATE 8000     /* G.711 and telephone-event/8000 */
#define RTP_TICK_MS 10          /* the engine clock: every timed job is a multiple of it */
#define RTP_TICKS_PER_SECOND (1000 / RTP_TICK_MS)
#define RTP_MAX_PACKET 1500
#define RTP_MAX_FRAME 240       /* 30 ms at 8 kHz, the longest packet time we generate */
#define RTP_MIX_FRAME 160       /* mixer and record taps run on 20 ms frames */
#define RTP_MIX_MAX 16          /* legs in one mix (a bitmask of uint32_t says who hears whom) */
#define RTP_LEG_TAPS 4          /* a leg may feed this many taps (call recording, voicemail, ASR, ...) */
#define RTP_TAP_ONE_LEG (-1)    /* tap_start b: record leg a alone, channel 1 silent */
#define RTP_TAP_HEARD (-2)      /* tap_start b: channel 1 = what the node sends to leg a */
#define RTP_FIFO_SAMPLES 1600   /* 200 ms of decoded audio waiting for the mixer / a tap */
#define RTP_TE_QUEUE 32         /* digits waiting to be sent as RFC 4733 events */
#define RTP_RTCP_INTERVAL_NS (5ULL * 1000000000ULL) /* RFC 3550 §6.2 minimum of 5 s */

/* Return codes of the engine functions (0 = success). */
enum {
    RTP_OK = 0,
    RTP_E_NOLEG = -1,   /* unknown handle (or mix / tap / media id) */
    RTP_E_PORTS = -2,   /* no free port pair left in the range */
    RTP_E_INVAL = -3,   /* a value out of range */
    RTP_E_SYS = -4,     /* a system call failed, errno is kept */
    RTP_E_STATE = -5,   /* not possible in the current state (e.g. leg already mixed) */
    RTP_E_NOMEM = -6,
};

/* The direction the remote side declared in its SDP (RFC 3264 §5.1, §8.4). */
enum rtp_direction { RTP_SENDRECV = 0, RTP_SENDONLY = 1, RTP_RECVONLY = 2, RTP_INACTIVE = 3 };

enum rtp_event_type {
    RTP_EV_FIRST_PACKET = 1, /* a leg latched on a source (first packet, or relatched) */
    RTP_EV_TIMEOUT = 2,      /* no RTP for rtp_timeout seconds while media was expected */
    RTP_EV_DTMF = 3,         /* a digit: flag = RTP_DTMF_RFC4733 or RTP_DTMF_INBAND */
    RTP_EV_PLAY_DONE = 4,    /* a playback item ended: flag = 1 when stopped early */
    RTP_EV_TAP_DATA = 5,     /* a record tap has a block ready: leg = tap id */
    RTP_EV_DTMF_SENT = 6,    /* an RFC 4733 digit we sent has ended */
};
enum { RTP_DTMF_RFC4733 = 0, RTP_DTMF_INBAND = 1 };

/* What feeds a leg's outgoing stream; the low 32 bits tell instances apart. */
enum rtp_source_kind { RTP_SRC_RELAY = 1, RTP_SRC_PLAY = 2, RTP_SRC_MIX = 3, RTP_SRC_DTMF = 4 };
#define RTP_SOURCE(kind, serial) (((uint64_t)(kind) << 32) | (uint32_t)(serial))

typedef struct {
    uint8_t type;
    char digit;
    uint8_t flag;
    int32_t leg;    /* leg handle (tap id for RTP_EV_TAP_DATA) */
    int32_t value;  /* duration in ms (DTMF), timeout in ms, frames ready (tap) */
    int32_t item;   /* playback item index */
    uint8_t family; /* 4 or 6: the latched source's family (RTP_EV_FIRST_PACKET) */
    uint8_t addr[16]; /* its address, network order (4 bytes used for IPv4) */
    uint16_t port;  /* host order */
} rtp_event;

/* A socket address of either family; sa.sa_family says which (rtp_addr.c). */
typedef union {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} rtp_addr;

/* A parsed RTP packet (RFC 3550 §5.1); payload points into the receive buffer. */
typedef struct {
    int marker;
    int pt;
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    const uint8_t *payload;
    size_t payload_len;
} rtp_packet;

/* The stream a leg sends: our own SSRC, and a mapping from whatever source feeds it now so
 * that the far end sees one continuous sequence/timestamp space across source changes. */
typedef struct {
    uint32_t ssrc;
    uint16_t seq;        /* highest sequence number sent */
    uint32_t ts;         /* timestamp of the last packet sent */
    uint64_t last_ns;    /* when it was sent */
    int started;
    uint64_t source;     /* RTP_SOURCE of the current feeder */
    uint16_t seq_off;
    uint32_t ts_off;
    uint64_t packets;    /* RFC 3550 §6.4.1 sender's packet and octet count */
    uint64_t octets;
} rtp_out;

/* Receive statistics (RFC 3550 A.1 sequence tracking, A.3 loss, A.8 jitter). */
typedef struct {
    uint64_t packets_in, bytes_in, packets_out, bytes_out;
    uint64_t dropped;          /* received but not forwarded (no destination, foreign source) */
    uint64_t rtcp_in, rtcp_out;
    uint32_t ssrc;             /* current remote SSRC */
    int have_seq;
    uint16_t max_seq;
    uint32_t cycles;
    uint32_t base_seq;
    uint64_t received;         /* for the current SSRC */
    int64_t lost_before;       /* lost in earlier SSRCs of this leg */
    uint32_t expected_prior, received_prior;
    double jitter;             /* in timestamp units */
    int64_t last_transit;
    int have_transit;
    uint32_t lsr;              /* middle 32 bits of the NTP time of the last SR received */
    uint64_t lsr_ns;
} rtp_stats;

/* RFC 4733 receive state: one event at a time, identified by its RTP timestamp. */
typedef struct {
    int active;
    uint32_t ts;
    uint8_t event;
    uint32_t duration;
    uint64_t last_ns;
    int have_ended;
    uint32_t ended_ts;
} rtp_te_rx;

typedef struct {
    char digit;
    uint16_t ms;
    uint8_t volume;
} rtp_te_digit;

/* RFC 4733 send state. */
typedef struct {
    int active;
    uint8_t event, volume;
    char digit;
    uint32_t total;       /* samples */
    uint32_t duration;    /* samples sent so far */
    int ends_left;        /* end packets still to send (3 in all, §2.5.1.4) */
    uint16_t seq;
    uint32_t serial;
    uint64_t next_tick;
    rtp_te_digit queue[RTP_TE_QUEUE];
    int queued;
} rtp_te_tx;

typedef struct rtp_media {
    int32_t id;
    int16_t *pcm;
    size_t samples;
    int refs;             /* the registry's reference plus one per playback item */
    int registered;
    struct rtp_media *next;
} rtp_media;

enum { RTP_ITEM_MEDIA = 1, RTP_ITEM_TONE = 2, RTP_ITEM_SILENCE = 3 };

typedef struct rtp_play_item {
    int kind;
    int32_t index;
    rtp_media *media;
    size_t pos;
    tone_gen tone;
    uint32_t silence_left;
    struct rtp_play_item *next;
} rtp_play_item;

typedef struct {
    rtp_play_item *head, *tail;
    int active;
    int barge_in;
    uint64_t next_tick;
    uint32_t serial;
    uint16_t seq;
    uint32_t ts;
} rtp_play;

typedef struct {
    int16_t buf[RTP_FIFO_SAMPLES];
    size_t head, count;
    uint64_t dropped;
} rtp_fifo;

struct rtp_leg;

typedef struct rtp_mix {
    int32_t id;
    int n;
    struct rtp_leg *legs[RTP_MIX_MAX];
    uint32_t hears[RTP_MIX_MAX];
    rtp_fifo in[RTP_MIX_MAX];
    uint64_t next_tick;
    struct rtp_mix *next;
} rtp_mix;

typedef struct rtp_tap {
    int32_t id;
    struct rtp_leg *legs[2];  /* legs[1] is NULL for a tap of one leg */
    int heard;                /* side 1 is what the node sends to legs[0] (RTP_TAP_HEARD) */
    rtp_fifo in[2];
    int16_t *ring;        /* interleaved stereo frames: [a, b] per sample instant */
    size_t capacity;      /* frames */
    size_t head, count;
    uint64_t overflow;    /* frames dropped because the ring was full */
    uint64_t frames;      /* frames written in all */
    uint32_t block, since_notify;
    uint64_t next_tick;
    struct rtp_tap *next;
} rtp_tap;

typedef struct rtp_leg {
    int32_t handle;
    uint32_t slot;
    struct rtp_leg *prev, *next;      /* every leg */
    struct rtp_leg *tprev, *tnext;    /* legs with timed work (playback, RFC 4733 send) */
    int timed;
    int rtp_fd, rtcp_fd;
    int family;                       /* AF_INET or AF_INET6: of the sockets and addresses */
    uint16_t port;
    rtp_addr remote;                  /* from SDP */
    int has_remote;
    rtp_addr latched;                 /* symmetric RTP: where the packets come from */
    int latched_ok;
    uint64_t latched_last_ns;
    rtp_addr rtcp_latched;
    int rtcp_latched_ok;
    int pt, law, ptime_ms, te_pt, direction;
    struct rtp_leg *peer;             /* the bridged leg */
    rtp_mix *mix;
    int mix_index;
    rtp_tap *taps[RTP_LEG_TAPS];      /* the record taps this leg feeds (NULL: free slot) */
    uint8_t tap_sides[RTP_LEG_TAPS];
    int ntaps;                        /* slots in use, so the packet path tests one int */
    dtmf_detector *detector;
    char inband_digit;                /* confirmed in-band key not yet reported (still on) */
    uint64_t last_rx_ns, timeout_base_ns;
    uint64_t last_rtcp_ns; /* RTCP from the leg's party: its media is alive while it is silent */
    int timeout_reported;
    rtp_te_rx te_rx;
    rtp_te_tx te_tx;
    rtp_out out;
    rtp_stats stats;
    rtp_play play;
    uint16_t mix_seq;
    uint32_t mix_ts;
    uint64_t next_rtcp_ns;
    struct rtp_srtp *srtp;            /* SRTP/SRTCP contexts (rtp_srtp.c); NULL: plain RTP */
} rtp_leg;

typedef struct rtp_engine {
    pthread_mutex_t lock;
    pthread_t thread;
    int thread_started;
    volatile int stop;
    int epfd, timerfd, wakefd, notifyfd;
    rtp_addr local4, local6;          /* the sockets' addresses per family (port 0) */
    int has_local4, has_local6;
    uint16_t port_min, port_max, port_next;
    uint64_t timeout_ns;
    rtp_leg **slots;
    uint16_t *gens;
    uint32_t max_legs, nlegs;
    rtp_leg *legs;
    rtp_leg *timed;
    rtp_mix *mixes;
    rtp_tap *taps;
    rtp_media *media;
    int32_t next_mix_id, next_tap_id, next_media_id;
    rtp_event *events;
    uint32_t ev_cap, ev_head, ev_count;
    uint64_t ev_overflow;
    uint64_t tick;
    uint64_t ticks_missed;
    uint64_t now_ns;
    uint64_t rng;
} rtp_engine;

typedef struct {
    const char *local_ip;   /* IPv4 address of IPv4 legs */
    const char *local_ip6;  /* IPv6 address of IPv6 legs; NULL or "": no IPv6 legs */
    uint16_t port_min, port_max;
    double rtp_timeout;
    uint32_t max_legs;
    uint32_t event_capacity;
} rtp_config;

/* rtp_engine.c */
int rtp_engine_create(const rtp_config *cfg, rtp_engine **out);
void rtp_engine_destroy(rtp_engine *e);
void rtp_engine_lock(rtp_engine *e);
void rtp_engine_unlock(rtp_engine *e);
uint64_t rtp_now_ns(void);
uint32_t rtp_random32(rtp_engine *e);
rtp_leg *rtp_leg_lookup(rtp_engine *e, int32_t handle);
void rtp_timed_update(rtp_engine *e, rtp_leg *leg);

/* rtp_addr.c */
int rtp_addr_parse(rtp_addr *a, const char *ip, uint16_t port); /* AF_INET/AF_INET6, -1 */
socklen_t rtp_addr_len(const rtp_addr *a);
int rtp_addr_equal(const rtp_addr *a, const rtp_addr *b);
uint16_t rtp_addr_port(const rtp_addr *a);
void rtp_addr_set_port(rtp_addr *a, uint16_t port);
void rtp_addr_format(const rtp_addr *a, char *out, size_t size);
void rtp_addr_to_event(const rtp_addr *a, rtp_event *ev);

/* rtp_event.c */
void rtp_event_push(rtp_engine *e, const rtp_event *ev);
uint32_t rtp_event_drain(rtp_engine *e, rtp_event *out, uint32_t max);

/* rtp_packet.c */
int rtp_packet_parse(const uint8_t *buf, size_t len, rtp_packet *p);
int rtp_is_rtcp(const uint8_t *buf, size_t len);
size_t rtp_header_write(uint8_t *buf, int marker, int pt, uint16_t seq, uint32_t ts, uint32_t ssrc);
void rtp_out_init(rtp_out *o, uint32_t ssrc);
void rtp_out_map(rtp_out *o, uint64_t source, uint16_t in_seq, uint32_t in_ts, uint64_t now_ns,
                 uint16_t *seq, uint32_t *ts, int *marker);
uint32_t rtp_out_ts_now(const rtp_out *o, uint64_t now_ns);

/* rtp_leg.c */
int rtp_leg_create(rtp_engine *e, int family, int32_t *handle, uint16_t *port);
int rtp_leg_set_family(rtp_engine *e, int32_t handle, int family, uint16_t *port);
int rtp_leg_destroy(rtp_engine *e, int32_t handle);
void rtp_leg_free(rtp_engine *e, rtp_leg *leg);
int rtp_leg_set_remote(rtp_engine *e, int32_t handle, const char *ip, uint16_t port, int pt,
                       int ptime_ms, int te_pt);
int rtp_leg_set_direction(rtp_engine *e, int32_t handle, int direction);
int rtp_leg_bridge(rtp_engine *e, int32_t a, int32_t b);
int rtp_leg_unbridge(rtp_engine *e, int32_t a);
int rtp_leg_set_inband(rtp_engine *e, int32_t handle, int on);
int rtp_leg_send(rtp_engine *e, rtp_leg *leg, uint64_t source, int marker, int pt, uint16_t in_seq,
                 uint32_t in_ts, const uint8_t *payload, size_t len);
int rtp_leg_may_send(const rtp_leg *leg);
void rtp_leg_check_timeouts(rtp_engine *e, rtp_leg *leg);

/* rtp_receive.c */
void rtp_receive_ready(rtp_engine *e, rtp_leg *leg, int rtcp);
void rtp_inband_check_stale(rtp_engine *e, rtp_leg *leg);

/* rtp_stats.c */
void rtp_stats_packet(rtp_stats *s, const rtp_packet *p, uint64_t now_ns, int audio);
int64_t rtp_stats_lost(const rtp_stats *s);
uint32_t rtp_stats_ext_max(const rtp_stats *s);
uint8_t rtp_stats_fraction_lost(rtp_stats *s);

/* rtp_rtcp.c */
void rtp_rtcp_receive(rtp_engine *e, rtp_leg *leg, const uint8_t *buf, size_t len,
                      const rtp_addr *from);
void rtp_rtcp_send_report(rtp_engine *e, rtp_leg *leg);

/* rtp_telephone_event.c */
void rtp_te_receive(rtp_engine *e, rtp_leg *leg, const rtp_packet *p);
void rtp_te_check_stale(rtp_engine *e, rtp_leg *leg);
int rtp_te_send(rtp_engine *e, int32_t handle, const char *digits, int ms, int volume);
void rtp_te_tick(rtp_engine *e, rtp_leg *leg);
int rtp_te_event_code(char digit);

/* rtp_play.c */
int32_t rtp_media_add(rtp_engine *e, const int16_t *pcm, size_t samples);
int rtp_media_remove(rtp_engine *e, int32_t id);
void rtp_media_release(rtp_engine *e, rtp_media *m);
rtp_media *rtp_media_lookup(rtp_engine *e, int32_t id);
int rtp_play_append(rtp_engine *e, int32_t handle, rtp_play_item *items, int barge_in);
int rtp_play_stop(rtp_engine *e, int32_t handle);
void rtp_play_clear(rtp_engine *e, rtp_leg *leg, int report);
void rtp_play_tick(rtp_engine *e, rtp_leg *leg);
void rtp_play_items_free(rtp_engine *e, rtp_play_item *items);

/* rtp_mix.c */
void rtp_fifo_write(rtp_fifo *f, const int16_t *pcm, size_t n);
size_t rtp_fifo_read(rtp_fifo *f, int16_t *pcm, size_t n);
int rtp_mix_set(rtp_engine *e, int32_t *mix_id, const int32_t *handles, const uint32_t *hears,
                int n);
int rtp_mix_remove(rtp_engine *e, int32_t mix_id);
void rtp_mix_detach_leg(rtp_engine *e, rtp_leg *leg);
void rtp_mix_input(rtp_leg *leg, const int16_t *pcm, size_t n);
void rtp_mix_tick(rtp_engine *e, rtp_mix *m);
void rtp_mix_sum(const int16_t *const *frames, uint32_t mask, int n, int16_t *out, size_t len);

/* rtp_tap.c */
int rtp_tap_start(rtp_engine *e, int32_t a, int32_t b, uint32_t capacity_ms, uint32_t block_ms,
                  int32_t *tap_id);
int rtp_tap_stop(rtp_engine *e, int32_t tap_id);
int rtp_tap_read(rtp_engine *e, int32_t tap_id, int16_t *out, size_t max_frames, size_t *frames,
                 uint64_t *overflow);
void rtp_tap_detach_leg(rtp_engine *e, rtp_leg *leg);
void rtp_tap_input(rtp_leg *leg, const int16_t *pcm, size_t n);
void rtp_tap_sent(rtp_leg *leg, int law, const uint8_t *payload, size_t n);
void rtp_tap_tick(rtp_engine *e, rtp_tap *t);
rtp_tap *rtp_tap_lookup(rtp_engine *e, int32_t id);

/* rtp_srtp.c: SRTP/SRTCP per leg (RFC 3711), SDES suites (RFC 4568 §6.2, RFC 6188) */
enum {
    RTP_SRTP_NONE = 0,
    RTP_SRTP_AES_CM_128_HMAC_SHA1_80 = 1,
    RTP_SRTP_AES_CM_128_HMAC_SHA1_32 = 2,
    RTP_SRTP_AES_256_CM_HMAC_SHA1_80 = 3,
};
#define RTP_SRTP_ROOM 148   /* send buffers keep this behind a packet for libsrtp's trailer */
#define RTP_SRTP_KEY_MAX 46 /* master key + salt of the longest suite */
typedef struct {
    uint64_t in, out;     /* packets unprotected / protected */
    uint64_t auth_failed; /* dropped: authentication tag wrong (forged, damaged, other key) */
    uint64_t replayed;    /* dropped: index seen before or too old (RFC 3711 §3.3.2) */
    uint64_t failed;      /* dropped: any other failure (too short, no room) */
} rtp_srtp_counters;
size_t rtp_srtp_key_len(int suite);
int rtp_srtp_set(rtp_engine *e, int32_t handle, int in_suite, const uint8_t *in_key,
                 size_t in_len, int out_suite, const uint8_t *out_key, size_t out_len);
void rtp_srtp_free(rtp_leg *leg);
int rtp_srtp_unprotect(rtp_leg *leg, uint8_t *buf, size_t *len, int rtcp);
int rtp_srtp_protect(rtp_leg *leg, uint8_t *buf, size_t *len, size_t cap, int rtcp);
void rtp_srtp_counters_get(const rtp_leg *leg, rtp_srtp_counters *out, int *in_suite,
                           int *out_suite);

#endif
