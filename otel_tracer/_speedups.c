/* Post-processing speedups: pairing raw events into calls, and encoding the
 * calls array of the JSON trace. Both have pure-Python/numpy equivalents
 * (otel_tracer/build.py, exporters/json_trace.py) that produce identical
 * results; these only make large traces fast.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Event layout: see otel_tracer/events.py. */
#define KIND_BITS 4
#define KIND_MASK ((1 << KIND_BITS) - 1)
#define THREAD_MASK ((1 << 20) - 1)
#define EV_CALL 1
#define EV_RESUME 2
#define EV_EXTERNAL 3

typedef struct {
    int64_t *items;
    Py_ssize_t size, capacity;
} Stack;

static int stack_push(Stack *s, int64_t v) {
    if (s->size == s->capacity) {
        Py_ssize_t cap = s->capacity ? s->capacity * 2 : 64;
        int64_t *items = PyMem_Realloc(s->items, cap * sizeof(int64_t));
        if (!items) return -1;
        s->items = items;
        s->capacity = cap;
    }
    s->items[s->size++] = v;
    return 0;
}

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable,
                      const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes", name, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* pair_events(events, parent, depth, end, close) fills, for call i (the i-th
 * opening event): parent call index (-1 for a root), depth, the time of its
 * closing event (-1 when unfinished), and the position of the closing event
 * (-1 when unfinished). One pass with a stack per thread. */
static PyObject *pair_events(PyObject *self, PyObject *args) {
    PyObject *objs[5];
    Py_buffer ev, parent, depth, end, close;
    PyObject *result = NULL;
    Stack *stacks = NULL;
    Py_ssize_t n_stacks = 0, call = 0;
    if (!PyArg_ParseTuple(args, "OOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4]))
        return NULL;
    if (get_buffer(objs[0], &ev, 8, 0, "events") < 0) return NULL;
    if (get_buffer(objs[1], &parent, 8, 1, "parent") < 0) goto fail0;
    if (get_buffer(objs[2], &depth, 4, 1, "depth") < 0) goto fail1;
    if (get_buffer(objs[3], &end, 8, 1, "end") < 0) goto fail2;
    if (get_buffer(objs[4], &close, 8, 1, "close") < 0) goto fail3;

    const int64_t *e = ev.buf;
    Py_ssize_t n_events = ev.len / 8 / 3, n_calls = parent.len / 8;
    int64_t *par = parent.buf, *en = end.buf, *cl = close.buf;
    int32_t *dep = depth.buf;

    for (Py_ssize_t i = 0; i < n_events; i++) {
        int64_t head = e[3 * i];
        int kind = (int)(head & KIND_MASK);
        Py_ssize_t thread = (Py_ssize_t)((head >> KIND_BITS) & THREAD_MASK);
        if (thread >= n_stacks) {
            Py_ssize_t grown = thread + 8;
            Stack *more = PyMem_Realloc(stacks, grown * sizeof(Stack));
            if (!more) { PyErr_NoMemory(); goto done; }
            memset(more + n_stacks, 0, (grown - n_stacks) * sizeof(Stack));
            stacks = more;
            n_stacks = grown;
        }
        Stack *s = &stacks[thread];
        if (kind == EV_CALL || kind == EV_RESUME || kind == EV_EXTERNAL) {
            if (call >= n_calls) {
                PyErr_SetString(PyExc_ValueError, "more opening events than calls");
                goto done;
            }
            par[call] = s->size ? s->items[s->size - 1] : -1;
            dep[call] = (int32_t)s->size;
            en[call] = -1;
            cl[call] = -1;
            if (stack_push(s, call) < 0) { PyErr_NoMemory(); goto done; }
            call++;
        } else if (s->size) {
            int64_t closed = s->items[--s->size];
            en[closed] = e[3 * i + 1];
            cl[closed] = i;
        }
    }
    result = Py_NewRef(Py_None);
done:
    for (Py_ssize_t t = 0; t < n_stacks; t++) PyMem_Free(stacks[t].items);
    PyMem_Free(stacks);
    PyBuffer_Release(&close);
fail3:
    PyBuffer_Release(&end);
fail2:
    PyBuffer_Release(&depth);
fail1:
    PyBuffer_Release(&parent);
fail0:
    PyBuffer_Release(&ev);
    return result;
}

/* A growing byte buffer. */
typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} Out;

static int out_reserve(Out *o, Py_ssize_t extra) {
    if (o->size + extra <= o->capacity) return 0;
    Py_ssize_t cap = o->capacity ? o->capacity : 1 << 16;
    while (cap < o->size + extra) cap *= 2;
    char *data = PyMem_Realloc(o->data, cap);
    if (!data) { PyErr_NoMemory(); return -1; }
    o->data = data;
    o->capacity = cap;
    return 0;
}

static inline void out_raw(Out *o, const char *s, Py_ssize_t n) {
    memcpy(o->data + o->size, s, n);
    o->size += n;
}

#define OUT_LIT(o, lit) out_raw((o), (lit), sizeof(lit) - 1)

static inline void out_int(Out *o, int64_t v) {
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) tmp[n++] = '-';
    while (n) o->data[o->size++] = tmp[--n];
}

static inline void out_hex16(Out *o, uint64_t v) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) o->data[o->size + i] = digits[v & 15], v >>= 4;
    o->size += 16;
}

/* Fragment tables: a list of bytes objects, indexed per call (-1 = absent). */
typedef struct {
    PyObject *list;
    Py_ssize_t max_len;
} Fragments;

static int fragments_init(Fragments *f, PyObject *list, const char *name) {
    if (!PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list of bytes", name);
        return -1;
    }
    f->list = list;
    f->max_len = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *b = PyList_GET_ITEM(list, i);
        if (!PyBytes_Check(b)) {
            PyErr_Format(PyExc_TypeError, "%s must be a list of bytes", name);
            return -1;
        }
        if (PyBytes_GET_SIZE(b) > f->max_len) f->max_len = PyBytes_GET_SIZE(b);
    }
    return 0;
}

static inline int out_fragment(Out *o, Fragments *f, int32_t index) {
    if (index < 0 || index >= PyList_GET_SIZE(f->list)) {
        PyErr_SetString(PyExc_IndexError, "fragment index out of range");
        return -1;
    }
    PyObject *b = PyList_GET_ITEM(f->list, index);
    out_raw(o, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
    return 0;
}

/* encode_calls(parent, depth, function, thread, start, end, span_id, args,
 *              value, exception, flags, pattern_group, pattern_iteration,
 *              pattern_variant, args_fragments, value_fragments,
 *              exception_fragments, flag_fragments) -> bytes
 * The JSON array of call objects (docs/trace-format.md). Each optional member
 * comes pre-encoded: `args` is an index into args_fragments (`,"args":{...}`),
 * `value` into value_fragments (`,"return":"..."`), `exception` into
 * exception_fragments, and flags into flag_fragments (the `,"external":true`
 * ... suffix for each flag combination). pattern_group is the 0-based pattern
 * group of each call or -1; with it come the iteration and the variant. */
static PyObject *encode_calls(PyObject *self, PyObject *args) {
    enum {
        PARENT, DEPTH, FUNCTION, THREAD, START, END, SPAN, ARGS, VALUE, EXC, FLAGS,
        PGROUP, PITER, PVAR, NCOL
    };
    static const Py_ssize_t sizes[NCOL] = {8, 4, 4, 4, 8, 8, 8, 4, 4, 4, 1, 8, 8, 4};
    PyObject *objs[NCOL], *frag_objs[4];
    Py_buffer cols[NCOL];
    Fragments frags[4];
    int got = 0;
    PyObject *result = NULL;
    Out o = {NULL, 0, 0};

    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOOOOOO", &objs[0], &objs[1], &objs[2], &objs[3],
                          &objs[4], &objs[5], &objs[6], &objs[7], &objs[8], &objs[9], &objs[10],
                          &objs[11], &objs[12], &objs[13], &frag_objs[0], &frag_objs[1],
                          &frag_objs[2], &frag_objs[3]))
        return NULL;
    for (; got < NCOL; got++)
        if (get_buffer(objs[got], &cols[got], sizes[got], 0, "column") < 0) goto done;
    for (int i = 0; i < 4; i++)
        if (fragments_init(&frags[i], frag_objs[i], "fragments") < 0) goto done;

    Py_ssize_t n = cols[PARENT].len / 8;
    for (int c = 0; c < NCOL; c++) {
        if (cols[c].len / sizes[c] != n) {
            PyErr_SetString(PyExc_ValueError, "columns differ in length");
            goto done;
        }
    }
    const int64_t *parent = cols[PARENT].buf, *start = cols[START].buf, *end = cols[END].buf;
    const int32_t *depth = cols[DEPTH].buf, *function = cols[FUNCTION].buf;
    const int32_t *thread = cols[THREAD].buf, *argi = cols[ARGS].buf;
    const int32_t *value = cols[VALUE].buf, *exc = cols[EXC].buf;
    const uint64_t *span = cols[SPAN].buf;
    const uint8_t *flags = cols[FLAGS].buf;
    const int64_t *pgroup = cols[PGROUP].buf, *piter = cols[PITER].buf;
    const int32_t *pvar = cols[PVAR].buf;
    Py_ssize_t per_call_max = 320 + frags[0].max_len + frags[1].max_len + frags[2].max_len +
                              frags[3].max_len;

    if (out_reserve(&o, 2) < 0) goto done;
    OUT_LIT(&o, "[");
    for (Py_ssize_t i = 0; i < n; i++) {
        if (out_reserve(&o, per_call_max) < 0) goto done;
        if (i) OUT_LIT(&o, ",");
        OUT_LIT(&o, "{\"id\":");
        out_int(&o, i + 1);
        OUT_LIT(&o, ",\"parent\":");
        if (parent[i] < 0) OUT_LIT(&o, "null");
        else out_int(&o, parent[i] + 1);
        OUT_LIT(&o, ",\"depth\":");
        out_int(&o, depth[i]);
        OUT_LIT(&o, ",\"function\":");
        out_int(&o, function[i]);
        OUT_LIT(&o, ",\"thread\":");
        out_int(&o, thread[i]);
        OUT_LIT(&o, ",\"start\":");
        out_int(&o, start[i]);
        OUT_LIT(&o, ",\"end\":");
        out_int(&o, end[i]);
        OUT_LIT(&o, ",\"span_id\":\"");
        out_hex16(&o, span[i]);
        OUT_LIT(&o, "\"");
        if (argi[i] >= 0 && out_fragment(&o, &frags[0], argi[i]) < 0) goto done;
        if (value[i] >= 0 && out_fragment(&o, &frags[1], value[i]) < 0) goto done;
        if (exc[i] >= 0 && out_fragment(&o, &frags[2], exc[i]) < 0) goto done;
        if (out_fragment(&o, &frags[3], flags[i]) < 0) goto done;
        if (pgroup[i] >= 0) {
            OUT_LIT(&o, ",\"pattern\":{\"id\":");
            out_int(&o, pgroup[i] + 1);
            OUT_LIT(&o, ",\"iteration\":");
            out_int(&o, piter[i]);
            OUT_LIT(&o, ",\"variant\":");
            out_int(&o, pvar[i]);
            OUT_LIT(&o, "}");
        }
        OUT_LIT(&o, "}");
    }
    if (out_reserve(&o, 1) < 0) goto done;
    OUT_LIT(&o, "]");
    result = PyBytes_FromStringAndSize(o.data, o.size);
done:
    PyMem_Free(o.data);
    for (int c = 0; c < got; c++) PyBuffer_Release(&cols[c]);
    return result;
}

static PyMethodDef methods[] = {
    {"pair_events", pair_events, METH_VARARGS, "Pair opening and closing events into calls."},
    {"encode_calls", encode_calls, METH_VARARGS, "Encode the calls array of the JSON trace."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "otel_tracer._speedups",
                                    "Post-processing speedups (optional).", -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
