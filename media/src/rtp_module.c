/* media._rtp: the CPython face of the RTP engine (multi-phase init, state in the module).
 *
 * Every method takes the engine lock with the GIL released, so a Python thread never waits
 * for the worker while holding the GIL, and the worker never needs the GIL at all.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "rtp_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    PyTypeObject *engine_type;
    PyObject *error;          /* MediaError */
    PyObject *unknown_error;  /* UnknownLegError(MediaError, LookupError) */
    PyObject *ports_error;    /* PortsExhaustedError(MediaError) */
    PyObject *state_error;    /* MediaStateError(MediaError) */
    PyObject *value_error;    /* MediaValueError(MediaError, ValueError) */
    PyObject *os_error;       /* MediaSystemError(MediaError, OSError) */
} module_state;

typedef struct {
    PyObject_HEAD
    rtp_engine *engine;
} EngineObject;

static struct PyModuleDef rtp_module;

static module_state *state_of(PyObject *self)
{
    PyObject *module = PyType_GetModuleByDef(Py_TYPE(self), &rtp_module);
    return module ? PyModule_GetState(module) : NULL;
}

static PyObject *raise_rc(PyObject *self, int rc, const char *what)
{
    module_state *st = state_of(self);
    if (!st)
        return NULL;
    switch (rc) {
    case RTP_E_NOLEG:
        PyErr_Format(st->unknown_error, "%s: unknown leg, mix, tap or media id", what);
        break;
    case RTP_E_PORTS:
        PyErr_Format(st->ports_error, "%s: no free RTP port pair (or leg slot) left", what);
        break;
    case RTP_E_INVAL:
        PyErr_Format(st->value_error, "%s: value out of range", what);
        break;
    case RTP_E_STATE:
        PyErr_Format(st->state_error, "%s: not possible in the leg's current state", what);
        break;
    case RTP_E_NOMEM:
        PyErr_NoMemory();
        break;
    default:
        PyErr_SetFromErrno(st->os_error);
        break;
    }
    return NULL;
}

/* Lock the engine with the GIL released; NULL (and an exception) when it is closed. */
static rtp_engine *acquire(EngineObject *self)
{
    rtp_engine *e = self->engine;
    if (!e) {
        module_state *st = state_of((PyObject *)self);
        if (st)
            PyErr_SetString(st->state_error, "the RTP engine is closed");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rtp_engine_lock(e);
    Py_END_ALLOW_THREADS
    return e;
}

static PyObject *done(EngineObject *self, rtp_engine *e, int rc, const char *what)
{
    rtp_engine_unlock(e);
    if (rc < 0)
        return raise_rc((PyObject *)self, rc, what);
    Py_RETURN_NONE;
}

static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"local_ip", "port_min", "port_max", "rtp_timeout", "max_legs",
                             "event_capacity", "local_ip6", NULL};
    rtp_config cfg = {.rtp_timeout = 30.0, .max_legs = 4096, .event_capacity = 8192,
                      .local_ip6 = ""};
    int port_min, port_max;
    unsigned int max_legs = 4096, event_capacity = 8192;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sii|dIIs", kwlist, &cfg.local_ip, &port_min,
                                     &port_max, &cfg.rtp_timeout, &max_legs, &event_capacity,
                                     &cfg.local_ip6))
        return NULL;
    EngineObject *self = (EngineObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    if (port_min < 1024 || port_max > 65535 || port_max <= port_min) {
        raise_rc((PyObject *)self, RTP_E_INVAL, "port range");
        Py_DECREF(self);
        return NULL;
    }
    cfg.port_min = (uint16_t)port_min;
    cfg.port_max = (uint16_t)port_max;
    cfg.max_legs = max_legs;
    cfg.event_capacity = event_capacity;
    int rc = rtp_engine_create(&cfg, &self->engine);
    if (rc < 0) {
        raise_rc((PyObject *)self, rc, "engine");
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void engine_close(EngineObject *self)
{
    rtp_engine *e = self->engine;
    self->engine = NULL;
    if (e) {
        Py_BEGIN_ALLOW_THREADS
        rtp_engine_destroy(e);
        Py_END_ALLOW_THREADS
    }
}

static void Engine_dealloc(EngineObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    engine_close(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *Engine_close(EngineObject *self, PyObject *unused)
{
    engine_close(self);
    Py_RETURN_NONE;
}

static PyObject *Engine_fileno(EngineObject *self, PyObject *unused)
{
    if (!self->engine)
        return raise_rc((PyObject *)self, RTP_E_STATE, "fileno");
    return PyLong_FromLong(self->engine->notifyfd);
}

static PyObject *Engine_create_leg(EngineObject *self, PyObject *args)
{
    int family = 4;
    if (!PyArg_ParseTuple(args, "|i", &family))
        return NULL;
    rtp_engine *e = acquire(self);
    if (!e)
        return NULL;
    int32_t handle = 0;
    uint16_t port = 0;
    int rc = rtp_leg_create(e, family, &handle, &port);
    rtp_engine_unlock(e);
    if (rc < 0)
        return raise_rc((PyObject *)self, rc, "create_leg");
    return Py_BuildValue("(iH)", handle, port);
}

static PyObject *Engine_set_family(EngineObject *self, PyObject *args)
{
    int handle, family;
    if (!PyArg_ParseTuple(args, "ii", &handle, &family))
        return NULL;
    rtp_engine *e = acquire(self);
    if (!e)
        return NULL;
    uint16_t port = 0;
    int rc = rtp_leg_set_family(e, handle, family, &port);
    rtp_engine_unlock(e);
    if (rc < 0)
        return raise_rc((PyObject *)self, rc, "set_family");
    return PyLong_FromLong(port);
}

static PyObject *Engine_destroy_leg(EngineObject *self, PyObject *args)
{
    int handle;
    if (!PyArg_ParseTuple(args, "i", &handle))
        return NULL;
    rtp_engine *e = acquire(self);
    return e ? done(self, e, rtp_leg_destroy(e, handle), "destroy_leg") : NULL;
}

static PyObject *Engine_set_remote(EngineObject *self, PyObject *args)
{
    int handle, port, pt, ptime, te_pt;
    const char *ip;
    if (!PyArg_ParseTuple(args, "isiiii", &handle, &ip, &port, &pt, &ptime, &te_pt))
        return NULL;
    if (port < 1 || port > 65535)
        return raise_rc((PyObject *)self, RTP_E_INVAL, "set_remote port");
    rtp_engine *e = acquire(self);
    if (!e)
        return NULL;
    int rc = rtp_leg_set_remote(e, handle, ip, (uint16_t)port, pt, ptime, te_pt);
    return done(self, e, rc, "set_remote");
}

static PyObject *Engine_set_direction(EngineObject *self, PyObject *args)
{
    int handle, direction;
    if (!PyArg_ParseTuple(args, "ii", &handle, &direction))
        return NULL;
    rtp_engine *e = acquire(self);
    return e ? done(self, e, rtp_leg_set_direction(e, handle, direction), "set_direction") : NULL;
}

static PyObject *Engine_bridge(EngineObject *self, PyObject *args)
{
    int a, b;
    if (!PyArg_ParseTuple(args, "ii", &a, &b))
        return NULL;
    rtp_engine *e = acquire(self);
    return e ? done(self, e, rtp_leg_bridge(e, a, b), "bridge") : NULL;
}

static PyObject *Engine_unbridge(EngineObject *self, PyObject *args)
{
    int a;
    if (!PyArg_ParseTuple(args, "i", &a))
        return NULL;
    rtp_engine *e = acquire(self);
    return e ? done(self, e, rtp_leg_unbridge(e, a), "unbridge") : NULL;
}

static PyObject *Engine_set_inband_dtmf(EngineObject *self, PyObject *args)
{
    int handle, on;
    if (!PyArg_ParseTuple(args, "ip", &handle, &on))
        return NULL;
    rtp_engine *e = acquire(self);
    return e ? done(self, e, rtp_leg_set_inband(e, handle, on), "set_inband_dtmf") : NULL;
}

static PyObject *Engine_send_dtmf(EngineObject *self, PyObject *args)
{
    int handle, ms, volume;
    const char *digits;
    if (!PyArg_ParseTuple(args, "isii", &handle, &digits, &ms, &volume))
        return NULL;
    rtp_engine *e = acquire(self);
    return e ? done(self, e, rtp_te_send(e, handle, digits, ms, volume), "send_dtmf") : NULL;
}

static PyObject *Engine_add_media(EngineObject *self, PyObject *args)
{
    Py_buffer pcm;
    if (!PyArg_ParseTuple(args, "y*", &pcm))
        return NULL;
    if (pcm.len % 2) {
        PyBuffer_Release(&pcm);
        return raise_rc((PyObject *)self, RTP_E_INVAL, "add_media (odd byte count)");
    }
    rtp_engine *e = acquire(self);
    if (!e) {
        PyBuffer_Release(&pcm);
        return NULL;
    }
    int32_t id = rtp_media_add(e, pcm.buf, (size_t)pcm.len / 2);
    rtp_engine_unlock(e);
    PyBuffer_Release(&pcm);
    if (id < 0)
        return raise_rc((PyObject *)self, id, "add_media");
    return PyLong_FromLong(id);
}

static PyObject *Engine_remove_media(EngineObject *self, PyObject *args)
{
    int id;
    if (!PyArg_ParseTuple(args, "i", &id))
        return NULL;
    rtp_engine *e = acquire(self);
    return e ? done(self, e, rtp_media_remove(e, id), "remove_media") : NULL;
}

/* One playback item from its tuple form; media items keep their id in `pos` until the
 * engine is locked and the id is resolved. Returns NULL with an exception set. */
static rtp_play_item *parse_item(PyObject *self, PyObject *tuple)
{
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) < 2) {
        PyErr_SetString(PyExc_TypeError, "a playback item is a tuple (kind, index, ...)");
        return NULL;
    }
    const char *kind = PyUnicode_AsUTF8(PyTuple_GET_ITEM(tuple, 0));
    if (!kind)
        return NULL;
    rtp_play_item *item = calloc(1, sizeof *item);
    if (!item) {
        PyErr_NoMemory();
        return NULL;
    }
    int index, ok = 0;
    if (strcmp(kind, "media") == 0) {
        int id;
        ok = PyArg_ParseTuple(tuple, "sii", &kind, &index, &id);
        item->kind = RTP_ITEM_MEDIA;
        item->pos = (size_t)id;
    } else if (strcmp(kind, "tone") == 0) {
        double f1, f2, level;
        unsigned int on_ms, off_ms, repeats;
        ok = PyArg_ParseTuple(tuple, "siddd" "III", &kind, &index, &f1, &f2, &level, &on_ms,
                              &off_ms, &repeats);
        item->kind = RTP_ITEM_TONE;
        if (ok)
            tone_gen_init(&item->tone, f1, f2, level, on_ms, off_ms, repeats);
    } else if (strcmp(kind, "dtmf") == 0) {
        const char *digit;
        double level;
        unsigned int on_ms;
        ok = PyArg_ParseTuple(tuple, "sisdI", &kind, &index, &digit, &level, &on_ms);
        item->kind = RTP_ITEM_TONE;
        if (ok && (strlen(digit) != 1 || tone_gen_dtmf(&item->tone, digit[0], level, on_ms) != 0)) {
            raise_rc(self, RTP_E_INVAL, "play dtmf digit");
            ok = 0;
        }
    } else if (strcmp(kind, "silence") == 0) {
        unsigned int ms;
        ok = PyArg_ParseTuple(tuple, "siI", &kind, &index, &ms);
        item->kind = RTP_ITEM_SILENCE;
        item->silence_left = ms * (RTP_CLOCK_RATE / 1000);
    } else {
        raise_rc(self, RTP_E_INVAL, "play item kind");
    }
    if (!ok) {
        free(item);
        return NULL;
    }
    item->index = index;
    return item;
}

static PyObject *Engine_play(EngineObject *self, PyObject *args)
{
    int handle, barge_in;
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "iOp", &handle, &seq, &barge_in))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "play items must be a sequence");
    if (!fast)
        return NULL;
    rtp_play_item *head = NULL, **tail = &head;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        rtp_play_item *item = parse_item((PyObject *)self, PySequence_Fast_GET_ITEM(fast, i));
        if (!item) {
            Py_DECREF(fast);
            while (head) {
                rtp_play_item *next = head->next;
                free(head);
                head = next;
            }
            return NULL;
        }
        *tail = item;
        tail = &item->next;
    }
    Py_DECREF(fast);
    rtp_engine *e = acquire(self);
    if (!e) {
        while (head) {
            rtp_play_item *next = head->next;
            free(head);
            head = next;
        }
        return NULL;
    }
    int rc = RTP_OK;
    for (rtp_play_item *item = head; item; item = item->next) {
        if (item->kind != RTP_ITEM_MEDIA)
            continue;
        rtp_media *m = rtp_media_lookup(e, (int32_t)item->pos);
        if (!m) {
            rc = RTP_E_NOLEG;
            break;
        }
        item->media = m;
        item->pos = 0;
        m->refs++;
    }
    if (rc == RTP_OK)
        rc = rtp_play_append(e, handle, head, barge_in);
    if (rc != RTP_OK)
        rtp_play_items_free(e, head); /* releases the media references taken above */
    return done(self, e, rc, "play");
}

static PyObject *Engine_stop_play(EngineObject *self, PyObject *args)
{
    int handle;
    if (!PyArg_ParseTuple(args, "i", &handle))
        return NULL;
    rtp_engine *e = acquire(self);
    return e ? done(self, e, rtp_play_stop(e, handle), "stop_play") : NULL;
}

static PyObject *Engine_mix_set(EngineObject *self, PyObject *args)
{
    int mix_id;
    PyObject *handles_obj, *hears_obj;
    if (!PyArg_ParseTuple(args, "iOO", &mix_id, &handles_obj, &hears_obj))
        return NULL;
    PyObject *hs = PySequence_Fast(handles_obj, "handles must be a sequence");
    if (!hs)
        return NULL;
    PyObject *ms = PySequence_Fast(hears_obj, "hears must be a sequence");
    if (!ms) {
        Py_DECREF(hs);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(hs);
    int32_t handles[RTP_MIX_MAX];
    uint32_t hears[RTP_MIX_MAX];
    int bad = n < 1 || n > RTP_MIX_MAX || PySequence_Fast_GET_SIZE(ms) != n;
    for (Py_ssize_t i = 0; !bad && i < n; i++) {
        handles[i] = (int32_t)PyLong_AsLong(PySequence_Fast_GET_ITEM(hs, i));
        hears[i] = (uint32_t)PyLong_AsUnsignedLongMask(PySequence_Fast_GET_ITEM(ms, i));
        if (PyErr_Occurred())
            bad = 1;
    }
    Py_DECREF(hs);
    Py_DECREF(ms);
    if (bad)
        return PyErr_Occurred() ? NULL : raise_rc((PyObject *)self, RTP_E_INVAL, "mix_set");
    rtp_engine *e = acquire(self);
    if (!e)
        return NULL;
    int32_t id = mix_id;
    int rc = rtp_mix_set(e, &id, handles, hears, (int)n);
    rtp_engine_unlock(e);
    if (rc < 0)
        return raise_rc((PyObject *)self, rc, "mix_set");
    return PyLong_FromLong(id);
}

static PyObject *Engine_mix_remove(EngineObject *self, PyObject *args)
{
    int id;
    if (!PyArg_ParseTuple(args, "i", &id))
        return NULL;
    rtp_engine *e = acquire(self);
    return e ? done(self, e, rtp_mix_remove(e, id), "mix_remove") : NULL;
}

static PyObject *Engine_tap_start(EngineObject *self, PyObject *args)
{
    int a, b;
    unsigned int capacity_ms, block_ms;
    if (!PyArg_ParseTuple(args, "iiII", &a, &b, &capacity_ms, &block_ms))
        return NULL;
    rtp_engine *e = acquire(self);
    if (!e)
        return NULL;
    int32_t id = 0;
    int rc = rtp_tap_start(e, a, b, capacity_ms, block_ms, &id);
    rtp_engine_unlock(e);
    if (rc < 0)
        return raise_rc((PyObject *)self, rc, "tap_start");
    return PyLong_FromLong(id);
}

static PyObject *Engine_tap_stop(EngineObject *self, PyObject *args)
{
    int id;
    if (!PyArg_ParseTuple(args, "i", &id))
        return NULL;
    rtp_engine *e = acquire(self);
    return e ? done(self, e, rtp_tap_stop(e, id), "tap_stop") : NULL;
}

static PyObject *Engine_tap_read(EngineObject *self, PyObject *args)
{
    int id;
    if (!PyArg_ParseTuple(args, "i", &id))
        return NULL;
    rtp_engine *e = acquire(self);
    if (!e)
        return NULL;
    rtp_tap *t = rtp_tap_lookup(e, id);
    if (!t)
        return done(self, e, RTP_E_NOLEG, "tap_read");
    size_t want = t->count, frames = 0;
    uint64_t overflow = 0;
    int16_t *buf = malloc(want ? want * 4 : 4);
    if (!buf) {
        rtp_engine_unlock(e);
        return PyErr_NoMemory();
    }
    rtp_tap_read(e, id, buf, want, &frames, &overflow);
    rtp_engine_unlock(e);
    PyObject *data = PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)frames * 4);
    free(buf);
    if (!data)
        return NULL;
    return Py_BuildValue("(NK)", data, (unsigned long long)overflow);
}

static PyObject *Engine_events(EngineObject *self, PyObject *unused)
{
    enum { MAX = 1024 };
    rtp_event *batch = malloc(MAX * sizeof *batch);
    if (!batch)
        return PyErr_NoMemory();
    rtp_engine *e = acquire(self);
    if (!e) {
        free(batch);
        return NULL;
    }
    uint32_t n = rtp_event_drain(e, batch, MAX);
    rtp_engine_unlock(e);
    PyObject *list = PyList_New(n);
    for (uint32_t i = 0; list && i < n; i++) {
        rtp_event *ev = &batch[i];
        char ip[INET6_ADDRSTRLEN] = "";
        if (ev->type == RTP_EV_FIRST_PACKET &&
            !inet_ntop(ev->family == 6 ? AF_INET6 : AF_INET, ev->addr, ip, sizeof ip))
            ip[0] = '\0';
        PyObject *t = Py_BuildValue("(iiNiiisi)", ev->type, ev->leg,
                                    ev->digit ? PyUnicode_FromOrdinal((unsigned char)ev->digit)
                                              : Py_NewRef(Py_None),
                                    ev->flag, ev->value, ev->item, ip, ev->port);
        if (!t) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, t);
    }
    free(batch);
    return list;
}

static PyObject *Engine_stats(EngineObject *self, PyObject *args)
{
    int handle;
    if (!PyArg_ParseTuple(args, "i", &handle))
        return NULL;
    rtp_engine *e = acquire(self);
    if (!e)
        return NULL;
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (!leg)
        return done(self, e, RTP_E_NOLEG, "stats");
    rtp_stats s = leg->stats;
    rtp_out out = leg->out;
    int latched = leg->latched_ok;
    rtp_addr la = leg->latched;
    int family = leg->family == AF_INET6 ? 6 : 4;
    uint16_t port = leg->port;
    int dtmf_queued = leg->te_tx.queued + leg->te_tx.active;
    int playing = leg->play.active;
    rtp_engine_unlock(e);
    char ip[INET6_ADDRSTRLEN] = "";
    if (latched)
        rtp_addr_format(&la, ip, sizeof ip);
    return Py_BuildValue(
        "{s:H,s:i,s:K,s:K,s:K,s:K,s:L,s:d,s:K,s:K,s:K,s:k,s:k,s:H,s:k,s:N,s:i,s:O}", "port",
        port, "family", family,
        "packets_in", (unsigned long long)s.packets_in, "bytes_in",
        (unsigned long long)s.bytes_in, "packets_out", (unsigned long long)s.packets_out,
        "bytes_out", (unsigned long long)s.bytes_out, "lost", (long long)rtp_stats_lost(&s),
        "jitter_ms", s.jitter / (RTP_CLOCK_RATE / 1000.0), "dropped",
        (unsigned long long)s.dropped, "rtcp_in", (unsigned long long)s.rtcp_in, "rtcp_out",
        (unsigned long long)s.rtcp_out, "ssrc_in", (unsigned long)s.ssrc, "ssrc_out",
        (unsigned long)out.ssrc, "seq_out", out.seq, "ts_out", (unsigned long)out.ts, "latched",
        latched ? Py_BuildValue("(sH)", ip, rtp_addr_port(&la)) : Py_NewRef(Py_None),
        "dtmf_pending", dtmf_queued, "playing", playing ? Py_True : Py_False);
}

/* set_srtp(handle, in_suite, in_key, out_suite, out_key): SRTP per direction (rtp_srtp.c). */
static PyObject *Engine_set_srtp(EngineObject *self, PyObject *args)
{
    int handle, in_suite, out_suite;
    Py_buffer in_key, out_key;
    if (!PyArg_ParseTuple(args, "iiy*iy*", &handle, &in_suite, &in_key, &out_suite, &out_key))
        return NULL;
    rtp_engine *e = acquire(self);
    int rc = e ? rtp_srtp_set(e, handle, in_suite, in_key.buf, (size_t)in_key.len, out_suite,
                              out_key.buf, (size_t)out_key.len)
               : RTP_OK;
    PyBuffer_Release(&in_key);
    PyBuffer_Release(&out_key);
    return e ? done(self, e, rc, "set_srtp") : NULL;
}

static PyObject *Engine_srtp_stats(EngineObject *self, PyObject *args)
{
    int handle, in_suite = 0, out_suite = 0;
    rtp_srtp_counters c;
    rtp_engine *e = PyArg_ParseTuple(args, "i", &handle) ? acquire(self) : NULL;
    if (!e)
        return NULL;
    rtp_leg *leg = rtp_leg_lookup(e, handle);
    if (leg)
        rtp_srtp_counters_get(leg, &c, &in_suite, &out_suite);
    rtp_engine_unlock(e);
    if (!leg)
        return raise_rc((PyObject *)self, RTP_E_NOLEG, "srtp_stats");
    return Py_BuildValue("{s:i,s:i,s:K,s:K,s:K,s:K,s:K}", "srtp_in_suite", in_suite,
                         "srtp_out_suite", out_suite, "srtp_in", (unsigned long long)c.in,
                         "srtp_out", (unsigned long long)c.out, "srtp_auth_failed",
                         (unsigned long long)c.auth_failed, "srtp_replayed",
                         (unsigned long long)c.replayed, "srtp_failed",
                         (unsigned long long)c.failed);
}

static PyObject *Engine_info(EngineObject *self, PyObject *unused)
{
    rtp_engine *e = acquire(self);
    if (!e)
        return NULL;
    unsigned long legs = e->nlegs;
    unsigned long long ticks = e->tick, missed = e->ticks_missed, overflow = e->ev_overflow;
    rtp_engine_unlock(e);
    return Py_BuildValue("{s:k,s:K,s:K,s:K}", "legs", legs, "ticks", ticks, "ticks_missed",
                         missed, "events_overflow", overflow);
}

static PyMethodDef Engine_methods[] = {
    {"close", (PyCFunction)Engine_close, METH_NOARGS, "Stop the worker and free every leg."},
    {"fileno", (PyCFunction)Engine_fileno, METH_NOARGS, "The eventfd that signals events."},
    {"create_leg", (PyCFunction)Engine_create_leg, METH_VARARGS,
     "(family=4) -> (handle, rtp_port); family 6 needs local_ip6"},
    {"set_family", (PyCFunction)Engine_set_family, METH_VARARGS,
     "(handle, family) -> rtp_port: the leg's sockets move to IPv4 (4) or IPv6 (6)"},
    {"destroy_leg", (PyCFunction)Engine_destroy_leg, METH_VARARGS, "(handle)"},
    {"set_remote", (PyCFunction)Engine_set_remote, METH_VARARGS,
     "(handle, ip, port, payload_type, ptime_ms, telephone_event_pt or -1)"},
    {"set_direction", (PyCFunction)Engine_set_direction, METH_VARARGS, "(handle, direction)"},
    {"bridge", (PyCFunction)Engine_bridge, METH_VARARGS, "(a, b)"},
    {"unbridge", (PyCFunction)Engine_unbridge, METH_VARARGS, "(a)"},
    {"set_inband_dtmf", (PyCFunction)Engine_set_inband_dtmf, METH_VARARGS, "(handle, on)"},
    {"send_dtmf", (PyCFunction)Engine_send_dtmf, METH_VARARGS, "(handle, digits, ms, volume)"},
    {"add_media", (PyCFunction)Engine_add_media, METH_VARARGS, "(pcm16) -> media id"},
    {"remove_media", (PyCFunction)Engine_remove_media, METH_VARARGS, "(media id)"},
    {"play", (PyCFunction)Engine_play, METH_VARARGS, "(handle, items, barge_in)"},
    {"stop_play", (PyCFunction)Engine_stop_play, METH_VARARGS, "(handle)"},
    {"mix_set", (PyCFunction)Engine_mix_set, METH_VARARGS, "(mix_id or 0, handles, hears)"},
    {"mix_remove", (PyCFunction)Engine_mix_remove, METH_VARARGS, "(mix_id)"},
    {"tap_start", (PyCFunction)Engine_tap_start, METH_VARARGS,
     "(a, b, capacity_ms, block_ms); b = -1 records leg a alone"},
    {"tap_stop", (PyCFunction)Engine_tap_stop, METH_VARARGS, "(tap_id)"},
    {"tap_read", (PyCFunction)Engine_tap_read, METH_VARARGS, "(tap_id) -> (pcm, overflow)"},
    {"events", (PyCFunction)Engine_events, METH_NOARGS, "Drain up to 1024 events."},
    {"stats", (PyCFunction)Engine_stats, METH_VARARGS, "(handle) -> dict"},
    {"info", (PyCFunction)Engine_info, METH_NOARGS, "Engine-wide counters."},
    {"set_srtp", (PyCFunction)Engine_set_srtp, METH_VARARGS,
     "(handle, in_suite, in_key, out_suite, out_key): SRTP_NONE or an SRTP_* suite each"},
    {"srtp_stats", (PyCFunction)Engine_srtp_stats, METH_VARARGS, "(handle) -> dict"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Engine_slots[] = {
    {Py_tp_new, Engine_new},
    {Py_tp_dealloc, Engine_dealloc},
    {Py_tp_methods, Engine_methods},
    {Py_tp_doc, "The RTP engine: a worker thread relaying, generating and mixing G.711 RTP."},
    {0, NULL},
};

static PyType_Spec Engine_spec = {
    .name = "media._rtp.Engine",
    .basicsize = sizeof(EngineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Engine_slots,
};

/* mix_sum(frames, mask) -> bytes: the mixer's saturated sum, exposed for its numpy twin. */
static PyObject *mod_mix_sum(PyObject *module, PyObject *args)
{
    PyObject *frames_obj;
    unsigned int mask;
    if (!PyArg_ParseTuple(args, "OI", &frames_obj, &mask))
        return NULL;
    PyObject *fast = PySequence_Fast(frames_obj, "frames must be a sequence of bytes");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast), len = -1;
    Py_buffer views[RTP_MIX_MAX];
    const int16_t *ptrs[RTP_MIX_MAX];
    int got = 0;
    PyObject *result = NULL;
    if (n < 1 || n > RTP_MIX_MAX) {
        PyErr_SetString(PyExc_ValueError, "1 to 16 frames");
        goto out;
    }
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, got), &views[got], PyBUF_SIMPLE))
            goto out;
        if ((len >= 0 && views[got].len != len) || views[got].len % 2) {
            PyErr_SetString(PyExc_ValueError, "frames must be int16 and of equal length");
            got++;
            goto out;
        }
        len = views[got].len;
        ptrs[got] = views[got].buf;
    }
    result = PyBytes_FromStringAndSize(NULL, len);
    if (result)
        rtp_mix_sum(ptrs, mask, (int)n, (int16_t *)PyBytes_AS_STRING(result), (size_t)len / 2);
out:
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    Py_DECREF(fast);
    return result;
}

static PyMethodDef module_methods[] = {
    {"mix_sum", mod_mix_sum, METH_VARARGS, "(frames, mask) -> saturated int16 sum"},
    {NULL, NULL, 0, NULL},
};

static int add_error(PyObject *module, PyObject **slot, const char *name, PyObject *bases)
{
    char full[64];
    snprintf(full, sizeof full, "media._rtp.%s", name);
    *slot = PyErr_NewException(full, bases, NULL);
    Py_XDECREF(bases);
    if (!*slot)
        return -1;
    return PyModule_AddObjectRef(module, name, *slot);
}

static int module_exec(PyObject *module)
{
    module_state *st = PyModule_GetState(module);
    st->engine_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Engine_spec, NULL);
    if (!st->engine_type || PyModule_AddObjectRef(module, "Engine", (PyObject *)st->engine_type))
        return -1;
    if (add_error(module, &st->error, "MediaError", NULL) ||
        add_error(module, &st->unknown_error, "UnknownLegError",
                  PyTuple_Pack(2, st->error, PyExc_LookupError)) ||
        add_error(module, &st->ports_error, "PortsExhaustedError", PyTuple_Pack(1, st->error)) ||
        add_error(module, &st->state_error, "MediaStateError", PyTuple_Pack(1, st->error)) ||
        add_error(module, &st->value_error, "MediaValueError",
                  PyTuple_Pack(2, st->error, PyExc_ValueError)) ||
        add_error(module, &st->os_error, "MediaSystemError",
                  PyTuple_Pack(2, st->error, PyExc_OSError)))
        return -1;
    struct { const char *name; long value; } constants[] = {
        {"EV_FIRST_PACKET", RTP_EV_FIRST_PACKET}, {"EV_TIMEOUT", RTP_EV_TIMEOUT},
        {"EV_DTMF", RTP_EV_DTMF}, {"EV_PLAY_DONE", RTP_EV_PLAY_DONE},
        {"EV_TAP_DATA", RTP_EV_TAP_DATA}, {"EV_DTMF_SENT", RTP_EV_DTMF_SENT},
        {"SENDRECV", RTP_SENDRECV}, {"SENDONLY", RTP_SENDONLY}, {"RECVONLY", RTP_RECVONLY},
        {"INACTIVE", RTP_INACTIVE}, {"DTMF_RFC4733", RTP_DTMF_RFC4733},
        {"DTMF_INBAND", RTP_DTMF_INBAND}, {"TICK_MS", RTP_TICK_MS},
        {"MIX_MAX", RTP_MIX_MAX}, {"TAP_ONE_LEG", RTP_TAP_ONE_LEG},
        {"TAP_HEARD", RTP_TAP_HEARD}, {"LEG_TAPS", RTP_LEG_TAPS},
        {"SRTP_NONE", RTP_SRTP_NONE},
        {"SRTP_AES_CM_128_HMAC_SHA1_80", RTP_SRTP_AES_CM_128_HMAC_SHA1_80},
        {"SRTP_AES_CM_128_HMAC_SHA1_32", RTP_SRTP_AES_CM_128_HMAC_SHA1_32},
        {"SRTP_AES_256_CM_HMAC_SHA1_80", RTP_SRTP_AES_256_CM_HMAC_SHA1_80},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (PyModule_AddIntConstant(module, constants[i].name, constants[i].value))
            return -1;
    return 0;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    module_state *st = PyModule_GetState(module);
    Py_VISIT(st->engine_type);
    Py_VISIT(st->error);
    Py_VISIT(st->unknown_error);
    Py_VISIT(st->ports_error);
    Py_VISIT(st->state_error);
    Py_VISIT(st->value_error);
    Py_VISIT(st->os_error);
    return 0;
}

static int module_clear(PyObject *module)
{
    module_state *st = PyModule_GetState(module);
    Py_CLEAR(st->engine_type);
    Py_CLEAR(st->error);
    Py_CLEAR(st->unknown_error);
    Py_CLEAR(st->ports_error);
    Py_CLEAR(st->state_error);
    Py_CLEAR(st->value_error);
    Py_CLEAR(st->os_error);
    return 0;
}

static void module_free(void *module) { module_clear(module); }

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef rtp_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "media._rtp",
    .m_doc = "RTP engine: anchored G.711 relay, RFC 4733, playback, mixing, record taps.",
    .m_size = sizeof(module_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__rtp(void) { return PyModuleDef_Init(&rtp_module); }
