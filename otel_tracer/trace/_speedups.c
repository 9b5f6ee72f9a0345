/* Post-processing speedups: pairing raw events into calls, and encoding and
 * decoding the calls array of the JSON trace. Both have pure-Python/numpy equivalents
 * (otel_tracer/trace/build.py, otel_tracer/trace/save.py) that produce identical
 * results; these only make large traces fast.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Event layout: see otel_tracer/trace/events.py. */
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

/* The stack of open calls of `thread` in `*stacks` (grown as needed), or NULL
 * with MemoryError set. */
static Stack *thread_stack(Stack **stacks, Py_ssize_t *n_stacks, Py_ssize_t thread) {
    if (thread >= *n_stacks) {
        Py_ssize_t grown = thread + 8;
        Stack *more = PyMem_Realloc(*stacks, grown * sizeof(Stack));
        if (!more) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(more + *n_stacks, 0, (grown - *n_stacks) * sizeof(Stack));
        *stacks = more;
        *n_stacks = grown;
    }
    return &(*stacks)[thread];
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
        Stack *s = thread_stack(&stacks, &n_stacks, thread);
        if (!s) goto done;
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

/* The flags of a call (otel_tracer/trace/tables.py). */
#define F_EXTERNAL 1
#define F_RESUMED 2
#define F_RAISED 4
#define F_YIELDED 8
#define F_UNFINISHED 16
#define EV_YIELD 5
#define EV_RAISE 6
#define REF_SHIFT (KIND_BITS + 20)

/* count_calls(events) -> the number of opening events: the calls. */
static PyObject *count_calls(PyObject *self, PyObject *arg) {
    Py_buffer ev;
    if (get_buffer(arg, &ev, 8, 0, "events") < 0) return NULL;
    const int64_t *e = ev.buf;
    Py_ssize_t n_events = ev.len / 8 / 3, calls = 0;
    for (Py_ssize_t i = 0; i < n_events; i++) {
        int kind = (int)(e[3 * i] & KIND_MASK);
        calls += kind == EV_CALL || kind == EV_RESUME || kind == EV_EXTERNAL;
    }
    PyBuffer_Release(&ev);
    return PyLong_FromSsize_t(calls);
}

/* build_calls(events, stop_time, columns) fills the columns of the call table
 * (build.py's _pair_events, without its temporaries: at 10^8 calls each int64
 * temporary takes 0.8 GB), one row per opening event in event order. columns:
 * parent (int64, -1: a root), depth (int32), function, thread (int32), start,
 * end (int64; stop_time for a call no event closes), args (int32: a CALL's aux),
 * value, exception (int32: a closing event's aux, the exception slot for a
 * RAISE), flags (uint8), task (int32: a RESUME's aux); each one row per call. */
static PyObject *build_calls(PyObject *self, PyObject *args) {
    enum { PARENT, DEPTH, FUNCTION, THREAD, START, END, ARGS, VALUE, EXC, FLAGS, TASK, NCOL };
    static const Py_ssize_t sizes[NCOL] = {8, 4, 4, 4, 8, 8, 4, 4, 4, 1, 4};
    PyObject *events_obj, *list;
    long long stop_time;
    Py_buffer ev, cols[NCOL];
    int got = 0;
    PyObject *result = NULL;
    Stack *stacks = NULL;
    Py_ssize_t n_stacks = 0, call = 0;
    if (!PyArg_ParseTuple(args, "OLO", &events_obj, &stop_time, &list)) return NULL;
    if (!PyList_Check(list) || PyList_GET_SIZE(list) != NCOL) {
        PyErr_SetString(PyExc_TypeError, "columns: a list of the 11 call columns");
        return NULL;
    }
    if (get_buffer(events_obj, &ev, 8, 0, "events") < 0) return NULL;
    for (; got < NCOL; got++)
        if (get_buffer(PyList_GET_ITEM(list, got), &cols[got], sizes[got], 1, "column") < 0)
            goto done;
    Py_ssize_t n_calls = cols[PARENT].len / 8;
    for (int c = 1; c < NCOL; c++) {
        if (cols[c].len / sizes[c] != n_calls) {
            PyErr_SetString(PyExc_ValueError, "columns differ in length");
            goto done;
        }
    }
    const int64_t *e = ev.buf;
    Py_ssize_t n_events = ev.len / 8 / 3;
    int64_t *par = cols[PARENT].buf, *start = cols[START].buf, *end = cols[END].buf;
    int32_t *dep = cols[DEPTH].buf, *fun = cols[FUNCTION].buf, *thr = cols[THREAD].buf;
    int32_t *arg = cols[ARGS].buf, *val = cols[VALUE].buf, *exc = cols[EXC].buf;
    int32_t *task = cols[TASK].buf;
    uint8_t *flags = cols[FLAGS].buf;

    for (Py_ssize_t i = 0; i < n_events; i++) {
        int64_t head = e[3 * i], time = e[3 * i + 1], aux = e[3 * i + 2];
        int kind = (int)(head & KIND_MASK);
        Py_ssize_t thread = (Py_ssize_t)((head >> KIND_BITS) & THREAD_MASK);
        Stack *s = thread_stack(&stacks, &n_stacks, thread);
        if (!s) goto done;
        if (kind == EV_CALL || kind == EV_RESUME || kind == EV_EXTERNAL) {
            if (call >= n_calls) {
                PyErr_SetString(PyExc_ValueError, "more opening events than calls");
                goto done;
            }
            par[call] = s->size ? s->items[s->size - 1] : -1;
            dep[call] = (int32_t)s->size;
            fun[call] = (int32_t)(head >> REF_SHIFT);
            thr[call] = (int32_t)thread;
            start[call] = time;
            end[call] = stop_time;
            arg[call] = kind == EV_CALL ? (int32_t)aux : -1;
            task[call] = kind == EV_RESUME ? (int32_t)aux : -1;
            val[call] = exc[call] = -1;
            flags[call] = F_UNFINISHED | (kind == EV_EXTERNAL ? F_EXTERNAL : 0) |
                          (kind == EV_RESUME ? F_RESUMED : 0);
            if (stack_push(s, call) < 0) { PyErr_NoMemory(); goto done; }
            call++;
        } else if (s->size) {
            int64_t closed = s->items[--s->size];
            end[closed] = time;
            flags[closed] &= (uint8_t)~F_UNFINISHED;
            if (kind == EV_RAISE) {
                flags[closed] |= F_RAISED;
                exc[closed] = (int32_t)aux;
            } else {
                flags[closed] |= kind == EV_YIELD ? F_YIELDED : 0;
                val[closed] = (int32_t)aux;
            }
        }
    }
    if (call != n_calls) {
        PyErr_SetString(PyExc_ValueError, "fewer opening events than calls");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    for (Py_ssize_t t = 0; t < n_stacks; t++) PyMem_Free(stacks[t].items);
    PyMem_Free(stacks);
    for (int c = 0; c < got; c++) PyBuffer_Release(&cols[c]);
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

/* The members of a call row of the JSON trace, version 2 (docs/trace-format.md),
 * in order. The first ROW_REQUIRED are always written; later ones are written up
 * to the last one that differs from its default. */
enum {
    R_PARENT, R_FUNCTION, R_THREAD, R_START, R_DURATION, R_SPAN, R_ARGS, R_RETURN, R_FLAGS,
    R_EXCEPTION, R_PATTERN, R_ITERATION, R_VARIANT, ROW_MEMBERS
};
#define ROW_REQUIRED 6
static const int64_t row_default[ROW_MEMBERS] = {0, 0, 0, 0, 0, 0, -1, -1, 0, -1, 0, 0, 0};
/* the item size of each member's column in the trace model: int64, int32 or uint8 */
static const Py_ssize_t member_size[ROW_MEMBERS] = {8, 4, 4, 8, 8, 8, 4, 4, 1, 4, 8, 8, 4};

/* encode_calls(parent, function, thread, start, end, span_id, args, value,
 *              exception, flags, pattern_group, pattern_iteration,
 *              pattern_variant, start_base) -> bytes
 * The JSON array of call rows. parent is the 0-based parent row (-1 for a root),
 * pattern_group the 0-based group (-1: none); every other column is written as
 * it is (indices already into the file's tables), start as start - start_base
 * and end as the duration end - start. */
static PyObject *encode_calls(PyObject *self, PyObject *args) {
    enum {
        PARENT, FUNCTION, THREAD, START, END, SPAN, ARGS, VALUE, EXC, FLAGS, PGROUP, PITER, PVAR,
        NCOL
    };
    static const Py_ssize_t sizes[NCOL] = {8, 4, 4, 8, 8, 8, 4, 4, 4, 1, 8, 8, 4};
    PyObject *objs[NCOL];
    Py_buffer cols[NCOL];
    long long base;
    int got = 0;
    PyObject *result = NULL;
    Out o = {NULL, 0, 0};

    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOL", &objs[0], &objs[1], &objs[2], &objs[3],
                          &objs[4], &objs[5], &objs[6], &objs[7], &objs[8], &objs[9], &objs[10],
                          &objs[11], &objs[12], &base))
        return NULL;
    for (; got < NCOL; got++)
        if (get_buffer(objs[got], &cols[got], sizes[got], 0, "column") < 0) goto done;

    Py_ssize_t n = cols[PARENT].len / 8;
    for (int c = 0; c < NCOL; c++) {
        if (cols[c].len / sizes[c] != n) {
            PyErr_SetString(PyExc_ValueError, "columns differ in length");
            goto done;
        }
    }
    const int64_t *parent = cols[PARENT].buf, *start = cols[START].buf, *end = cols[END].buf;
    const int32_t *function = cols[FUNCTION].buf, *thread = cols[THREAD].buf;
    const int32_t *argi = cols[ARGS].buf, *value = cols[VALUE].buf, *exc = cols[EXC].buf;
    const uint64_t *span = cols[SPAN].buf;
    const uint8_t *flags = cols[FLAGS].buf;
    const int64_t *pgroup = cols[PGROUP].buf, *piter = cols[PITER].buf;
    const int32_t *pvar = cols[PVAR].buf;

    if (out_reserve(&o, 2) < 0) goto done;
    OUT_LIT(&o, "[");
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t row[ROW_MEMBERS];
        row[R_PARENT] = parent[i] < 0 ? 0 : parent[i] + 1;
        row[R_FUNCTION] = function[i];
        row[R_THREAD] = thread[i];
        /* wrapping arithmetic: the loader checks the sums back into range */
        row[R_START] = (int64_t)((uint64_t)start[i] - (uint64_t)base);
        row[R_DURATION] = (int64_t)((uint64_t)end[i] - (uint64_t)start[i]);
        row[R_SPAN] = 0;
        row[R_ARGS] = argi[i];
        row[R_RETURN] = value[i];
        row[R_FLAGS] = flags[i];
        row[R_EXCEPTION] = exc[i];
        row[R_PATTERN] = pgroup[i] < 0 ? 0 : pgroup[i] + 1;
        row[R_ITERATION] = pgroup[i] < 0 ? 0 : piter[i];
        row[R_VARIANT] = pgroup[i] < 0 ? 0 : pvar[i];
        int members = ROW_MEMBERS;
        while (members > ROW_REQUIRED && row[members - 1] == row_default[members - 1]) members--;
        if (out_reserve(&o, 2 + ROW_MEMBERS * 21 + 18) < 0) goto done;
        if (i) OUT_LIT(&o, ",");
        OUT_LIT(&o, "[");
        for (int m = 0; m < members; m++) {
            if (m) OUT_LIT(&o, ",");
            if (m == R_SPAN) {
                OUT_LIT(&o, "\"");
                out_hex16(&o, span[i]);
                OUT_LIT(&o, "\"");
            } else {
                out_int(&o, row[m]);
            }
        }
        OUT_LIT(&o, "]");
    }
    if (out_reserve(&o, 1) < 0) goto done;
    OUT_LIT(&o, "]");
    result = PyBytes_FromStringAndSize(o.data, o.size);
done:
    PyMem_Free(o.data);
    for (int c = 0; c < got; c++) PyBuffer_Release(&cols[c]);
    return result;
}

/* ---- Reading ---------------------------------------------------------------- */

static inline int is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static Py_ssize_t skip_ws(const char *s, Py_ssize_t i, Py_ssize_t n) {
    while (i < n && is_ws(s[i])) i++;
    return i;
}

/* The position after the JSON string starting at s[i] == '"', or -1. */
static Py_ssize_t skip_string(const char *s, Py_ssize_t i, Py_ssize_t n) {
    for (i++; i < n; i++) {
        if (s[i] == '\\') i++;
        else if (s[i] == '"') return i + 1;
    }
    return -1;
}

/* The position after the JSON value starting at s[i], or -1. Containers are only
 * matched by depth, not validated: orjson validates what is left of the document. */
static Py_ssize_t skip_value(const char *s, Py_ssize_t i, Py_ssize_t n) {
    if (i >= n) return -1;
    if (s[i] == '"') return skip_string(s, i, n);
    if (s[i] == '[' || s[i] == '{') {
        Py_ssize_t depth = 0;
        while (i < n) {
            char c = s[i];
            if (c == '"') {
                i = skip_string(s, i, n);
                if (i < 0) return -1;
                continue;
            }
            if (c == '[' || c == '{') depth++;
            else if (c == ']' || c == '}') {
                if (--depth == 0) return i + 1;
            }
            i++;
        }
        return -1;
    }
    while (i < n && !is_ws(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']') i++;
    return i;
}

/* find_member(data, key) -> the position where the value of the top-level
 * member `key` of the JSON object in data starts (the key matched byte for byte,
 * unescaped), or None when data does not start as such an object with such a
 * member: the caller then parses the whole document. The members before it are
 * skipped by matching brackets only; the caller validates them (orjson) and
 * decodes the value itself, which gives where it ends. */
static PyObject *find_member(PyObject *self, PyObject *args) {
    Py_buffer data;
    const char *key;
    Py_ssize_t key_len;
    if (!PyArg_ParseTuple(args, "y*s#", &data, &key, &key_len)) return NULL;
    const char *s = data.buf;
    Py_ssize_t n = data.len;
    Py_ssize_t i = skip_ws(s, 0, n);
    if (i >= n || s[i] != '{') goto none;
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == '}') goto none;
    for (;;) {
        if (i >= n || s[i] != '"') goto none;
        Py_ssize_t key_start = i + 1, key_end = skip_string(s, i, n);
        if (key_end < 0) goto none;
        i = skip_ws(s, key_end, n);
        if (i >= n || s[i] != ':') goto none;
        i = skip_ws(s, i + 1, n);
        if (key_end - 1 - key_start == key_len && memcmp(s + key_start, key, key_len) == 0) {
            PyBuffer_Release(&data);
            return PyLong_FromSsize_t(i);
        }
        i = skip_value(s, i, n);
        if (i < 0) goto none;
        i = skip_ws(s, i, n);
        if (i < n && s[i] == ',') {
            i = skip_ws(s, i + 1, n);
            continue;
        }
        goto none;
    }
none:
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

static PyObject *row_error(Py_ssize_t row, const char *problem) {
    PyErr_Format(PyExc_ValueError, "call %zd: %s", row + 1, problem);
    return NULL;
}

/* A JSON integer at s[*i] into *out (int64); -1 on anything else. */
static int parse_int(const char *s, Py_ssize_t *i, Py_ssize_t n, int64_t *out) {
    Py_ssize_t p = *i;
    int negative = 0;
    if (p < n && s[p] == '-') negative = 1, p++;
    if (p >= n || s[p] < '0' || s[p] > '9') return -1;
    if (s[p] == '0' && p + 1 < n && s[p + 1] >= '0' && s[p + 1] <= '9') return -1;
    uint64_t v = 0, limit = negative ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1;
    while (p < n && s[p] >= '0' && s[p] <= '9') {
        unsigned d = (unsigned)(s[p] - '0');
        if (v > (limit - d) / 10) return -1;
        v = v * 10 + d;
        p++;
    }
    if (p < n && (s[p] == '.' || s[p] == 'e' || s[p] == 'E')) return -1;
    *out = negative ? (int64_t)(0 - v) : (int64_t)v;
    *i = p;
    return 0;
}

/* column[row] = v in a column of `size`-byte items; -1 when v does not fit. */
static inline int store(char *column, Py_ssize_t size, Py_ssize_t row, int64_t v) {
    if (size == 8) {
        ((int64_t *)column)[row] = v;
    } else if (size == 4) {
        if (v < INT32_MIN || v > INT32_MAX) return -1;
        ((int32_t *)column)[row] = (int32_t)v;
    } else {
        if (v < 0 || v > UINT8_MAX) return -1;
        ((uint8_t *)column)[row] = (uint8_t)v;
    }
    return 0;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* decode_calls(data, start, columns) -> (number of rows, end), or None
 * Parses the calls array of a version 2 trace that starts at data[start] into
 * `columns`: ROW_MEMBERS writable buffers of equal length (at least the number
 * of rows; None when they are too short), in row member order, with the item
 * sizes of member_size (int64, int32; the flags uint8); the span id column gets
 * the id's 64 bits. Members a row leaves out get their defaults. Returns where
 * the array ends. Raises ValueError naming the call on anything but an array of
 * rows of ROW_REQUIRED..ROW_MEMBERS integers that fit their columns, with the
 * span id a string of 16 hex digits. */
static PyObject *decode_calls(PyObject *self, PyObject *args) {
    Py_buffer data, cols[ROW_MEMBERS];
    Py_ssize_t start;
    PyObject *list;
    int got = 0;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*nO", &data, &start, &list)) return NULL;
    if (!PyList_Check(list) || PyList_GET_SIZE(list) != ROW_MEMBERS) {
        PyErr_SetString(PyExc_TypeError, "columns: a list of one buffer per row member");
        goto done;
    }
    for (; got < ROW_MEMBERS; got++)
        if (get_buffer(PyList_GET_ITEM(list, got), &cols[got], member_size[got], 1, "column") < 0)
            goto done;
    Py_ssize_t cap = cols[0].len / member_size[0];
    for (int c = 1; c < ROW_MEMBERS; c++)
        if (cols[c].len / member_size[c] < cap) cap = cols[c].len / member_size[c];
    if (start < 0 || start > data.len) {
        PyErr_SetString(PyExc_ValueError, "calls: bad range");
        goto done;
    }
    char *col[ROW_MEMBERS];
    for (int c = 0; c < ROW_MEMBERS; c++) col[c] = cols[c].buf;
    const char *s = data.buf;
    Py_ssize_t n = data.len, i = skip_ws(s, start, n), row = 0;
    if (i >= n || s[i] != '[') {
        PyErr_SetString(PyExc_ValueError, "calls must be a list");
        goto done;
    }
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == ']') {
        i++;
    } else {
        for (;;) {
            if (i >= n || s[i] != '[') {
                row_error(row, "must be a list (a row of the call's members)");
                goto done;
            }
            if (row >= cap) {
                result = Py_NewRef(Py_None);
                goto done;
            }
            int m = 0;
            i = skip_ws(s, i + 1, n);
            if (i < n && s[i] != ']') {
                for (;;) {
                    if (m >= ROW_MEMBERS) {
                        row_error(row, "too many members");
                        goto done;
                    }
                    if (m == R_SPAN) {
                        uint64_t v = 0;
                        if (i + 18 > n || s[i] != '"' || s[i + 17] != '"') {
                            row_error(row, "span_id must be a string of 16 hex digits");
                            goto done;
                        }
                        for (int k = 1; k <= 16; k++) {
                            int d = hex_digit(s[i + k]);
                            if (d < 0) {
                                row_error(row, "span_id must be a string of 16 hex digits");
                                goto done;
                            }
                            v = (v << 4) | (uint64_t)d;
                        }
                        ((uint64_t *)col[m])[row] = v;
                        i += 18;
                    } else {
                        int64_t v;
                        if (parse_int(s, &i, n, &v) < 0) {
                            row_error(row, "row members must be integers (int64)");
                            goto done;
                        }
                        if (store(col[m], member_size[m], row, v) < 0) {
                            row_error(row, "a row member is out of range");
                            goto done;
                        }
                    }
                    m++;
                    i = skip_ws(s, i, n);
                    if (i < n && s[i] == ',') {
                        i = skip_ws(s, i + 1, n);
                        continue;
                    }
                    break;
                }
            }
            if (i >= n || s[i] != ']') {
                row_error(row, "malformed row");
                goto done;
            }
            if (m < ROW_REQUIRED) {
                row_error(row, "too few members");
                goto done;
            }
            for (; m < ROW_MEMBERS; m++) store(col[m], member_size[m], row, row_default[m]);
            row++;
            i = skip_ws(s, i + 1, n);
            if (i < n && s[i] == ',') {
                i = skip_ws(s, i + 1, n);
                continue;
            }
            if (i < n && s[i] == ']') {
                i++;
                break;
            }
            PyErr_SetString(PyExc_ValueError, "calls: malformed list of rows");
            goto done;
        }
    }
    result = Py_BuildValue("nn", row, i);
done:
    for (int c = 0; c < got; c++) PyBuffer_Release(&cols[c]);
    PyBuffer_Release(&data);
    return result;
}

/* call_depths(parent, depth): the depth of each call (int32) from its 0-based
 * parent row (int64, -1 for a root), which must come before it. */
static PyObject *call_depths(PyObject *self, PyObject *args) {
    PyObject *objs[2];
    Py_buffer parent, depth;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OO", &objs[0], &objs[1])) return NULL;
    if (get_buffer(objs[0], &parent, 8, 0, "parent") < 0) return NULL;
    if (get_buffer(objs[1], &depth, 4, 1, "depth") < 0) {
        PyBuffer_Release(&parent);
        return NULL;
    }
    const int64_t *p = parent.buf;
    int32_t *d = depth.buf;
    Py_ssize_t n = parent.len / 8;
    if (depth.len / 4 != n) {
        PyErr_SetString(PyExc_ValueError, "columns differ in length");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < -1 || p[i] >= i) {
            PyErr_SetString(PyExc_ValueError, "a call's parent must come before it");
            goto done;
        }
        d[i] = p[i] < 0 ? 0 : d[p[i]] + 1;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&depth);
    PyBuffer_Release(&parent);
    return result;
}

static inline uint64_t mix64(uint64_t x, uint64_t seed) { /* splitmix64 finaliser */
    x += seed;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* subtree_hashes(parent, function, seeds, bases, size, last, first, second)
 * computes the structure columns of patterns/shapes.py in two passes over the
 * rows instead of numpy passes per depth level (same results). parent: int64 rows
 * (-1 for a root), each before its call; function: int32, >= 0. For seed/base k,
 * a call's hash mixes its function's hash, the polynomial hash (base k, 64-bit
 * wrapping) of its children's hashes in order and its number of children; the
 * hashes go to first and second (uint64). size and last (both int32 or both
 * int64) get the calls in each subtree and the last row inside it. */
static PyObject *subtree_hashes(PyObject *self, PyObject *args) {
    PyObject *objs[6];
    unsigned long long seed[2], base[2];
    Py_buffer view[6];
    static const char *names[6] = {"parent", "function", "size", "last", "first", "second"};
    Py_ssize_t itemsize[6] = {8, 4, 0, 0, 8, 8};
    int got = 0;
    PyObject *result = NULL;
    int64_t *count = NULL, *pos = NULL;
    uint64_t *seq = NULL, *powers = NULL;
    if (!PyArg_ParseTuple(args, "OO(KK)(KK)OOOO", &objs[0], &objs[1], &seed[0], &seed[1],
                          &base[0], &base[1], &objs[2], &objs[3], &objs[4], &objs[5]))
        return NULL;
    for (; got < 6; got++) {
        Py_ssize_t want = itemsize[got];
        if (want == 0) { /* size and last: int32 or int64 */
            if (PyObject_GetBuffer(objs[got], &view[got], PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
                goto done;
            if (view[got].itemsize != 4 && view[got].itemsize != 8) {
                PyErr_Format(PyExc_TypeError, "%s: expected items of 4 or 8 bytes", names[got]);
                got++;
                goto done;
            }
        } else if (get_buffer(objs[got], &view[got], want, got >= 2, names[got]) < 0) {
            goto done;
        }
    }
    Py_ssize_t n = view[0].len / 8;
    for (int k = 1; k < 6; k++) {
        if (view[k].len / view[k].itemsize != n) {
            PyErr_SetString(PyExc_ValueError, "columns differ in length");
            goto done;
        }
    }
    if (view[2].itemsize != view[3].itemsize) {
        PyErr_SetString(PyExc_TypeError, "size and last: the same item size");
        goto done;
    }
    const int64_t *parent = view[0].buf;
    const int32_t *function = view[1].buf;
    uint64_t *hash[2] = {view[4].buf, view[5].buf};
    int wide = view[2].itemsize == 8;
    count = PyMem_Calloc(n + 1, sizeof(int64_t));
    pos = PyMem_Malloc((n + 1) * sizeof(int64_t));
    seq = PyMem_Calloc(2 * (n + 1), sizeof(uint64_t));
    if (!count || !pos || !seq) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t widest = 1; /* positions among siblings: count[p + 1] is the next for parent p */
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t p = parent[i];
        if (p < -1 || p >= i || function[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "a call's parent must come before it (functions >= 0)");
            goto done;
        }
        pos[i] = count[p + 1]++;
        if (count[p + 1] > widest) widest = count[p + 1];
    }
    powers = PyMem_Malloc(2 * widest * sizeof(uint64_t));
    if (!powers) {
        PyErr_NoMemory();
        goto done;
    }
    for (int k = 0; k < 2; k++) {
        powers[k * widest] = 1;
        for (int64_t j = 1; j < widest; j++) powers[k * widest + j] = powers[k * widest + j - 1] * base[k];
    }
    int32_t *size32 = view[2].buf, *last32 = view[3].buf;
    int64_t *size64 = view[2].buf, *last64 = view[3].buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (wide) size64[i] = 1, last64[i] = i;
        else size32[i] = 1, last32[i] = (int32_t)i;
    }
    for (Py_ssize_t i = n - 1; i >= 0; i--) { /* children (later rows) before parents */
        int64_t p = parent[i];
        uint64_t children = (uint64_t)count[i + 1];
        for (int k = 0; k < 2; k++) {
            uint64_t h = mix64((uint64_t)function[i], seed[k]);
            h = mix64(h ^ mix64(seq[k * (n + 1) + i], seed[k]), seed[k] + 1);
            h ^= mix64(children, seed[k] + 2);
            hash[k][i] = h;
            if (p >= 0) seq[k * (n + 1) + p] += h * powers[k * widest + pos[i]];
        }
        if (p < 0) continue;
        if (wide) {
            size64[p] += size64[i];
            if (last64[i] > last64[p]) last64[p] = last64[i];
        } else {
            size32[p] += size32[i];
            if (last32[i] > last32[p]) last32[p] = last32[i];
        }
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(count);
    PyMem_Free(pos);
    PyMem_Free(seq);
    PyMem_Free(powers);
    for (int k = 0; k < got; k++) PyBuffer_Release(&view[k]);
    return result;
}

/* bucket_order(keys, offsets, order): a stable counting sort of keys (int32 or
 * int64, each in 0..len(offsets)-2). offsets (int64, buckets + 1) gets where each
 * key's rows start in order, and order (int64, as long as keys) the rows by key,
 * ascending within a key: np.argsort(keys, kind="stable") in one pass. */
static PyObject *bucket_order(PyObject *self, PyObject *args) {
    PyObject *objs[3];
    Py_buffer keys, offsets, order;
    PyObject *result = NULL;
    int got = 0;
    if (!PyArg_ParseTuple(args, "OOO", &objs[0], &objs[1], &objs[2])) return NULL;
    if (PyObject_GetBuffer(objs[0], &keys, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    got = 1;
    if (keys.itemsize != 4 && keys.itemsize != 8) {
        PyErr_SetString(PyExc_TypeError, "keys: expected items of 4 or 8 bytes");
        goto done;
    }
    if (get_buffer(objs[1], &offsets, 8, 1, "offsets") < 0) goto done;
    got = 2;
    if (get_buffer(objs[2], &order, 8, 1, "order") < 0) goto done;
    got = 3;
    Py_ssize_t n = keys.len / keys.itemsize, buckets = offsets.len / 8 - 1;
    if (order.len / 8 != n || buckets < 0) {
        PyErr_SetString(PyExc_ValueError, "columns differ in length");
        goto done;
    }
    int64_t *start = offsets.buf, *out = order.buf;
    const int32_t *k32 = keys.buf;
    const int64_t *k64 = keys.buf;
    int wide = keys.itemsize == 8;
    memset(start, 0, (buckets + 1) * sizeof(int64_t));
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t k = wide ? k64[i] : k32[i];
        if (k < 0 || k >= buckets) {
            PyErr_SetString(PyExc_ValueError, "a key is out of range");
            goto done;
        }
        start[k + 1]++;
    }
    for (Py_ssize_t b = 0; b < buckets; b++) start[b + 1] += start[b];
    for (Py_ssize_t i = 0; i < n; i++) out[start[wide ? k64[i] : k32[i]]++] = i;
    for (Py_ssize_t b = buckets; b > 0; b--) start[b] = start[b - 1]; /* back to the starts */
    start[0] = 0;
    result = Py_NewRef(Py_None);
done:
    if (got > 2) PyBuffer_Release(&order);
    if (got > 1) PyBuffer_Release(&offsets);
    PyBuffer_Release(&keys);
    return result;
}

/* ---- edit distances of pattern iterations (patterns/near.py) ---- */

/* The int64 values of a sequence of ints (malloc'ed; *n gets the length), or NULL
 * with an exception set. */
static long long *int_values(PyObject *seq, Py_ssize_t *n) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of integers");
    if (fast == NULL) return NULL;
    *n = PySequence_Fast_GET_SIZE(fast);
    long long *out = PyMem_Malloc(sizeof(long long) * (size_t)(*n + 1));
    if (out == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < *n; i++) {
        out[i] = PyLong_AsLongLong(items[i]);
        if (out[i] == -1 && PyErr_Occurred()) {
            PyMem_Free(out);
            Py_DECREF(fast);
            return NULL;
        }
    }
    Py_DECREF(fast);
    return out;
}

/* The int64 values of two sequences of ints (see int_values); 0, or -1 with an
 * exception set and nothing to free. */
static int two_int_values(PyObject *sa, PyObject *sb, long long **a, Py_ssize_t *na,
                          long long **b, Py_ssize_t *nb) {
    *a = int_values(sa, na);
    if (*a == NULL) return -1;
    *b = int_values(sb, nb);
    if (*b == NULL) {
        PyMem_Free(*a);
        return -1;
    }
    return 0;
}

static Py_ssize_t min3(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c) {
    Py_ssize_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* One row of the edit-distance table: row[j] = distance(a[:i], b[:j]) from the
 * previous row (prev) and x = a[i - 1]; the row's smallest value. */
static Py_ssize_t next_row(const Py_ssize_t *prev, Py_ssize_t *row, Py_ssize_t i, long long x,
                           const long long *b, Py_ssize_t nb) {
    row[0] = i;
    Py_ssize_t smallest = i;
    for (Py_ssize_t j = 1; j <= nb; j++) {
        row[j] = min3(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (b[j - 1] != x));
        if (row[j] < smallest) smallest = row[j];
    }
    return smallest;
}

/* edit_distance(a, b, limit): the edit distance (insertions, deletions,
 * substitutions) of two sequences of ints, or limit + 1 when it is larger. */
static PyObject *edit_distance(PyObject *self, PyObject *args) {
    PyObject *sa, *sb;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "OOn", &sa, &sb, &limit)) return NULL;
    Py_ssize_t na, nb;
    long long *a, *b;
    if (two_int_values(sa, sb, &a, &na, &b, &nb) < 0) return NULL;
    Py_ssize_t result = limit + 1;
    Py_ssize_t *rows = NULL;
    if ((na > nb ? na - nb : nb - na) > limit) goto done;
    if (na == nb && memcmp(a, b, sizeof(long long) * (size_t)na) == 0) {
        result = 0;
        goto done;
    }
    rows = PyMem_Malloc(sizeof(Py_ssize_t) * 2 * (size_t)(nb + 1));
    if (rows == NULL) {
        PyMem_Free(a);
        PyMem_Free(b);
        return PyErr_NoMemory();
    }
    Py_ssize_t *prev = rows, *row = rows + nb + 1;
    for (Py_ssize_t j = 0; j <= nb; j++) prev[j] = j;
    int over = 0;
    for (Py_ssize_t i = 1; i <= na; i++) {
        if (next_row(prev, row, i, a[i - 1], b, nb) > limit) {
            over = 1;
            break;
        }
        Py_ssize_t *swap = prev;
        prev = row;
        row = swap;
    }
    if (!over) result = prev[nb] < limit + 1 ? prev[nb] : limit + 1;
done:
    PyMem_Free(rows);
    PyMem_Free(a);
    PyMem_Free(b);
    return PyLong_FromSsize_t(result);
}

/* prefix_distances(template, piece): a list whose item j is the edit distance of
 * the template and piece[:j], for every j from 0 to len(piece). */
static PyObject *prefix_distances(PyObject *self, PyObject *args) {
    PyObject *st, *sp;
    if (!PyArg_ParseTuple(args, "OO", &st, &sp)) return NULL;
    Py_ssize_t nt, np_;
    long long *t, *p;
    if (two_int_values(st, sp, &t, &nt, &p, &np_) < 0) return NULL;
    Py_ssize_t *rows = PyMem_Malloc(sizeof(Py_ssize_t) * 2 * (size_t)(np_ + 1));
    PyObject *out = NULL;
    if (rows == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t *prev = rows, *row = rows + np_ + 1;
    for (Py_ssize_t j = 0; j <= np_; j++) prev[j] = j;
    for (Py_ssize_t i = 1; i <= nt; i++) {
        next_row(prev, row, i, t[i - 1], p, np_);
        Py_ssize_t *swap = prev;
        prev = row;
        row = swap;
    }
    out = PyList_New(np_ + 1);
    if (out == NULL) goto done;
    for (Py_ssize_t j = 0; j <= np_; j++) {
        PyObject *value = PyLong_FromSsize_t(prev[j]);
        if (value == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, j, value);
    }
done:
    PyMem_Free(rows);
    PyMem_Free(t);
    PyMem_Free(p);
    return out;
}

/* find_anchor(keys, anchor, lo, hi, step): the first position p in [lo, hi) (the
 * last one when step is -1; the default is 1) where the items of ``keys`` from p
 * on start with ``anchor``, or None. keys and anchor hold ints. */
static PyObject *find_anchor(PyObject *self, PyObject *args) {
    PyObject *keys, *anchor_seq;
    Py_ssize_t lo, hi, step = 1;
    if (!PyArg_ParseTuple(args, "OOnn|n", &keys, &anchor_seq, &lo, &hi, &step)) return NULL;
    Py_ssize_t size;
    long long *anchor = int_values(anchor_seq, &size);
    if (anchor == NULL) return NULL;
    if (size == 0) {
        PyMem_Free(anchor);
        PyErr_SetString(PyExc_IndexError, "an empty anchor");
        return NULL;
    }
    PyObject *fast = PySequence_Fast(keys, "expected a sequence of integers");
    if (fast == NULL) {
        PyMem_Free(anchor);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    PyObject *found = NULL;
    Py_ssize_t count = hi > lo ? hi - lo : 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t p = step > 0 ? lo + k : hi - 1 - k;
        if (p < 0 || p >= n) {
            PyErr_SetString(PyExc_IndexError, "list index out of range");
            goto done;
        }
        Py_ssize_t i = 0;
        for (; i < size && p + i < n; i++) {
            long long value = PyLong_AsLongLong(items[p + i]);
            if (value == -1 && PyErr_Occurred()) goto done;
            if (value != anchor[i]) break;
        }
        if (i == size) {
            found = PyLong_FromSsize_t(p);
            goto done;
        }
    }
    found = Py_NewRef(Py_None);
done:
    Py_DECREF(fast);
    PyMem_Free(anchor);
    return found;
}

/* ---- near-repeat growth of one seed (patterns/near.py's merge_near) ---- */

typedef struct {
    const long long *keys; /* the sequence */
    Py_ssize_t n;
    const long long *tmpl; /* the template: the seed's first iteration */
    Py_ssize_t nt;
    Py_ssize_t limit;      /* edits tolerated (near.budget) */
    Py_ssize_t anchor;     /* length of the template's anchor prefix */
    Py_ssize_t *rows;      /* two rows of an edit-distance table, 2 * (window + 1) */
    Py_ssize_t window;     /* longest piece compared: nt + limit */
} Grow;

/* Whether keys[lo:hi] is within `limit` edits of the template (near.similar). */
static int grow_similar(Grow *g, Py_ssize_t lo, Py_ssize_t hi) {
    const long long *a = g->keys + lo;
    Py_ssize_t na = hi - lo, nb = g->nt;
    if ((na > nb ? na - nb : nb - na) > g->limit) return 0;
    if (na == nb && memcmp(a, g->tmpl, sizeof(long long) * (size_t)na) == 0) return 1;
    Py_ssize_t *prev = g->rows, *row = g->rows + nb + 1;
    for (Py_ssize_t j = 0; j <= nb; j++) prev[j] = j;
    for (Py_ssize_t i = 1; i <= na; i++) {
        if (next_row(prev, row, i, a[i - 1], g->tmpl, nb) > g->limit) return 0;
        Py_ssize_t *swap = prev;
        prev = row;
        row = swap;
    }
    return prev[nb] <= g->limit;
}

/* The first position p in [lo, hi) (the last one when step < 0) where the
 * anchor starts, or -1 (near._find_anchor). */
static Py_ssize_t grow_anchor_at(Grow *g, Py_ssize_t lo, Py_ssize_t hi, int step) {
    for (Py_ssize_t k = 0; k < hi - lo; k++) {
        Py_ssize_t p = step > 0 ? lo + k : hi - 1 - k;
        if (p + g->anchor <= g->n &&
            memcmp(g->keys + p, g->tmpl, sizeof(long long) * (size_t)g->anchor) == 0)
            return p;
    }
    return -1;
}

/* The length of the prefix of keys[begin:begin + longest] closest to the template
 * (ties: the length nearest the template's, then the shorter), or 0 when none
 * is within the limit (near._best_prefix). */
static Py_ssize_t grow_best_prefix(Grow *g, Py_ssize_t begin, Py_ssize_t longest) {
    const long long *p = g->keys + begin;
    Py_ssize_t *prev = g->rows, *row = g->rows + longest + 1;
    for (Py_ssize_t j = 0; j <= longest; j++) prev[j] = j;
    for (Py_ssize_t i = 1; i <= g->nt; i++) {
        next_row(prev, row, i, g->tmpl[i - 1], p, longest);
        Py_ssize_t *swap = prev;
        prev = row;
        row = swap;
    }
    Py_ssize_t best = 1;
    for (Py_ssize_t size = 2; size <= longest; size++) {
        Py_ssize_t off = size > g->nt ? size - g->nt : g->nt - size;
        Py_ssize_t best_off = best > g->nt ? best - g->nt : g->nt - best;
        if (prev[size] < prev[best] || (prev[size] == prev[best] && off < best_off)) best = size;
    }
    return prev[best] <= g->limit ? best : 0;
}

/* Append v to the bounds being grown (PyMem array). */
static int bounds_push(int64_t **b, Py_ssize_t *nb, Py_ssize_t *cap, int64_t v) {
    if (*nb == *cap) {
        Py_ssize_t c = *cap * 2;
        int64_t *grown = PyMem_Realloc(*b, sizeof(int64_t) * (size_t)c);
        if (grown == NULL) return -1;
        *b = grown;
        *cap = c;
    }
    (*b)[(*nb)++] = v;
    return 0;
}

/* grow_seed(keys, seed): patterns/near.py's merge_near(keys, [seed])[0] for an
 * int64 buffer of keys and a seed (iteration bounds, a list of ints): the seed
 * grown over neighbouring iterations within budget(len(template)) edits. */
static PyObject *grow_seed(PyObject *self, PyObject *args) {
    PyObject *keys_obj, *seed_obj;
    if (!PyArg_ParseTuple(args, "OO", &keys_obj, &seed_obj)) return NULL;
    Py_buffer view;
    if (get_buffer(keys_obj, &view, 8, 0, "keys") < 0) return NULL;
    Py_ssize_t ns;
    long long *seed = int_values(seed_obj, &ns);
    PyObject *out = NULL;
    int64_t *left = NULL, *right = NULL;
    Py_ssize_t n_left = 0, n_right = 0, cap_left = 16, cap_right = 16;
    Grow g = {.keys = (const long long *)view.buf, .n = view.len / 8, .rows = NULL};
    if (seed == NULL) goto done;
    if (ns < 2 || seed[0] < 0 || seed[0] >= seed[1] || seed[ns - 1] > g.n) {
        PyErr_SetString(PyExc_ValueError, "seed: bounds of at least one iteration within keys");
        goto done;
    }
    for (Py_ssize_t i = 1; i < ns; i++) {
        if (seed[i] <= seed[i - 1]) {
            PyErr_SetString(PyExc_ValueError, "seed: increasing bounds");
            goto done;
        }
    }
    g.tmpl = g.keys + seed[0];
    g.nt = (Py_ssize_t)(seed[1] - seed[0]);
    g.limit = (g.nt + 1) / 3 > 1 ? (g.nt + 1) / 3 : 1; /* max(1, round(nt / 3)) */
    g.window = g.nt + g.limit;
    g.anchor = g.nt;
    for (Py_ssize_t size = 1; size <= g.nt; size++) { /* near._anchor */
        int recurs = 0;
        for (Py_ssize_t i = 1; i + size <= g.nt && !recurs; i++)
            recurs = memcmp(g.tmpl + i, g.tmpl, sizeof(long long) * (size_t)size) == 0;
        if (!recurs) {
            g.anchor = size;
            break;
        }
    }
    g.rows = PyMem_Malloc(sizeof(Py_ssize_t) * 2 * (size_t)(g.window + 1));
    left = PyMem_Malloc(sizeof(int64_t) * (size_t)cap_left);
    right = PyMem_Malloc(sizeof(int64_t) * (size_t)cap_right);
    if (g.rows == NULL || left == NULL || right == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* _extend_left, down to 0: starts found, nearest first */
    Py_ssize_t first = (Py_ssize_t)seed[0];
    for (;;) {
        Py_ssize_t lo = first - g.window > 0 ? first - g.window : 0;
        Py_ssize_t begin = grow_anchor_at(&g, lo, first, -1);
        if (begin < 0 || !grow_similar(&g, begin, first)) break;
        if (bounds_push(&left, &n_left, &cap_left, begin) < 0) goto nomem;
        first = begin;
    }
    /* the seed, then _extend_right up to the end of keys */
    for (Py_ssize_t i = 0; i < ns; i++)
        if (bounds_push(&right, &n_right, &cap_right, seed[i]) < 0) goto nomem;
    {
        Py_ssize_t ceiling = g.n, pos = (Py_ssize_t)right[n_right - 1];
        Py_ssize_t hi = pos + g.limit + 1 < ceiling ? pos + g.limit + 1 : ceiling;
        Py_ssize_t begin = grow_anchor_at(&g, pos, hi, 1), unconfirmed = -1;
        if (begin < 0) {
            if (ceiling - pos > g.limit) goto build;
            begin = ceiling;
        }
        if (begin > pos) {
            if (!grow_similar(&g, (Py_ssize_t)right[n_right - 2], begin)) goto build;
            right[n_right - 1] = begin;
            unconfirmed = pos;
        }
        while (begin < ceiling) {
            Py_ssize_t top = begin + g.window + 1 < ceiling ? begin + g.window + 1 : ceiling;
            Py_ssize_t end = grow_anchor_at(&g, begin + 1, top, 1);
            if (end >= 0 && grow_similar(&g, begin, end)) {
                if (bounds_push(&right, &n_right, &cap_right, end) < 0) goto nomem;
                begin = end;
                unconfirmed = -1;
                continue;
            }
            Py_ssize_t longest = ceiling - begin < g.window ? ceiling - begin : g.window;
            Py_ssize_t size = grow_best_prefix(&g, begin, longest);
            if (size) {
                if (bounds_push(&right, &n_right, &cap_right, begin + size) < 0) goto nomem;
            }
            else if (unconfirmed >= 0) {
                right[n_right - 1] = unconfirmed;
            }
            unconfirmed = -1;
            break;
        }
        if (unconfirmed >= 0) right[n_right - 1] = unconfirmed; /* merge_near's last step */
    }
build:
    out = PyList_New(n_left + n_right);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < n_left + n_right; i++) {
        int64_t v = i < n_left ? left[n_left - 1 - i] : right[i - n_left];
        PyObject *item = PyLong_FromLongLong(v);
        if (item == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, item);
    }
    goto done;
nomem:
    PyErr_NoMemory();
done:
    PyMem_Free(g.rows);
    PyMem_Free(left);
    PyMem_Free(right);
    PyMem_Free(seed);
    PyBuffer_Release(&view);
    return out;
}

/* join_slices(first, second, offsets, sizes): the slices [offsets[i], offsets[i] +
 * sizes[i]) of first + second, joined, without joining the two sources (int64
 * offsets and sizes; each slice lies in one of them). The Perfetto writer's
 * packets (exporters/perfetto_wire.py). */
static PyObject *join_slices(PyObject *self, PyObject *args) {
    PyObject *first_obj, *second_obj, *offsets_obj, *sizes_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &first_obj, &second_obj, &offsets_obj, &sizes_obj))
        return NULL;
    Py_buffer first, second, offsets, sizes;
    if (PyObject_GetBuffer(first_obj, &first, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(second_obj, &second, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&first);
        return NULL;
    }
    if (get_buffer(offsets_obj, &offsets, 8, 0, "offsets") < 0) {
        PyBuffer_Release(&first);
        PyBuffer_Release(&second);
        return NULL;
    }
    if (get_buffer(sizes_obj, &sizes, 8, 0, "sizes") < 0) {
        PyBuffer_Release(&first);
        PyBuffer_Release(&second);
        PyBuffer_Release(&offsets);
        return NULL;
    }
    PyObject *out = NULL;
    const int64_t *at = offsets.buf, *size = sizes.buf;
    Py_ssize_t n = offsets.len / 8, total = 0, split = first.len;
    if (sizes.len != offsets.len) {
        PyErr_SetString(PyExc_ValueError, "join_slices: as many sizes as offsets");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int in_first = at[i] < split;
        Py_ssize_t start = in_first ? 0 : split, end = in_first ? split : split + second.len;
        if (at[i] < start || size[i] < 0 || size[i] > end - at[i]) {
            PyErr_SetString(PyExc_ValueError, "join_slices: a slice outside its source");
            goto done;
        }
        total += (Py_ssize_t)size[i];
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) goto done;
    char *dst = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *src = at[i] < split ? (const char *)first.buf + at[i]
                                        : (const char *)second.buf + (at[i] - split);
        memcpy(dst, src, (size_t)size[i]);
        dst += size[i];
    }
done:
    PyBuffer_Release(&first);
    PyBuffer_Release(&second);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&sizes);
    return out;
}

/* find_runs_small(keys, max_period): tandem.find_runs for short sequences (its
 * _find_runs_small): every maximal run of keys[i] == keys[i + period] at least
 * `period` long, for each period up to min(max_period, n // 2), whose first block
 * is primitive, as (start, period, reps) tuples in order of period, then start. */
static int block_is_primitive(const long long *keys, Py_ssize_t start, Py_ssize_t period) {
    const long long *block = keys + start;
    for (Py_ssize_t d = 1; d <= period / 2; d++) {
        if (period % d == 0 && memcmp(block + d, block, sizeof(long long) * (size_t)(period - d)) == 0)
            return 0;
    }
    return 1;
}

static PyObject *find_runs_small(PyObject *self, PyObject *args) {
    PyObject *keys_obj;
    Py_ssize_t max_period;
    if (!PyArg_ParseTuple(args, "On", &keys_obj, &max_period)) return NULL;
    Py_buffer view;
    if (get_buffer(keys_obj, &view, 8, 0, "keys") < 0) return NULL;
    const long long *keys = (const long long *)view.buf;
    Py_ssize_t n = view.len / 8;
    PyObject *runs = PyList_New(0);
    Py_ssize_t top = n / 2 < max_period ? n / 2 : max_period;
    for (Py_ssize_t period = 1; runs != NULL && period <= top; period++) {
        Py_ssize_t i = 0;
        while (i + period < n) {
            if (keys[i] != keys[i + period]) {
                i++;
                continue;
            }
            Py_ssize_t j = i;
            while (j + period < n && keys[j] == keys[j + period]) j++;
            if (j - i >= period && block_is_primitive(keys, i, period)) {
                PyObject *run = Py_BuildValue("(nnn)", i, period, (j - i + period) / period);
                if (run == NULL || PyList_Append(runs, run) < 0) {
                    Py_XDECREF(run);
                    Py_CLEAR(runs);
                    break;
                }
                Py_DECREF(run);
            }
            i = j + 1;
        }
    }
    PyBuffer_Release(&view);
    return runs;
}

/* iteration_variants(data, row, bounds): fold._iteration_variants on the bytes
 * `data` of the units bounds[0]..bounds[-1] (`row` bytes per unit): the variant
 * of every iteration as int32 (0 = most iterations, ties: first seen) in a
 * bytearray, and the first iteration of each variant, in variant order. */
typedef struct {
    Py_ssize_t offset, size, first, count;
    uint64_t hash;
} VariantKey;

static uint64_t bytes_hash(const unsigned char *p, Py_ssize_t size) {
    uint64_t h = 0xCBF29CE484222325ULL ^ (uint64_t)size;
    for (Py_ssize_t i = 0; i < size; i++) h = (h ^ p[i]) * 0x100000001B3ULL;
    return h ^ (h >> 32);
}

static const VariantKey *ranked_variants;

static int variant_order(const void *a, const void *b) {
    const VariantKey *x = &ranked_variants[*(const Py_ssize_t *)a];
    const VariantKey *y = &ranked_variants[*(const Py_ssize_t *)b];
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

static PyObject *iteration_variants(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t row, nb;
    PyObject *bounds_obj, *out = NULL, *variants = NULL, *firsts = NULL;
    if (!PyArg_ParseTuple(args, "y*nO", &data, &row, &bounds_obj)) return NULL;
    long long *bounds = int_values(bounds_obj, &nb);
    Py_ssize_t reps = nb - 1, n_variants = 0;
    VariantKey *keys = NULL;
    Py_ssize_t *slots = NULL, *raw = NULL, *order = NULL, *rank = NULL;
    if (bounds == NULL) goto done;
    const unsigned char *base = (const unsigned char *)data.buf;
    if (reps < 1 || row < 1 || (bounds[nb - 1] - bounds[0]) * row != data.len) {
        PyErr_SetString(PyExc_ValueError, "iteration_variants: bounds do not match the data");
        goto done;
    }
    for (Py_ssize_t j = 0; j < reps; j++) {
        if (bounds[j + 1] < bounds[j]) {
            PyErr_SetString(PyExc_ValueError, "iteration_variants: decreasing bounds");
            goto done;
        }
    }
    size_t mask = 1;
    while (mask + 1 < (size_t)(2 * reps)) mask = 2 * mask + 1;
    keys = PyMem_Malloc(sizeof(VariantKey) * (size_t)reps);
    slots = PyMem_Malloc(sizeof(Py_ssize_t) * (mask + 1));
    raw = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)reps);
    if (keys == NULL || slots == NULL || raw == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i <= mask; i++) slots[i] = -1;
    for (Py_ssize_t j = 0; j < reps; j++) {
        Py_ssize_t offset = (Py_ssize_t)(bounds[j] - bounds[0]) * row;
        Py_ssize_t size = (Py_ssize_t)(bounds[j + 1] - bounds[j]) * row;
        uint64_t hash = bytes_hash(base + offset, size);
        size_t at = (size_t)hash & mask;
        for (;; at = (at + 1) & mask) {
            Py_ssize_t v = slots[at];
            if (v < 0) {
                keys[n_variants] = (VariantKey){offset, size, j, 0, hash};
                slots[at] = v = n_variants++;
            }
            else if (keys[v].hash != hash || keys[v].size != size ||
                     memcmp(base + keys[v].offset, base + offset, (size_t)size) != 0) {
                continue;
            }
            keys[v].count++;
            raw[j] = v;
            break;
        }
    }
    order = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)n_variants);
    rank = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)n_variants);
    if (order == NULL || rank == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t v = 0; v < n_variants; v++) order[v] = v;
    ranked_variants = keys; /* the GIL is held: no other caller meanwhile */
    qsort(order, (size_t)n_variants, sizeof(Py_ssize_t), variant_order);
    for (Py_ssize_t position = 0; position < n_variants; position++) rank[order[position]] = position;
    variants = PyByteArray_FromStringAndSize(NULL, reps * (Py_ssize_t)sizeof(int32_t));
    firsts = PyList_New(n_variants);
    if (variants == NULL || firsts == NULL) goto done;
    int32_t *of = (int32_t *)PyByteArray_AS_STRING(variants);
    for (Py_ssize_t j = 0; j < reps; j++) of[j] = (int32_t)rank[raw[j]];
    for (Py_ssize_t position = 0; position < n_variants; position++) {
        PyObject *first = PyLong_FromSsize_t(keys[order[position]].first);
        if (first == NULL) goto done;
        PyList_SET_ITEM(firsts, position, first);
    }
    out = PyTuple_Pack(2, variants, firsts);
done:
    Py_XDECREF(variants);
    Py_XDECREF(firsts);
    PyMem_Free(bounds);
    PyMem_Free(keys);
    PyMem_Free(slots);
    PyMem_Free(raw);
    PyMem_Free(order);
    PyMem_Free(rank);
    PyBuffer_Release(&data);
    return out;
}

static PyMethodDef methods[] = {
    {"pair_events", pair_events, METH_VARARGS, "Pair opening and closing events into calls."},
    {"count_calls", count_calls, METH_O, "The number of opening events."},
    {"build_calls", build_calls, METH_VARARGS, "Fill the call columns from the events."},
    {"encode_calls", encode_calls, METH_VARARGS, "Encode the calls array of the JSON trace."},
    {"find_member", find_member, METH_VARARGS, "Where a top-level member's value is in a JSON object."},
    {"decode_calls", decode_calls, METH_VARARGS, "Decode the calls array of the JSON trace."},
    {"call_depths", call_depths, METH_VARARGS, "Each call's depth from its parent."},
    {"bucket_order", bucket_order, METH_VARARGS, "A stable counting sort of small keys."},
    {"subtree_hashes", subtree_hashes, METH_VARARGS, "Subtree sizes, last rows and structural hashes."},
    {"edit_distance", edit_distance, METH_VARARGS, "Bounded edit distance of two int sequences."},
    {"prefix_distances", prefix_distances, METH_VARARGS, "Edit distances to every prefix."},
    {"find_anchor", find_anchor, METH_VARARGS, "Where a run of ints first (or last) starts."},
    {"grow_seed", grow_seed, METH_VARARGS, "A near-repeat seed grown over its neighbours."},
    {"join_slices", join_slices, METH_VARARGS, "Slices of two buffers, joined."},
    {"find_runs_small", find_runs_small, METH_VARARGS, "Tandem runs of a short key sequence."},
    {"iteration_variants", iteration_variants, METH_VARARGS, "Variants of a group's iterations."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "otel_tracer.trace._speedups",
                                    "Post-processing speedups (optional).", -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
