/* media._dsp: G.711 codecs, the in-band DTMF detector and the tone generator for Python.
 *
 * Multi-phase initialisation (PEP 489) with a module state holding the heap types; no static
 * mutable globals. Inputs are read through the buffer protocol; linear PCM is int16
 * little-endian. Work on buffers of LARGE_BUFFER bytes or more runs with the GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "dtmf.h"
#include "g711.h"
#include "tone.h"

#define LARGE_BUFFER 4096 /* bytes of input above which the GIL is released */
#define CHUNK 1024        /* samples copied to an aligned buffer at a time */
#define MAX_FILL (TONE_SAMPLE_RATE * 3600) /* one hour of samples per fill() call */

typedef struct {
    PyTypeObject *detector_type;
    PyTypeObject *tone_type;
} dsp_state;

static dsp_state *get_state(PyObject *module)
{
    return (dsp_state *)PyModule_GetState(module);
}

/* ---- little-endian int16 <-> host ------------------------------------------------------ */

static void load_pcm(const unsigned char *src, int16_t *dst, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, n * 2);
#else
    for (size_t i = 0; i < n; i++)
        dst[i] = (int16_t)(uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
#endif
}

static void store_pcm(const int16_t *src, unsigned char *dst, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, n * 2);
#else
    for (size_t i = 0; i < n; i++) {
        uint16_t v = (uint16_t)src[i];
        dst[2 * i] = (unsigned char)(v & 0xFF);
        dst[2 * i + 1] = (unsigned char)(v >> 8);
    }
#endif
}

/* ---- G.711 ------------------------------------------------------------------------------ */

static void encode_run(int law, const unsigned char *in, unsigned char *out, size_t n)
{
    int16_t pcm[CHUNK];
    for (size_t done = 0; done < n;) {
        size_t run = n - done < CHUNK ? n - done : CHUNK;
        load_pcm(in + 2 * done, pcm, run);
        g711_encode(law, pcm, out + done, run);
        done += run;
    }
}

static void decode_run(int law, const unsigned char *in, unsigned char *out, size_t n)
{
    int16_t pcm[CHUNK];
    for (size_t done = 0; done < n;) {
        size_t run = n - done < CHUNK ? n - done : CHUNK;
        g711_decode(law, in + done, pcm, run);
        store_pcm(pcm, out + 2 * done, run);
        done += run;
    }
}

/* One buffer through encode_run or decode_run: `in_size`/`out_size` bytes per sample. */
static PyObject *convert(PyObject *arg, int law,
                         void (*run)(int, const unsigned char *, unsigned char *, size_t),
                         size_t in_size, size_t out_size)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if ((size_t)view.len % in_size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "linear PCM must be int16: an even number of bytes");
        return NULL;
    }
    size_t n = (size_t)view.len / in_size;
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * out_size));
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    if (view.len >= LARGE_BUFFER) {
        Py_BEGIN_ALLOW_THREADS
        run(law, view.buf, out, n);
        Py_END_ALLOW_THREADS
    } else {
        run(law, view.buf, out, n);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyObject *encode(PyObject *arg, int law) { return convert(arg, law, encode_run, 2, 1); }
static PyObject *decode(PyObject *arg, int law) { return convert(arg, law, decode_run, 1, 2); }

static PyObject *transcode(PyObject *arg, void (*convert)(const uint8_t *, uint8_t *, size_t))
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = PyBytes_FromStringAndSize(NULL, view.len);
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    if (view.len >= LARGE_BUFFER) {
        Py_BEGIN_ALLOW_THREADS
        convert(view.buf, out, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        convert(view.buf, out, (size_t)view.len);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyObject *ulaw_encode(PyObject *module, PyObject *arg) { return encode(arg, G711_ULAW); }
static PyObject *alaw_encode(PyObject *module, PyObject *arg) { return encode(arg, G711_ALAW); }
static PyObject *ulaw_decode(PyObject *module, PyObject *arg) { return decode(arg, G711_ULAW); }
static PyObject *alaw_decode(PyObject *module, PyObject *arg) { return decode(arg, G711_ALAW); }
static PyObject *ulaw_to_alaw(PyObject *module, PyObject *arg)
{
    return transcode(arg, g711_ulaw_to_alaw);
}
static PyObject *alaw_to_ulaw(PyObject *module, PyObject *arg)
{
    return transcode(arg, g711_alaw_to_ulaw);
}

/* ---- DtmfDetector ----------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    dtmf_detector detector;
    int busy; /* set (under the GIL) while a feed runs without the GIL */
} DetectorObject;

static int detector_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    char *keywords[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, ":DtmfDetector", keywords))
        return -1;
    DetectorObject *obj = (DetectorObject *)self;
    if (obj->busy) {
        PyErr_SetString(PyExc_RuntimeError, "DtmfDetector is being fed by another thread");
        return -1;
    }
    dtmf_detector_init(&obj->detector);
    return 0;
}

typedef struct {
    dtmf_event *events;
    size_t count;
    size_t capacity;
} event_list;

static void feed_all(dtmf_detector *det, const unsigned char *data, size_t n, event_list *list)
{
    int16_t pcm[CHUNK];
    for (size_t done = 0; done < n;) {
        size_t run = n - done < CHUNK ? n - done : CHUNK;
        load_pcm(data + 2 * done, pcm, run);
        int room = (int)(list->capacity - list->count);
        list->count += (size_t)dtmf_detector_feed(det, pcm, run, list->events + list->count, room);
        done += run;
    }
}

static PyObject *detector_feed(PyObject *self, PyObject *arg)
{
    DetectorObject *obj = (DetectorObject *)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len % 2) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "linear PCM must be int16: an even number of bytes");
        return NULL;
    }
    if (obj->busy) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "DtmfDetector is being fed by another thread");
        return NULL;
    }
    size_t n = (size_t)view.len / 2;
    /* a key needs >= 3 strict and 4 off blocks: at most one event per 7 blocks, plus one for
     * the state carried in */
    event_list list = {NULL, 0, n / (7 * DTMF_BLOCK) + 2};
    list.events = PyMem_Malloc(list.capacity * sizeof(dtmf_event));
    if (list.events == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    if (view.len >= LARGE_BUFFER) {
        obj->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        feed_all(&obj->detector, view.buf, n, &list);
        Py_END_ALLOW_THREADS
        obj->busy = 0;
    } else {
        feed_all(&obj->detector, view.buf, n, &list);
    }
    PyBuffer_Release(&view);
    PyObject *result = PyList_New((Py_ssize_t)list.count);
    for (size_t i = 0; result != NULL && i < list.count; i++) {
        const dtmf_event *ev = &list.events[i];
        PyObject *item = Py_BuildValue("(s#kk)", &ev->digit, (Py_ssize_t)1,
                                       (unsigned long)ev->start_sample,
                                       (unsigned long)ev->duration_samples);
        if (item == NULL)
            Py_CLEAR(result);
        else
            PyList_SET_ITEM(result, (Py_ssize_t)i, item);
    }
    PyMem_Free(list.events);
    return result;
}

static PyObject *detector_reset(PyObject *self, PyObject *unused)
{
    DetectorObject *obj = (DetectorObject *)self;
    if (obj->busy) {
        PyErr_SetString(PyExc_RuntimeError, "DtmfDetector is being fed by another thread");
        return NULL;
    }
    dtmf_detector_reset(&obj->detector);
    Py_RETURN_NONE;
}

static PyObject *detector_get_last(PyObject *self, void *closure)
{
    DetectorObject *obj = (DetectorObject *)self;
    dtmf_event ev;
    int state = dtmf_detector_last(&obj->detector, &ev);
    if (state < 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(s#kkO)", &ev.digit, (Py_ssize_t)1, (unsigned long)ev.start_sample,
                         (unsigned long)ev.duration_samples, state ? Py_True : Py_False);
}

static PyObject *detector_get_sample_count(PyObject *self, void *closure)
{
    return PyLong_FromUnsignedLong(((DetectorObject *)self)->detector.sample_count);
}

static PyObject *detector_get_events_dropped(PyObject *self, void *closure)
{
    return PyLong_FromUnsignedLong(((DetectorObject *)self)->detector.events_dropped);
}

/* Both object types hold plain C state and a strong reference to their heap type only. */
static void plain_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static int plain_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static PyMethodDef detector_methods[] = {
    {"feed", detector_feed, METH_O,
     "feed(pcm) -> list[tuple[str, int, int]]\n--\n\n"
     "Feed int16 little-endian 8 kHz PCM; returns the key presses confirmed in it as\n"
     "(digit, start_sample, duration_samples), duration 0 while the key is still on."},
    {"reset", detector_reset, METH_NOARGS,
     "reset() -> None\n--\n\nForget all state; the sample counter restarts at 0."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef detector_getset[] = {
    {"last", detector_get_last, NULL,
     "Most recent key press as (digit, start_sample, duration_samples, still_on), or None.",
     NULL},
    {"sample_count", detector_get_sample_count, NULL, "Samples fed since creation or reset.",
     NULL},
    {"events_dropped", detector_get_events_dropped, NULL,
     "Key presses lost because one feed produced more than it could return (always 0 here).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot detector_slots[] = {
    {Py_tp_doc, "DtmfDetector()\n--\n\n"
                "In-band DTMF detector (ITU-T Q.23/Q.24) for 8 kHz int16 little-endian PCM."},
    {Py_tp_init, detector_init},
    {Py_tp_dealloc, plain_dealloc},
    {Py_tp_traverse, plain_traverse},
    {Py_tp_methods, detector_methods},
    {Py_tp_getset, detector_getset},
    {0, NULL},
};

static PyType_Spec detector_spec = {
    .name = "media._dsp.DtmfDetector",
    .basicsize = sizeof(DetectorObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = detector_slots,
};

/* ---- ToneGenerator ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    tone_gen tone;
} ToneObject;

static int check_frequency(double f, const char *name)
{
    if (!(f >= 0.0 && f < TONE_SAMPLE_RATE / 2.0)) {
        PyErr_Format(PyExc_ValueError, "%s must be in [0, 4000) Hz", name);
        return -1;
    }
    return 0;
}

static int check_level(double level)
{
    if (!(level >= -100.0 && level <= 3.14)) {
        PyErr_SetString(PyExc_ValueError, "level_dbm0 must be in [-100, 3.14]");
        return -1;
    }
    return 0;
}

static int tone_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    char *keywords[] = {"f1", "f2", "level_dbm0", "on_ms", "off_ms", "repeats", NULL};
    double f1, f2 = 0.0, level = -10.0;
    long long on_ms = 1000, off_ms = 0, repeats = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "d|ddLLL:ToneGenerator", keywords, &f1, &f2,
                                     &level, &on_ms, &off_ms, &repeats))
        return -1;
    if (check_frequency(f1, "f1") < 0 || check_frequency(f2, "f2") < 0 || check_level(level) < 0)
        return -1;
    if (on_ms < 0 || on_ms > UINT32_MAX / 8 || off_ms < 0 || off_ms > UINT32_MAX / 8 ||
        repeats < 0 || repeats > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError,
                        "on_ms and off_ms must be in [0, 536870911], repeats in [0, 2**32)");
        return -1;
    }
    tone_gen_init(&((ToneObject *)self)->tone, f1, f2, level, (uint32_t)on_ms, (uint32_t)off_ms,
                  (uint32_t)repeats);
    return 0;
}

static PyObject *tone_fill(PyObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0 || n > MAX_FILL) {
        PyErr_Format(PyExc_ValueError, "n must be in [0, %d]", MAX_FILL);
        return NULL;
    }
    int16_t *pcm = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int16_t));
    if (pcm == NULL)
        return PyErr_NoMemory();
    size_t written = tone_gen_fill(&((ToneObject *)self)->tone, pcm, (size_t)n);
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(2 * written));
    if (result != NULL)
        store_pcm(pcm, (unsigned char *)PyBytes_AS_STRING(result), written);
    PyMem_Free(pcm);
    return result;
}

static PyObject *tone_get_finished(PyObject *self, void *closure)
{
    return PyBool_FromLong(((ToneObject *)self)->tone.finished);
}


static PyMethodDef tone_methods[] = {
    {"fill", tone_fill, METH_O,
     "fill(n) -> bytes\n--\n\n"
     "The next n samples as int16 little-endian; fewer once a finite cadence has ended."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tone_getset[] = {
    {"finished", tone_get_finished, NULL, "True once a finite cadence has ended.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot tone_slots[] = {
    {Py_tp_doc, "ToneGenerator(f1, f2=0, level_dbm0=-10, on_ms=1000, off_ms=0, repeats=0)\n--\n\n"
                "One or two sine tones at level_dbm0 each, on_ms on and off_ms off per cycle,\n"
                "repeats cycles (0: forever); off_ms=0 and repeats=0 is a continuous tone."},
    {Py_tp_init, tone_init},
    {Py_tp_dealloc, plain_dealloc},
    {Py_tp_traverse, plain_traverse},
    {Py_tp_methods, tone_methods},
    {Py_tp_getset, tone_getset},
    {0, NULL},
};

static PyType_Spec tone_spec = {
    .name = "media._dsp.ToneGenerator",
    .basicsize = sizeof(ToneObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = tone_slots,
};

/* ---- dtmf_tone ---------------------------------------------------------------------------- */

static PyObject *dtmf_tone(PyObject *module, PyObject *args, PyObject *kwargs)
{
    char *keywords[] = {"digit", "level_dbm0", "ms", NULL};
    const char *digit;
    Py_ssize_t digit_len;
    double level = -10.0;
    long ms = 100;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s#|dl:dtmf_tone", keywords, &digit,
                                     &digit_len, &level, &ms))
        return NULL;
    if (check_level(level) < 0)
        return NULL;
    if (ms < 0 || ms > MAX_FILL / 8) {
        PyErr_Format(PyExc_ValueError, "ms must be in [0, %d]", MAX_FILL / 8);
        return NULL;
    }
    tone_gen tone;
    if (digit_len != 1 || tone_gen_dtmf(&tone, digit[0], level, (uint32_t)ms) != 0) {
        PyErr_SetString(PyExc_ValueError, "digit must be one of 0-9, *, #, A-D");
        return NULL;
    }
    size_t n = (size_t)ms * 8;
    int16_t *pcm = PyMem_Malloc((n ? n : 1) * sizeof(int16_t));
    if (pcm == NULL)
        return PyErr_NoMemory();
    size_t written = tone_gen_fill(&tone, pcm, n);
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(2 * written));
    if (result != NULL)
        store_pcm(pcm, (unsigned char *)PyBytes_AS_STRING(result), written);
    PyMem_Free(pcm);
    return result;
}

/* ---- module ------------------------------------------------------------------------------ */

static PyMethodDef module_methods[] = {
    {"ulaw_encode", ulaw_encode, METH_O,
     "ulaw_encode(pcm) -> bytes\n--\n\nint16 little-endian PCM to G.711 mu-law."},
    {"ulaw_decode", ulaw_decode, METH_O,
     "ulaw_decode(data) -> bytes\n--\n\nG.711 mu-law to int16 little-endian PCM."},
    {"alaw_encode", alaw_encode, METH_O,
     "alaw_encode(pcm) -> bytes\n--\n\nint16 little-endian PCM to G.711 A-law."},
    {"alaw_decode", alaw_decode, METH_O,
     "alaw_decode(data) -> bytes\n--\n\nG.711 A-law to int16 little-endian PCM."},
    {"ulaw_to_alaw", ulaw_to_alaw, METH_O,
     "ulaw_to_alaw(data) -> bytes\n--\n\nmu-law codes to A-law codes (through linear)."},
    {"alaw_to_ulaw", alaw_to_ulaw, METH_O,
     "alaw_to_ulaw(data) -> bytes\n--\n\nA-law codes to mu-law codes (through linear)."},
    {"dtmf_tone", (PyCFunction)(void (*)(void))dtmf_tone, METH_VARARGS | METH_KEYWORDS,
     "dtmf_tone(digit, level_dbm0=-10, ms=100) -> bytes\n--\n\n"
     "One DTMF key, both tones at level_dbm0, as int16 little-endian PCM."},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module)
{
    dsp_state *state = get_state(module);
    state->detector_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &detector_spec, NULL);
    if (state->detector_type == NULL)
        return -1;
    if (PyModule_AddType(module, state->detector_type) < 0)
        return -1;
    state->tone_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &tone_spec, NULL);
    if (state->tone_type == NULL)
        return -1;
    if (PyModule_AddType(module, state->tone_type) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "SAMPLE_RATE", TONE_SAMPLE_RATE) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "DTMF_BLOCK", DTMF_BLOCK) < 0)
        return -1;
    return 0;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    dsp_state *state = get_state(module);
    Py_VISIT(state->detector_type);
    Py_VISIT(state->tone_type);
    return 0;
}

static int module_clear(PyObject *module)
{
    dsp_state *state = get_state(module);
    Py_CLEAR(state->detector_type);
    Py_CLEAR(state->tone_type);
    return 0;
}

static void module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef dsp_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "media._dsp",
    .m_doc = "G.711, in-band DTMF detection and tone generation in C (see media/_dsp.pyi).",
    .m_size = sizeof(dsp_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__dsp(void)
{
    return PyModuleDef_Init(&dsp_module);
}
