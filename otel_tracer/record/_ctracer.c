/* The C recording core: records exactly what otel_tracer/record/pycore.py records
 * (read that first: the decisions below mirror it one for one), on C-level
 * profile and trace functions instead of Python ones.
 *
 * CPython calls a C profile function (PyEval_SetProfile) for call, return,
 * c_call, c_return and c_exception events, and a C trace function
 * (PyEval_SetTrace) for call, line, exception and return events; for the same
 * call the trace function runs first. The profile function records calls; the
 * trace function only classifies code objects early and watches in-scope frames
 * for 'exception' events, the one place where Python < 3.12 shows the
 * exception that ends a call. Both get the same per-thread ThreadState as
 * their `obj` argument; threads started after start() install theirs from
 * their first event, through threading.setprofile(CCore._bootstrap).
 *
 * The GIL is held in every hook. Registry and summary calls run Python code,
 * which may let other threads run (and record) in between: no pointer into a
 * table is kept across them. When such a call fails with an Exception, the
 * hook records -1 (unknown) and the program never sees it; anything else
 * (KeyboardInterrupt or SystemExit from a signal handler that ran inside the
 * call) is the program's, raised from the hook once the event is recorded.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef _WIN32
#include <process.h>
#include <windows.h>
#define getpid _getpid
#else
#include <time.h>
#include <unistd.h>
#endif

/* How frames are read. Python 3.10 and 3.11 have no public API for reading one
 * local without building the whole f_locals dict, nor for f_trace_lines and
 * f_trace (3.11 hides PyFrameObject): there the frame layout is used directly,
 * from the public struct (3.10) or the internal header (3.11, exactly that
 * minor version). Later versions use the public API only (PyFrame_GetVar is
 * 3.12+). */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#include <internal/pycore_frame.h>
#define FRAME_LAYOUT 311
#define CO_FAST_CELL 0x40 /* internal/pycore_code.h: the local holds a cell */
#elif PY_VERSION_HEX < 0x030B0000
#define FRAME_LAYOUT 310
#else
#define FRAME_LAYOUT 0
#endif

/* Event encoding: see otel_tracer/trace/events.py. */
#define EV_CALL 1
#define EV_RESUME 2
#define EV_EXTERNAL 3
#define EV_RETURN 4
#define EV_YIELD 5
#define EV_RAISE 6
#define KIND_BITS 4
#define REF_SHIFT 24
#define EVENT_WORDS 3

/* Stack markers: see pycore.py. */
enum { IGNORED, IN_SCOPE, EXTERNAL_PY, EXTERNAL_C, TRIVIAL_C, SUPPRESSED, DROPPED };

/* A thread's hooks found replaced by the program (see otel_tracer/record/displaced.py). */
enum { PROFILE_REPLACED = 1, TRACE_REPLACED = 2 };

#define CO_RESUMABLE (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)
#define CO_ASYNC (CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR)
#define UNLIMITED ((int64_t)1 << 62)
/* summary.MAX_STR: longer str arguments are not cached (summary._MAX_REPR is
 * 2 * MAX_STR + 2) */
#define MAX_CACHED_STR 64
#define SMALL_INT_MIN (-128) /* ints in [SMALL_INT_MIN, SMALL_INT_MAX) have an array cache */
#define SMALL_INT_MAX 1024

/* Opcodes read from dis.opmap at import, as pycore.py does; -1 when absent. */
static int op_resume = -1, op_return_value = -1, op_return_const = -1, op_yield_value = -1,
           op_yield_from = -1;

/* Placed in f_trace of in-scope frames seen by the trace function: exception
 * events count only in those frames, as in pycore.py where only they get the
 * Python-level local trace function. Callable, in case a Python-level tracer
 * installed later calls it: it then does nothing. */
static PyObject *frame_mark;

static int64_t
monotonic_ns(void)
{
#ifdef _WIN32
    static LARGE_INTEGER frequency;
    LARGE_INTEGER counter;
    if (!frequency.QuadPart) {
        QueryPerformanceFrequency(&frequency);
    }
    QueryPerformanceCounter(&counter);
    int64_t seconds = counter.QuadPart / frequency.QuadPart;
    int64_t rest = counter.QuadPart % frequency.QuadPart;
    return seconds * 1000000000 + rest * 1000000000 / frequency.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#endif
}

#if defined(__x86_64__) && defined(__linux__)
#include <x86intrin.h>
#define TSC_CLOCK 1
#define TSC_CALIBRATE_EVERY 65536 /* clock reads between two calibrations */
#define TSC_FIRST_NS 10000000     /* the TSC is used once it is calibrated over 10 ms */

/* The same CLOCK_MONOTONIC time from the TSC, where the kernel's own clocksource
 * is the TSC (so it is invariant and synchronized across CPUs): rdtsc and a
 * multiply cost about half a vDSO clock_gettime call, and every call is timed
 * twice. Calibrated against CLOCK_MONOTONIC every TSC_CALIBRATE_EVERY reads,
 * over the whole run so far (so the rate only gets more precise); each
 * calibration restarts the conversion at CLOCK_MONOTONIC's time, or at the
 * converted time if that is later, so that no thread's clock goes back. Read
 * and calibrated with the GIL held. */
static struct {
    int usable;             /* the kernel's clocksource is "tsc" */
    int calibrated;         /* ns come from the TSC */
    int64_t countdown;      /* reads before the next calibration */
    uint64_t first_tsc;     /* the first calibration pair */
    int64_t first_ns;
    uint64_t base_tsc;      /* the conversion: base_ns + (tsc - base_tsc) * mult >> 32 */
    int64_t base_ns;
    uint64_t mult;          /* ns per tick << 32 */
} tsc;

static void
tsc_init(void)
{
    FILE *file = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    char name[32] = {0};
    if (file != NULL) {
        if (fgets(name, sizeof(name), file) == NULL) {
            name[0] = 0;
        }
        fclose(file);
    }
    tsc.usable = strcmp(name, "tsc\n") == 0;
}

static inline int64_t
tsc_convert(uint64_t ticks)
{
    int64_t elapsed = (int64_t)(ticks - tsc.base_tsc); /* < 0: another CPU, a few ticks */
    return tsc.base_ns + (int64_t)(((__int128)elapsed * (__int128)tsc.mult) >> 32);
}

static void
tsc_calibrate(void)
{
    uint64_t ticks = __rdtsc();
    int64_t ns = monotonic_ns();
    if (tsc.first_ns == 0) {
        tsc.first_tsc = ticks;
        tsc.first_ns = ns;
        return;
    }
    if (ns - tsc.first_ns < TSC_FIRST_NS || ticks <= tsc.first_tsc) {
        return;
    }
    int64_t converted = tsc.calibrated ? tsc_convert(ticks) : ns;
    tsc.mult = (uint64_t)(((unsigned __int128)(uint64_t)(ns - tsc.first_ns) << 32) /
                          (ticks - tsc.first_tsc));
    tsc.base_tsc = ticks;
    tsc.base_ns = converted > ns ? converted : ns;
    tsc.calibrated = 1;
}
#endif

/* CLOCK_MONOTONIC in ns: from the TSC where that is safe and calibrated. */
static inline int64_t
now_ns(void)
{
#ifdef TSC_CLOCK
    if (tsc.usable) {
        if (--tsc.countdown <= 0) {
            tsc.countdown = TSC_CALIBRATE_EVERY;
            tsc_calibrate();
        }
        if (tsc.calibrated) {
            return tsc_convert(__rdtsc());
        }
    }
#endif
    return monotonic_ns();
}

/* getattr with an interned name: unlike PyObject_GetAttrString, no new string
 * per call for CPython's attribute caches to keep. */
static PyObject *
get_attr(PyObject *obj, const char *name)
{
    PyObject *key = PyUnicode_InternFromString(name);
    PyObject *value = key ? PyObject_GetAttr(obj, key) : NULL;
    Py_XDECREF(key);
    return value;
}

/* Grow a PyMem array to hold at least `need` items; -1 when out of memory. */
static int
reserve(void **items, Py_ssize_t *capacity, Py_ssize_t need, size_t item_size)
{
    if (need <= *capacity) {
        return 0;
    }
    Py_ssize_t cap = *capacity ? *capacity * 2 : 64;
    while (cap < need) {
        cap *= 2;
    }
    void *grown = PyMem_Realloc(*items, (size_t)cap * item_size);
    if (grown == NULL) {
        return -1;
    }
    *items = grown;
    *capacity = cap;
    return 0;
}

/* ---- Address-keyed hash table (open addressing, never shrinks) ---------- */

typedef struct {
    const void *k1, *k2; /* k1 == NULL: empty */
    int64_t a, b;
    void *p;
} Entry;

typedef struct {
    Entry *entries;
    size_t mask, used;
} PtrTable;

static inline size_t
ptr_hash(const void *k1, const void *k2)
{
    uint64_t h = ((uint64_t)(uintptr_t)k1 >> 4) * 0x9E3779B97F4A7C15ULL;
    h ^= ((uint64_t)(uintptr_t)k2 >> 4) * 0xC2B2AE3D27D4EB4FULL;
    return (size_t)(h ^ (h >> 31));
}

static Entry *
table_find(PtrTable *t, const void *k1, const void *k2)
{
    if (t->entries == NULL) {
        return NULL;
    }
    for (size_t i = ptr_hash(k1, k2) & t->mask;; i = (i + 1) & t->mask) {
        Entry *e = &t->entries[i];
        if (e->k1 == k1 && e->k2 == k2) {
            return e;
        }
        if (e->k1 == NULL) {
            return NULL;
        }
    }
}

/* A new entry for a key not in the table (its values zeroed); NULL when out of memory. */
static Entry *
table_add(PtrTable *t, const void *k1, const void *k2)
{
    if (t->entries == NULL || 2 * (t->used + 1) > t->mask + 1) {
        size_t size = t->entries ? 2 * (t->mask + 1) : 256;
        Entry *entries = PyMem_Calloc(size, sizeof(Entry));
        if (entries == NULL) {
            return NULL;
        }
        for (size_t i = 0; t->entries && i <= t->mask; i++) {
            Entry *old = &t->entries[i];
            if (old->k1 != NULL) {
                size_t j = ptr_hash(old->k1, old->k2) & (size - 1);
                while (entries[j].k1 != NULL) {
                    j = (j + 1) & (size - 1);
                }
                entries[j] = *old;
            }
        }
        PyMem_Free(t->entries);
        t->entries = entries;
        t->mask = size - 1;
    }
    size_t i = ptr_hash(k1, k2) & t->mask;
    while (t->entries[i].k1 != NULL) {
        i = (i + 1) & t->mask;
    }
    Entry *e = &t->entries[i];
    e->k1 = k1;
    e->k2 = k2;
    t->used++;
    return e;
}

/* ---- Int-keyed hash table: exact ints' string indices ------------------- */

/* An exact int's value and its string index + 1 (0: empty). Keyed by the value,
 * not the object: the cache keeps no int alive and boxes no index. Filled to at
 * most 2/3, as the argument tuple table: a program whose values are always new
 * (a step counter) fills it with one entry per call. */
typedef struct {
    int64_t key;
    int64_t index;
} IntEntry;

typedef struct {
    IntEntry *entries;
    size_t mask, used;
} IntTable;

static inline size_t
int_hash(int64_t key)
{
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h ^ (h >> 29));
}

/* The string index cached for `key`, -1 when none. */
static int64_t
int_table_find(const IntTable *t, int64_t key)
{
    if (t->entries == NULL) {
        return -1;
    }
    for (size_t i = int_hash(key) & t->mask;; i = (i + 1) & t->mask) {
        const IntEntry *e = &t->entries[i];
        if (e->index == 0) {
            return -1;
        }
        if (e->key == key) {
            return e->index - 1;
        }
    }
}

/* Cache `index` for `key` (not in the table); nothing when out of memory. */
static void
int_table_add(IntTable *t, int64_t key, int64_t index)
{
    if (t->entries == NULL || 3 * (t->used + 1) > 2 * (t->mask + 1)) {
        size_t size = t->entries ? 2 * (t->mask + 1) : 1024;
        IntEntry *entries = PyMem_Calloc(size, sizeof(IntEntry));
        if (entries == NULL) {
            return;
        }
        for (size_t i = 0; t->entries && i <= t->mask; i++) {
            if (t->entries[i].index != 0) {
                size_t j = int_hash(t->entries[i].key) & (size - 1);
                while (entries[j].index != 0) {
                    j = (j + 1) & (size - 1);
                }
                entries[j] = t->entries[i];
            }
        }
        PyMem_Free(t->entries);
        t->entries = entries;
        t->mask = size - 1;
    }
    size_t i = int_hash(key) & t->mask;
    while (t->entries[i].index != 0) {
        i = (i + 1) & t->mask;
    }
    t->entries[i].key = key;
    t->entries[i].index = index + 1;
    t->used++;
}

static void
int_table_clear(IntTable *t)
{
    PyMem_Free(t->entries);
    t->entries = NULL;
    t->mask = t->used = 0;
}

/* ---- Argument tuple interning (keys: sequences of string indices) ------- */

#define INLINE_IDS 4 /* argument tuples this short live in their entry */

typedef struct {
    uint64_t hash;
    Py_ssize_t size; /* 0: empty */
    int64_t index;
    union {
        int64_t *heap; /* size > INLINE_IDS */
        int64_t inline_ids[INLINE_IDS];
    } ids;
} TupleEntry;

typedef struct {
    TupleEntry *entries;
    size_t mask, used;
} TupleTable;

static inline const int64_t *
entry_ids(const TupleEntry *e)
{
    return e->size <= INLINE_IDS ? e->ids.inline_ids : e->ids.heap;
}

static uint64_t
ids_hash(const int64_t *ids, Py_ssize_t size)
{
    uint64_t h = 0xCBF29CE484222325ULL ^ (uint64_t)size;
    for (Py_ssize_t i = 0; i < size; i++) {
        h = (h ^ (uint64_t)ids[i]) * 0x100000001B3ULL;
        h ^= h >> 29;
    }
    return h;
}

/* The entry of `ids` (size >= 1), or the empty one where it would go. */
static TupleEntry *
tuple_slot(TupleTable *t, uint64_t hash, const int64_t *ids, Py_ssize_t size)
{
    for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        TupleEntry *e = &t->entries[i];
        if (e->size == 0 || (e->hash == hash && e->size == size &&
                             memcmp(entry_ids(e), ids, (size_t)size * sizeof(int64_t)) == 0)) {
            return e;
        }
    }
}

/* Fill the empty entry `e` with a copy of `ids`; 0 when out of memory. */
static int
tuple_fill(TupleEntry *e, uint64_t hash, const int64_t *ids, Py_ssize_t size, int64_t index)
{
    int64_t *copy = e->ids.inline_ids;
    if (size > INLINE_IDS && (copy = PyMem_Malloc((size_t)size * sizeof(int64_t))) == NULL) {
        return 0;
    }
    memcpy(copy, ids, (size_t)size * sizeof(int64_t));
    if (size > INLINE_IDS) {
        e->ids.heap = copy;
    }
    e->hash = hash;
    e->size = size;
    e->index = index;
    return 1;
}

static void
tuple_table_clear(TupleTable *t)
{
    for (size_t i = 0; t->entries && i <= t->mask; i++) {
        if (t->entries[i].size > INLINE_IDS) {
            PyMem_Free(t->entries[i].ids.heap);
        }
    }
    PyMem_Free(t->entries);
    t->entries = NULL;
    t->mask = t->used = 0;
}

static int
tuple_table_grow(TupleTable *t)
{
    size_t size = t->entries ? 2 * (t->mask + 1) : 256;
    TupleEntry *entries = PyMem_Calloc(size, sizeof(TupleEntry));
    if (entries == NULL) {
        return -1;
    }
    for (size_t i = 0; t->entries && i <= t->mask; i++) {
        if (t->entries[i].size != 0) {
            size_t j = t->entries[i].hash & (size - 1);
            while (entries[j].size != 0) {
                j = (j + 1) & (size - 1);
            }
            entries[j] = t->entries[i];
        }
    }
    PyMem_Free(t->entries);
    t->entries = entries;
    t->mask = size - 1;
    return 0;
}

/* ---- Events: the recording buffer, exported through the buffer protocol -- */

typedef struct {
    PyObject_HEAD
    int64_t *data;
    Py_ssize_t size, capacity; /* in int64 words */
    Py_ssize_t exports;        /* buffer views alive */
    void **retired;            /* blocks replaced while views pointed into them */
    Py_ssize_t n_retired, retired_capacity;
} Events;

static PyTypeObject EventsType;

/* Room for `words` more words. A block with live views is never moved: a copy
 * replaces it and the old block is freed once the last view is released. */
static int
events_reserve(Events *ev, Py_ssize_t words)
{
    if (ev->size + words <= ev->capacity) {
        return 0;
    }
    Py_ssize_t cap = ev->capacity * 2;
    while (cap < ev->size + words) {
        cap *= 2;
    }
    int64_t *data;
    if (ev->exports == 0) {
        data = PyMem_Realloc(ev->data, (size_t)cap * sizeof(int64_t));
        if (data == NULL) {
            return -1;
        }
    }
    else {
        if (reserve((void **)&ev->retired, &ev->retired_capacity, ev->n_retired + 1,
                    sizeof(void *)) < 0) {
            return -1;
        }
        data = PyMem_Malloc((size_t)cap * sizeof(int64_t));
        if (data == NULL) {
            return -1;
        }
        memcpy(data, ev->data, (size_t)ev->size * sizeof(int64_t));
        ev->retired[ev->n_retired++] = ev->data;
    }
    ev->data = data;
    ev->capacity = cap;
    return 0;
}

static Events *
events_new(void)
{
    Events *ev = PyObject_New(Events, &EventsType);
    if (ev == NULL) {
        return NULL;
    }
    ev->size = ev->exports = ev->n_retired = ev->retired_capacity = 0;
    ev->retired = NULL;
    ev->capacity = EVENT_WORDS * 4096;
    ev->data = PyMem_Malloc((size_t)ev->capacity * sizeof(int64_t));
    if (ev->data == NULL) {
        Py_DECREF(ev);
        PyErr_NoMemory();
        return NULL;
    }
    return ev;
}

static void
events_free_retired(Events *ev)
{
    for (Py_ssize_t i = 0; i < ev->n_retired; i++) {
        PyMem_Free(ev->retired[i]);
    }
    ev->n_retired = 0;
}

static void
events_dealloc(Events *ev)
{
    events_free_retired(ev);
    PyMem_Free(ev->retired);
    PyMem_Free(ev->data);
    PyObject_Free(ev);
}

static int
events_getbuffer(Events *ev, Py_buffer *view, int flags)
{
    /* The shape is fixed for the view's lifetime while recording may go on. */
    Py_ssize_t *shape = PyMem_Malloc(sizeof(Py_ssize_t));
    if (shape == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *shape = ev->size;
    view->obj = Py_NewRef(ev);
    view->buf = ev->data;
    view->len = ev->size * (Py_ssize_t)sizeof(int64_t);
    view->readonly = 0;
    view->itemsize = sizeof(int64_t);
    view->format = (flags & PyBUF_FORMAT) ? (char *)"q" : NULL;
    view->ndim = 1;
    view->shape = (flags & PyBUF_ND) == PyBUF_ND ? shape : NULL;
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? &view->itemsize : NULL;
    view->suboffsets = NULL;
    view->internal = shape;
    ev->exports++;
    return 0;
}

static void
events_releasebuffer(Events *ev, Py_buffer *view)
{
    PyMem_Free(view->internal);
    if (--ev->exports == 0) {
        events_free_retired(ev);
    }
}

static Py_ssize_t
events_length(Events *ev)
{
    return ev->size;
}

static PyBufferProcs events_as_buffer = {
    .bf_getbuffer = (getbufferproc)events_getbuffer,
    .bf_releasebuffer = (releasebufferproc)events_releasebuffer,
};

static PySequenceMethods events_as_sequence = {
    .sq_length = (lenfunc)events_length,
};

/* take(): the words recorded so far as bytes, removed from the buffer (the
 * recorder streams them to disk; with the GIL held no hook appends meanwhile). */
static PyObject *
events_take(Events *ev, PyObject *unused)
{
    PyObject *taken =
        PyBytes_FromStringAndSize((const char *)ev->data, ev->size * (Py_ssize_t)sizeof(int64_t));
    if (taken != NULL) {
        ev->size = 0;
    }
    return taken;
}

static PyMethodDef events_methods[] = {
    {"take", (PyCFunction)events_take, METH_NOARGS,
     "The words recorded so far as bytes, removed from the buffer."},
    {NULL},
};

static PyTypeObject EventsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "otel_tracer.record._ctracer.Events",
    .tp_methods = events_methods,
    .tp_doc = "Recorded events: int64 words (head, time_ns, aux) per event, "
              "read through the buffer protocol (format 'q').",
    .tp_basicsize = sizeof(Events),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)events_dealloc,
    .tp_as_buffer = &events_as_buffer,
    .tp_as_sequence = &events_as_sequence,
};

/* ---- The core ------------------------------------------------------------ */

typedef struct {
#if FRAME_LAYOUT
    Py_ssize_t slot; /* index in the frame's fast locals, -1 when not one */
    int cell;        /* that local is a cell (the argument is captured by a closure) */
#else
    PyObject *name;
#endif
    int self;   /* named self/cls: summarized with summarize_self */
    int secret; /* registry.is_secret(name): recorded as [redacted], never read */
} ArgSlot;

typedef struct {
    PyObject *code; /* strong: keeps its address unique while cached */
    Py_ssize_t fid; /* registry function index, -1 for hidden import machinery */
    int in_scope;
    Py_ssize_t n_args; /* -1 until the argument layout is loaded */
    ArgSlot *args;
    int local_events;      /* monitoring core: given its local events */
    Py_ssize_t first_resume; /* monitoring core: offset of its first RESUME, -1 until known */
} CodeInfo;

/* What a code object counts as when the registry could not classify it. */
static CodeInfo unclassified = {NULL, -1, 0, 0, NULL};

typedef struct {
    PyObject_HEAD
    PyObject *registry, *options;
    Events *events;
    /* registry methods and summary functions, looked up once */
    PyObject *reg_code, *reg_cfunction, *reg_string, *reg_args, *reg_thread;
    PyObject *reg_new_slot, *reg_fill_slots, *reg_task;
    PyObject *summarize, *summarize_self;
    PyObject *program_error; /* program_errors.program_exception */
    PyObject *type_summary; /* summary.type_summary */
    /* displaced.warn, looked up once: stop() also runs in forked children, while
     * the program runs without this tool's modules in sys.modules */
    PyObject *warn_displaced;
    PyObject *value_cache;  /* exact short str argument value -> string index */
    IntTable int_cache;     /* exact int that fits in 64 bits -> string index */
    PyObject *text_cache;   /* summary text -> string index (registry.string's answers) */
    /* The registry's own string table (its _string_ids dict, strings list and
     * _lock.locked), when registry.string is Registry.string itself: new texts
     * are then interned here, without a Python call. NULL otherwise. */
    PyObject *string_ids, *strings, *lock_locked;
    int64_t strings_base; /* index of strings[0]: the entries below were streamed */
    /* The same for argument tuples (_arg_ids, arg_tuples), when registry.args is
     * Registry.args itself. */
    PyObject *arg_ids, *arg_list;
    int64_t args_base; /* index of arg_tuples[0] */
    PtrTable types; /* type (strong) -> string index of type_summary, or NOT_BY_TYPE */
    PtrTable metas; /* dtype -> its text (both held by keep), see dtype_summary */
    PyObject *keep;        /* owners of cached C functions: their addresses stay unique */
    PtrTable codes;        /* code object -> CodeInfo */
    PtrTable cfunctions;   /* (PyMethodDef, module, class or owner type) -> (fid, trivial) */
    PtrTable self_types;   /* static type -> string index of its qualname */
    PtrTable self_names;   /* heap type's qualname (an exact str, held by keep) -> its index */
    TupleTable arg_tuples; /* string indices -> registry.args index */
    int64_t constants[3];  /* string indices of None, False, True; -1 until known */
    int64_t small_ints[SMALL_INT_MAX - SMALL_INT_MIN]; /* same for small ints */
    int record_externals, capture;
    int64_t max_depth, max_calls, recorded, dropped;
    int active;
    int64_t displaced[2]; /* threads whose profile / trace hook the program replaced */
    struct ThreadState *start_ts; /* the starting thread's, checked by stop() (strong) */
    unsigned long start_thread;   /* its thread ident */
    long start_pid;               /* the process that started recording */
    PyObject *weakrefs;
} CCore;

typedef struct {
    int64_t fid, time;
} Deferred;

/* One thread's recording state (pycore.py's hook closure). */
typedef struct ThreadState {
    PyObject_HEAD
    CCore *core;
    int64_t call_head, resume_head, external_head, return_head, yield_head, raise_head;
    unsigned char *markers; /* one per open frame and recorded C call... */
    PyObject **frames;      /* ...with the frame it belongs to (strong) */
    int *seen_lines;        /* ...and the frame's line at its last exception event, 0:
                               none (pycore's raise_seen) */
    Py_ssize_t n_stack, stack_capacity;
    Deferred *deferred; /* open trivial C calls */
    Py_ssize_t n_deferred, deferred_capacity;
    int64_t *pending; /* slots of calls that raised, awaiting the exception */
    Py_ssize_t n_pending, pending_capacity;
    Py_ssize_t pending_level; /* pycore's pending_level: entries below the last of them */
    int64_t depth;       /* open recorded calls */
    int64_t suppressed;  /* open SUPPRESSED frames */
    PyObject *current;   /* exception now unwinding, if any (strong) */
    int thrown;          /* pycore's thrown: the last exception event was in a generator
                            frame at its suspension point, not caught since */
    PyObject *last_code; /* one-entry classification cache (the trace function */
    CodeInfo *last_info; /* classifies a call just before the profile function) */
    PyObject *interrupt; /* the program's exception, raised at the end of the event */
    int broken;          /* out of memory: the hooks remove themselves */
    int idle;            /* monitoring core: a thread that is not recorded */
    int replaced;        /* PROFILE_REPLACED | TRACE_REPLACED: noted for this thread */
} ThreadState;

static PyTypeObject CCoreType, ThreadStateType;

static void
uninstall_hooks(void)
{
    PyEval_SetProfile(NULL, NULL);
    PyEval_SetTrace(NULL, NULL);
}

/* pycore's note and check: which of this thread's hooks the program replaced
 * (a hook called back through the saved object, see thread_state_call, is
 * still ours), each counted once per thread. */
static void
note_replaced(ThreadState *ts, int hook)
{
    if (!(ts->replaced & hook)) {
        ts->replaced |= hook;
        ts->core->displaced[hook == PROFILE_REPLACED ? 0 : 1]++;
    }
}

/* {"sys.setprofile": threads, "sys.settrace": threads} (CCore.displaced) */
static PyObject *
displaced_counts(CCore *core)
{
    return Py_BuildValue("{sLsL}", "sys.setprofile", (long long)core->displaced[0],
                         "sys.settrace", (long long)core->displaced[1]);
}

static void
check_hooks(ThreadState *ts)
{
    PyThreadState *tstate = PyThreadState_Get();
    if (tstate->c_profileobj != (PyObject *)ts) {
        note_replaced(ts, PROFILE_REPLACED);
    }
    if (tstate->c_traceobj != (PyObject *)ts) {
        note_replaced(ts, TRACE_REPLACED);
    }
}

static void
emit(CCore *core, int64_t head, int64_t time, int64_t aux)
{
    Events *ev = core->events;
    if (!core->active) {
        return; /* stop() ran while this hook was in a Python call */
    }
    if (events_reserve(ev, EVENT_WORDS) < 0) {
        core->active = 0; /* out of memory: recording ends here */
        return;
    }
    int64_t *word = ev->data + ev->size;
    word[0] = head;
    word[1] = time;
    word[2] = aux;
    ev->size += EVENT_WORDS;
}

/* A Python-level call made by a hook failed. An Exception means a failing
 * registry or summary: forgotten (the caller records -1), unless a signal
 * handler of the program raised it while the call ran (program_errors.py).
 * Anything else is kept for the program; until it is raised, the hook makes
 * no more summary or exception-table calls (their results become -1), so that
 * no other signal handler runs, and raises, where its exception would be
 * lost. A kept exception's traceback loses the tool's frames: the program's
 * starts at its own frame, as untraced. */
static void
failed(ThreadState *ts)
{
    if (ts->interrupt != NULL) {
        PyErr_Clear();
        return;
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *traceback;
    PyErr_Fetch(&type, &exc, &traceback);
    PyErr_NormalizeException(&type, &exc, &traceback);
    if (exc != NULL && traceback != NULL) {
        PyException_SetTraceback(exc, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
#endif
    PyObject *program_error = ts->core->program_error;
    PyObject *kept = NULL;
    if (exc != NULL && program_error != NULL) {
        kept = PyObject_CallOneArg(program_error, exc);
        if (kept == NULL) { /* it was interrupted too: the first exception stays */
            PyErr_Clear();
            kept = PyObject_IsInstance(exc, PyExc_Exception) ? NULL : Py_NewRef(exc);
            PyErr_Clear();
        }
    }
    Py_XDECREF(exc);
    if (kept == Py_None) {
        Py_CLEAR(kept);
    }
    ts->interrupt = kept;
}

/* Hand a kept exception to the program: the hook then returns -1. */
static int
raise_interrupt(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
    return -1;
}

static int64_t
as_index(ThreadState *ts, PyObject *result)
{
    if (result == NULL) {
        failed(ts);
        return -1;
    }
    int64_t index = PyLong_AsLongLong(result);
    Py_DECREF(result);
    if (index == -1 && PyErr_Occurred()) {
        failed(ts);
    }
    return index;
}

/* ---- Frames ----------------------------------------------------------- */

static inline PyCodeObject *
frame_code(PyFrameObject *frame) /* borrowed */
{
#if FRAME_LAYOUT == 311
    return frame->f_frame->f_code;
#elif FRAME_LAYOUT == 310
    return frame->f_code;
#else
    PyCodeObject *code = PyFrame_GetCode(frame);
    Py_DECREF(code); /* the frame keeps it alive */
    return code;
#endif
}

/* Byte offset of the frame's last instruction, as frame.f_lasti. */
static inline int
frame_lasti(PyFrameObject *frame)
{
#if FRAME_LAYOUT == 310
    return frame->f_lasti < 0 ? -1 : frame->f_lasti * (int)sizeof(_Py_CODEUNIT);
#else
    return PyFrame_GetLasti(frame);
#endif
}

/* code.co_code (new reference; it has the base, unspecialized opcodes), NULL
 * when it cannot be had. */
static PyObject *
code_bytes(PyCodeObject *code)
{
#if FRAME_LAYOUT == 310
    return Py_NewRef(code->co_code);
#else
    PyObject *bytes = PyCode_GetCode(code); /* cached by CPython after the first call */
    if (bytes == NULL) {
        PyErr_Clear();
    }
    return bytes;
#endif
}

/* The opcode at byte offset `at` of `bytes` (a code's co_code), -1 when out of range. */
static inline int
opcode_at(PyObject *bytes, int at)
{
    return at >= 0 && at < PyBytes_GET_SIZE(bytes) ? (unsigned char)PyBytes_AS_STRING(bytes)[at]
                                                   : -1;
}

/* pycore.is_resumption: a 'call' event for a generator or coroutine that has
 * already started, resumed by next()/send() or by throw()/close(). 3.10: the
 * frame has run before. 3.11+: the code opens with a prologue ending in RESUME 0
 * and every other RESUME follows a yield or an await (oparg > 0); next() and
 * send() resume at one of those, throw() and close() leave the last instruction
 * where the frame was suspended, or in the prologue if it has not started. */
static int
is_resumption(PyFrameObject *frame, PyCodeObject *code)
{
    if (!(code->co_flags & CO_RESUMABLE)) {
        return 0;
    }
    int lasti = frame_lasti(frame);
    if (op_resume < 0 || lasti < 0) {
        return lasti >= 0;
    }
    PyObject *bytes = code_bytes(code);
    if (bytes == NULL) {
        return 0;
    }
    int resumed = 0;
    if (opcode_at(bytes, lasti) == op_resume) {
        resumed = opcode_at(bytes, lasti + 1) != 0;
    }
    else {
        for (int at = 0; at < lasti && !resumed; at += 2) { /* opcodes are at even offsets */
            resumed = opcode_at(bytes, at) == op_resume;
        }
    }
    Py_DECREF(bytes);
    return resumed;
}

/* pycore.exit_kind: how a frame is leaving, from its last instruction (up to
 * 3.12 a suspended frame's is YIELD_VALUE; from 3.13 the RESUME after it; on
 * 3.10 one in `yield from` or `await` is one instruction before its YIELD_FROM,
 * which it runs again when resumed). */
static int
exit_kind(PyFrameObject *frame, PyCodeObject *code)
{
    int lasti = frame_lasti(frame);
    PyObject *bytes = code_bytes(code);
    if (bytes == NULL) {
        return EV_RAISE;
    }
    int op = opcode_at(bytes, lasti), oparg = opcode_at(bytes, lasti + 1);
    int next = opcode_at(bytes, lasti + 2);
    Py_DECREF(bytes);
    if (op < 0) {
        return EV_RAISE;
    }
    if (op == op_return_value || op == op_return_const) {
        return EV_RETURN;
    }
    if (op == op_yield_value || (op == op_resume && oparg != 0) ||
        (op_yield_from >= 0 && next == op_yield_from)) {
        return EV_YIELD;
    }
    return EV_RAISE;
}

/* Whether the trace function marked this frame as in scope. */
static int
frame_is_marked(PyFrameObject *frame)
{
#if FRAME_LAYOUT
    return frame->f_trace == frame_mark;
#else
    PyObject *trace = get_attr((PyObject *)frame, "f_trace");
    if (trace == NULL) {
        PyErr_Clear();
        return 0;
    }
    Py_DECREF(trace);
    return trace == frame_mark;
#endif
}

/* On the trace function's call event: no line events for this frame (a C
 * trace function gets them for every frame whose f_trace_lines is set, the
 * default); in-scope frames get the mark. 3.12+ filters line events by
 * f_trace_lines too, but there setting it costs an attribute call per frame,
 * more than the line events it saves reaching the trace function. */
static void
prepare_frame(PyFrameObject *frame, int in_scope)
{
#if FRAME_LAYOUT
    frame->f_trace_lines = 0;
    frame->f_trace_opcodes = 0;
    if (in_scope && frame->f_trace != frame_mark) {
        Py_XSETREF(frame->f_trace, Py_NewRef(frame_mark));
    }
#else
    if (in_scope && PyObject_SetAttrString((PyObject *)frame, "f_trace", frame_mark) < 0) {
        PyErr_Clear();
    }
#endif
}

/* The current value of an argument (new reference), NULL when unbound. */
static PyObject *
frame_argument(PyFrameObject *frame, ArgSlot *arg)
{
#if FRAME_LAYOUT
    if (arg->slot < 0) {
        return NULL;
    }
#if FRAME_LAYOUT == 311
    PyObject *value = frame->f_frame->localsplus[arg->slot];
#else
    PyObject *value = frame->f_localsplus[arg->slot];
#endif
    if (value != NULL && arg->cell && PyCell_Check(value)) {
        value = PyCell_GET(value);
    }
    return Py_XNewRef(value);
#else
    PyObject *value = PyFrame_GetVar(frame, arg->name);
    if (value == NULL) {
        PyErr_Clear(); /* NameError: unbound */
    }
    return value;
#endif
}

/* ---- Classification --------------------------------------------------- */

static void
free_code_info(CodeInfo *info)
{
#if !FRAME_LAYOUT
    for (Py_ssize_t i = 0; i < info->n_args; i++) {
        Py_XDECREF(info->args[i].name);
    }
#endif
    PyMem_Free(info->args);
    Py_DECREF(info->code);
    PyMem_Free(info);
}

/* registry.code(code, frame), cached per code object. */
static CodeInfo *
classify(ThreadState *ts, PyCodeObject *code, PyFrameObject *frame)
{
    if ((PyObject *)code == ts->last_code) {
        return ts->last_info;
    }
    CCore *core = ts->core;
    Entry *entry = table_find(&core->codes, code, NULL);
    CodeInfo *info;
    if (entry != NULL) {
        info = entry->p;
    }
    else {
        PyObject *result = PyObject_CallFunctionObjArgs(core->reg_code, code, frame, NULL);
        Py_ssize_t fid = -1;
        int in_scope = -1;
        if (result != NULL && PyTuple_Check(result) && PyTuple_GET_SIZE(result) == 2) {
            fid = PyLong_AsSsize_t(PyTuple_GET_ITEM(result, 0));
            in_scope = fid == -1 && PyErr_Occurred() ? -1
                                                     : PyObject_IsTrue(PyTuple_GET_ITEM(result, 1));
        }
        Py_XDECREF(result);
        if (in_scope < 0) {
            failed(ts);
            return &unclassified;
        }
        entry = table_find(&core->codes, code, NULL); /* another thread may have been quicker */
        if (entry != NULL) {
            info = entry->p;
        }
        else {
            info = PyMem_Calloc(1, sizeof(CodeInfo));
            if (info == NULL || (entry = table_add(&core->codes, code, NULL)) == NULL) {
                PyMem_Free(info);
                return &unclassified;
            }
            info->code = Py_NewRef(code);
            info->fid = fid;
            info->in_scope = in_scope;
            info->n_args = -1;
            info->first_resume = -1;
            entry->p = info;
        }
    }
    ts->last_code = (PyObject *)code;
    ts->last_info = info;
    return info;
}

/* registry.cfunction(func) -> (fid, trivial), cached. A builtin bound to a
 * module (or to nothing) is keyed by its method definition and module; one
 * bound to a class by its definition and that class (the definition may be
 * shared: every type's __new__ has the same one); a method bound to another
 * object by its definition and the object's type, since bound methods like
 * `items.append` are new objects at each access. -1 when the registry failed. */
static inline PyObject *
cfunction_owner(PyObject *self)
{
    return self == NULL || PyModule_Check(self) || PyType_Check(self) ? self
                                                                       : (PyObject *)Py_TYPE(self);
}

/* classify_cfunction's cached answer for a builtin (its method definition and
 * owner); 0 when not cached. */
static inline int
cached_cfunction(CCore *core, const PyMethodDef *def, PyObject *owner, int64_t *fid, int *trivial)
{
    Entry *entry = table_find(&core->cfunctions, def, owner);
    if (entry == NULL) {
        return 0;
    }
    *fid = entry->a;
    *trivial = (int)entry->b;
    return 1;
}

static int
classify_cfunction(ThreadState *ts, PyObject *func, int64_t *fid, int *trivial)
{
    CCore *core = ts->core;
    const void *k1 = NULL;
    PyObject *owner = NULL;
    if (PyCFunction_Check(func)) {
        owner = cfunction_owner(PyCFunction_GET_SELF(func));
        k1 = ((PyCFunctionObject *)func)->m_ml;
        if (cached_cfunction(core, k1, owner, fid, trivial)) {
            return 0;
        }
    }
    PyObject *result = PyObject_CallOneArg(core->reg_cfunction, func);
    int ok = result != NULL && PyTuple_Check(result) && PyTuple_GET_SIZE(result) == 2;
    if (ok) {
        *fid = PyLong_AsLongLong(PyTuple_GET_ITEM(result, 0));
        *trivial = *fid == -1 && PyErr_Occurred() ? -1 : PyObject_IsTrue(PyTuple_GET_ITEM(result, 1));
        ok = *trivial >= 0;
    }
    Py_XDECREF(result);
    if (!ok) {
        failed(ts);
        return -1;
    }
    if (k1 != NULL && table_find(&core->cfunctions, k1, owner) == NULL) {
        Entry *entry = NULL;
        if (owner == NULL || PyList_Append(core->keep, owner) == 0) {
            entry = table_add(&core->cfunctions, k1, owner);
        }
        if (entry != NULL) {
            entry->a = *fid;
            entry->b = *trivial;
        }
        PyErr_Clear(); /* out of memory: just not cached */
    }
    return 0;
}

/* ---- Summaries -------------------------------------------------------- */

/* Whether a Python thread is inside one of the registry's methods, holding its
 * lock between its two insertions (-1: unknown). */
static int
registry_busy(CCore *core)
{
    PyObject *locked = PyObject_CallNoArgs(core->lock_locked);
    int busy = locked == Py_False ? 0 : locked == NULL ? -1 : 1;
    if (locked == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(locked);
    return busy;
}

/* Registry._intern(key, ids, items, base) without calling it: the index of
 * `key` in the table `items` (whose first entry is index `base`), appended
 * when new, found with one probe of `ids`. Keys are exact str or tuples of exact
 * ints: hashing and comparing them runs no Python code and does not release the
 * GIL, so no other thread sees the table between the two insertions; a Python
 * thread inside the registry's method holds registry._lock between its own two,
 * and the caller then calls that method instead. -2: not done here (the lock is
 * held); -1 and an error set: failed. */
static int64_t
table_append(CCore *core, PyObject *ids, PyObject *items, int64_t base, PyObject *key)
{
    if (registry_busy(core) != 0) {
        return -2;
    }
    Py_ssize_t size = PyList_GET_SIZE(items);
    PyObject *boxed = PyLong_FromLongLong(base + size);
    if (boxed == NULL) {
        return -1;
    }
    PyObject *found = PyDict_SetDefault(ids, key, boxed); /* borrowed */
    if (found != boxed) {
        int64_t index = found ? PyLong_AsLongLong(found) : -1; /* there already */
        Py_DECREF(boxed);
        return index;
    }
    Py_DECREF(boxed);
    if (PyList_Append(items, key) < 0) {
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        if (PyDict_DelItem(ids, key) < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(type, value, traceback);
        return -1;
    }
    return base + size;
}

/* Registry.string(text) through table_append, when the core shares the
 * registry's string table. */
static int64_t
append_string(CCore *core, PyObject *text)
{
    if (core->string_ids == NULL || !PyUnicode_CheckExact(text)) {
        return -2;
    }
    return table_append(core, core->string_ids, core->strings, core->strings_base, text);
}

/* registry.string(text), cached; steals `text` (NULL: a failed summary). With
 * the registry's own table (string_ids) the cache is that table itself, and a
 * `fresh` text (most likely not interned yet: an int not in int_cache) goes
 * to append_string without a lookup first (append_string finds it if it is). */
static int64_t
intern_text(ThreadState *ts, PyObject *text, int fresh)
{
    if (text == NULL || ts->interrupt != NULL) {
        if (text == NULL) {
            failed(ts);
        }
        Py_XDECREF(text);
        return -1;
    }
    CCore *core = ts->core;
    int64_t index = -1;
    PyObject *cache = core->string_ids != NULL ? core->string_ids : core->text_cache;
    PyObject *hit = fresh && cache == core->string_ids ? NULL : PyDict_GetItemWithError(cache, text);
    if (hit != NULL) {
        index = PyLong_AsLongLong(hit);
    }
    else if (!PyErr_Occurred() && (index = append_string(core, text)) == -2) {
        index = -1;
        PyObject *result = PyObject_CallOneArg(core->reg_string, text);
        if (result != NULL) {
            index = PyLong_AsLongLong(result);
            if (!PyErr_Occurred() && cache == core->text_cache &&
                PyDict_SetItem(cache, text, result) < 0) {
                PyErr_Clear(); /* out of memory: just not cached */
            }
            Py_DECREF(result);
        }
    }
    Py_DECREF(text);
    if (PyErr_Occurred()) {
        failed(ts);
        return -1;
    }
    return index;
}

static inline int64_t
text_index(ThreadState *ts, PyObject *text)
{
    return intern_text(ts, text, 0);
}

/* The version tag of a heap type, assigned when it has none; 0 when none can
 * be. CPython gives a type a new one whenever it or a base is modified
 * (attribute set or deleted, __bases__, __qualname__, __module__ assigned). */
static PyObject *version_probe; /* an interned name: _PyType_Lookup assigns tags */

static unsigned int
type_version(PyTypeObject *type)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (type->tp_version_tag == 0) {
        (void)PyUnstable_Type_AssignVersionTag(type);
    }
    return type->tp_version_tag;
#else
    if (!(type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
        (void)_PyType_Lookup(type, version_probe); /* borrowed; never fails */
    }
    return (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) ? type->tp_version_tag : 0;
#endif
}

/* A heap type's version tag combined with the identity of its __qualname__
 * object: assigning __qualname__ does not change the version tag on every
 * CPython (3.13 keeps it), but always replaces ht_qualname. */
static inline int64_t
type_stamp(PyTypeObject *type, unsigned int version)
{
    uintptr_t qualname = (uintptr_t)((PyHeapTypeObject *)type)->ht_qualname;
    return (int64_t)version | (int64_t)((qualname >> 4) & 0x7fffffff) << 32;
}

static inline int
version_is(PyTypeObject *type, int64_t stamp)
{
#if PY_VERSION_HEX < 0x030C0000
    if (!(type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
        return 0;
    }
#endif
    return type->tp_version_tag != 0 && type_stamp(type, type->tp_version_tag) == stamp;
}

#define NOT_BY_TYPE (-2)

/* ---- Summaries built in C (summary.py's text, byte for byte) ------------
 * For values of exact builtin types whose summary reads nothing but the value
 * (no user code can run): long str, bytes, complex, ints over 64 bits, and the
 * builtin containers with their leading short scalars; and for exact
 * numpy.ndarray and torch.Tensor, whose shape, dtype and device are read as
 * summary._array reads them. Each builder returns a new str, or NULL: with an
 * exception set when it failed, without one when summary.summarize must decide
 * (the caller then calls it, so that the text stays summary.py's). */

#define SUMMARY_MAX_ITEMS 3     /* summary.MAX_ITEMS */
#define SUMMARY_MAX_REPR 130    /* summary._MAX_REPR */
#define SUMMARY_MAX_ITEM_REPR 24 /* summary._MAX_ITEM_REPR */
#define SUMMARY_MAX_DIMS 8      /* summary._MAX_DIMS */
#define SUMMARY_MAX_META 32     /* summary._MAX_META */
#define SUMMARY_MAX_METAS 1024  /* dtype texts cached per core */

/* Types whose summary summary._array gives, cached in CCore.types (see type_index). */
#define ARRAY_WITH_DEVICE (-3)
#define ARRAY_NO_DEVICE (-4)

/* int.bit_length() of an exact int; -1 with an exception set when it failed. */
static Py_ssize_t
int_bits(PyObject *value)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (!overflow) {
        unsigned long long magnitude = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        Py_ssize_t bits = 0;
        while (magnitude) {
            bits++;
            magnitude >>= 1;
        }
        return bits;
    }
    PyObject *bits = PyObject_CallMethod(value, "bit_length", NULL);
    Py_ssize_t n = bits != NULL ? PyLong_AsSsize_t(bits) : -1;
    Py_XDECREF(bits);
    return n;
}

/* summary._int */
static PyObject *
int_summary(PyObject *value)
{
    Py_ssize_t bits = int_bits(value);
    if (bits < 0) {
        return NULL;
    }
    return bits <= 128 ? PyObject_Repr(value) : PyUnicode_FromFormat("int(<%zd bits>)", bits);
}

/* repr of value[:keep] for an exact str or bytes. */
static PyObject *
prefix_repr(PyObject *value, Py_ssize_t keep)
{
    PyObject *prefix = PyUnicode_CheckExact(value)
                           ? PyUnicode_Substring(value, 0, keep)
                           : PyBytes_FromStringAndSize(PyBytes_AS_STRING(value), keep);
    PyObject *text = prefix != NULL ? PyObject_Repr(prefix) : NULL;
    Py_XDECREF(prefix);
    return text;
}

/* summary._clip of an exact str or bytes. */
static PyObject *
clip_summary(PyObject *value)
{
    int is_str = PyUnicode_CheckExact(value);
    Py_ssize_t size = is_str ? PyUnicode_GET_LENGTH(value) : PyBytes_GET_SIZE(value);
    Py_ssize_t keep = size < MAX_CACHED_STR ? size : MAX_CACHED_STR;
    PyObject *text = prefix_repr(value, keep);
    while (text != NULL && PyUnicode_GET_LENGTH(text) > SUMMARY_MAX_REPR) {
        keep /= 2; /* heavy escaping: keep fewer items (terminates at 1) */
        Py_SETREF(text, prefix_repr(value, keep));
    }
    if (text == NULL || keep == size) {
        return text;
    }
    PyObject *clipped =
        PyUnicode_FromFormat("%U...(+%zd %s)", text, size - keep, is_str ? "chars" : "bytes");
    Py_DECREF(text);
    return clipped;
}

/* summary._item: 1 and *text = the repr of a short scalar of an exact builtin
 * type, 0 when the value is not one, -1 when that failed. */
static int
item_summary(PyObject *value, PyObject **text)
{
    PyTypeObject *type = Py_TYPE(value);
    *text = NULL;
    if (type == &PyLong_Type) {
        Py_ssize_t bits = int_bits(value);
        if (bits < 0) {
            return -1;
        }
        if (bits > 64) {
            return 0;
        }
    }
    else if (type == &PyUnicode_Type) {
        if (PyUnicode_GET_LENGTH(value) > SUMMARY_MAX_ITEM_REPR) {
            return 0;
        }
    }
    else if (type == &PyBytes_Type) {
        if (PyBytes_GET_SIZE(value) > SUMMARY_MAX_ITEM_REPR) {
            return 0;
        }
    }
    else if (!(value == Py_None || type == &PyBool_Type || type == &PyFloat_Type ||
               type == &PyComplex_Type)) {
        return 0;
    }
    PyObject *repr = PyObject_Repr(value);
    if (repr == NULL) {
        return -1;
    }
    if (PyUnicode_GET_LENGTH(repr) > SUMMARY_MAX_ITEM_REPR) {
        Py_DECREF(repr);
        return 0;
    }
    *text = repr;
    return 1;
}

/* summary._container: "name(len=N)", then the items' texts in brackets when
 * all of them are short scalars (`items`: the first n, or n pairs of key and
 * value for a dict). */
static PyObject *
container_summary(const char *name, Py_ssize_t size, PyObject *const *items, Py_ssize_t n,
                  int pairs, int curly)
{
    PyObject *shown[SUMMARY_MAX_ITEMS] = {NULL};
    PyObject *result = NULL;
    Py_ssize_t made = 0;
    for (; made < n; made++) {
        PyObject *key = NULL, *text = NULL;
        int ok = item_summary(items[pairs ? 2 * made : made], pairs ? &key : &text);
        if (ok > 0 && pairs) {
            ok = item_summary(items[2 * made + 1], &text);
            if (ok > 0) {
                PyObject *pair = PyUnicode_FromFormat("%U: %U", key, text);
                Py_SETREF(text, pair);
                ok = pair != NULL ? 1 : -1;
            }
            Py_XDECREF(key);
        }
        if (ok < 0) {
            goto done;
        }
        if (ok == 0) {
            n = 0; /* an item that is not a short scalar: the head alone */
            break;
        }
        shown[made] = text;
    }
    if (n == 0) {
        result = PyUnicode_FromFormat("%s(len=%zd)", name, size);
        goto done;
    }
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyList_SET_ITEM(list, i, shown[i]);
        shown[i] = NULL;
    }
    PyObject *sep = PyUnicode_FromString(", ");
    PyObject *joined = sep != NULL ? PyUnicode_Join(sep, list) : NULL;
    Py_XDECREF(sep);
    Py_DECREF(list);
    if (joined != NULL) {
        result = PyUnicode_FromFormat("%s(len=%zd)%c%U%s%c", name, size, curly ? '{' : '[',
                                      joined, size > SUMMARY_MAX_ITEMS ? ", ..." : "",
                                      curly ? '}' : ']');
        Py_DECREF(joined);
    }
done:
    for (Py_ssize_t i = 0; i < SUMMARY_MAX_ITEMS; i++) {
        Py_XDECREF(shown[i]);
    }
    return result;
}

/* Summary of an exact list, tuple, dict, set or frozenset. */
static PyObject *
builtin_container_summary(PyObject *value)
{
    PyTypeObject *type = Py_TYPE(value);
    PyObject *items[2 * SUMMARY_MAX_ITEMS];
    Py_ssize_t n = 0, size;
    int pairs = 0, curly = 1;
    const char *name;
    if (type == &PyList_Type || type == &PyTuple_Type) {
        int list = type == &PyList_Type;
        name = list ? "list" : "tuple";
        curly = 0;
        size = list ? PyList_GET_SIZE(value) : PyTuple_GET_SIZE(value);
        for (; n < size && n < SUMMARY_MAX_ITEMS; n++) {
            items[n] = Py_NewRef(list ? PyList_GET_ITEM(value, n) : PyTuple_GET_ITEM(value, n));
        }
    }
    else if (type == &PyDict_Type) {
        name = "dict";
        pairs = 1;
        size = PyDict_GET_SIZE(value);
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (n < SUMMARY_MAX_ITEMS && PyDict_Next(value, &pos, &key, &item)) {
            items[2 * n] = Py_NewRef(key);
            items[2 * n + 1] = Py_NewRef(item);
            n++;
        }
    }
    else {
        name = type == &PySet_Type ? "set" : "frozenset";
        size = PySet_GET_SIZE(value);
        PyObject *iter = PyObject_GetIter(value);
        if (iter == NULL) {
            return NULL;
        }
        PyObject *item;
        while (n < SUMMARY_MAX_ITEMS && (item = PyIter_Next(iter)) != NULL) {
            items[n++] = item;
        }
        Py_DECREF(iter);
        if (PyErr_Occurred()) {
            for (Py_ssize_t i = 0; i < n; i++) {
                Py_DECREF(items[i]);
            }
            return NULL;
        }
    }
    PyObject *text = container_summary(name, size, items, n, pairs, curly);
    for (Py_ssize_t i = 0; i < (pairs ? 2 * n : n); i++) {
        Py_DECREF(items[i]);
    }
    return text;
}

/* Summary of an exact str, bytes, complex, int or builtin container; NULL
 * without an exception for any other value. */
static PyObject *
builtin_summary(PyObject *value)
{
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyUnicode_Type || type == &PyBytes_Type) {
        return clip_summary(value);
    }
    if (type == &PyLong_Type) {
        return int_summary(value);
    }
    if (type == &PyComplex_Type) {
        return PyObject_Repr(value);
    }
    if (type == &PyList_Type || type == &PyTuple_Type || type == &PyDict_Type ||
        type == &PySet_Type || type == &PyFrozenSet_Type) {
        return builtin_container_summary(value);
    }
    return NULL;
}

/* `name` defined in the __dict__ of `type` or a base (summary._type_has). */
static int
type_has(PyTypeObject *type, const char *name)
{
    PyObject *mro = type->tp_mro;
    if (mro == NULL || !PyTuple_Check(mro)) {
        return 0;
    }
    PyObject *key = PyUnicode_InternFromString(name);
    int found = key == NULL ? -1 : 0;
    for (Py_ssize_t i = 0; !found && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *dict = PyType_GetDict(base);
#else
        PyObject *dict = Py_XNewRef(base->tp_dict);
#endif
        if (dict != NULL) {
            found = PyDict_Contains(dict, key);
            Py_DECREF(dict);
        }
    }
    Py_XDECREF(key);
    return found;
}

/* Whether `type` is exactly `module.name` for a module already imported (never
 * imported here, nor any attribute hook run). */
static int
is_module_type(PyTypeObject *type, const char *module, const char *name)
{
    PyObject *key = PyUnicode_FromString(module);
    PyObject *mod = key != NULL ? PyImport_GetModule(key) : NULL;
    Py_XDECREF(key);
    int found = 0;
    if (mod != NULL && PyModule_Check(mod)) {
        PyObject *dict = PyModule_GetDict(mod); /* borrowed */
        found = dict != NULL && PyDict_GetItemString(dict, name) == (PyObject *)type;
    }
    Py_XDECREF(mod);
    PyErr_Clear();
    return found;
}

/* ARRAY_WITH_DEVICE or ARRAY_NO_DEVICE for exact numpy.ndarray and
 * torch.Tensor (summary.type_summary said their summary needs the value),
 * NOT_BY_TYPE for any other type. */
static int64_t
array_kind(PyTypeObject *type)
{
    if (!is_module_type(type, "numpy", "ndarray") && !is_module_type(type, "torch", "Tensor")) {
        return NOT_BY_TYPE;
    }
    int device = type_has(type, "device");
    if (device < 0) {
        PyErr_Clear();
        return NOT_BY_TYPE;
    }
    return device ? ARRAY_WITH_DEVICE : ARRAY_NO_DEVICE;
}

/* Interned names read by array_summary, made by summary_names(). */
static PyObject *name_shape, *name_dtype, *name_device, *name_names, *torch_prefix;

static int
summary_names(void)
{
    if (torch_prefix != NULL) {
        return 0;
    }
    name_shape = PyUnicode_InternFromString("shape");
    name_dtype = PyUnicode_InternFromString("dtype");
    name_device = PyUnicode_InternFromString("device");
    name_names = PyUnicode_InternFromString("names");
    torch_prefix = PyUnicode_InternFromString("torch.");
    return torch_prefix != NULL && name_names != NULL && name_device != NULL &&
                   name_dtype != NULL && name_shape != NULL
               ? 0
               : -1;
}

/* summary._meta_text: str of a dtype or device (an exact str as it is),
 * "torch." removed, cut to _MAX_META characters plus "...". */
static PyObject *
meta_summary(PyObject *value)
{
    PyObject *text = PyUnicode_CheckExact(value) ? Py_NewRef(value) : PyObject_Str(value);
    if (text == NULL) {
        return NULL;
    }
    /* str.__str__: an exact str (a str subclass's text, not its overrides) */
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    Py_ssize_t start = PyUnicode_Tailmatch(text, torch_prefix, 0, 6, -1) > 0 ? 6 : 0;
    Py_ssize_t end = size - start > SUMMARY_MAX_META ? start + SUMMARY_MAX_META : size;
    PyObject *part = PyUnicode_Substring(text, start, end);
    Py_DECREF(text);
    if (part == NULL || end == size) {
        return part;
    }
    PyObject *cut = PyUnicode_FromFormat("%U...", part);
    Py_DECREF(part);
    return cut;
}

/* meta_summary of a dtype, cached by identity for the dtypes whose text never
 * changes: torch.dtype, and numpy dtypes without fields (a structured dtype's
 * names can be reassigned; a dtype without fields cannot be given any). The
 * dtype and its text are kept alive by core->keep. */
static PyObject *
dtype_summary(CCore *core, PyObject *dtype)
{
    Entry *entry = table_find(&core->metas, dtype, NULL);
    if (entry != NULL) {
        return Py_NewRef((PyObject *)entry->p);
    }
    PyObject *text = meta_summary(dtype);
    if (text == NULL || core->metas.used >= SUMMARY_MAX_METAS) {
        return text;
    }
    int cacheable = is_module_type(Py_TYPE(dtype), "torch", "dtype");
    if (!cacheable) {
        PyObject *key = PyUnicode_FromString("numpy");
        PyObject *numpy = key != NULL ? PyImport_GetModule(key) : NULL;
        PyObject *dict = numpy != NULL && PyModule_Check(numpy) ? PyModule_GetDict(numpy) : NULL;
        PyObject *base = dict != NULL ? PyDict_GetItemString(dict, "dtype") : NULL;
        if (base != NULL && PyType_Check(base) &&
            PyObject_TypeCheck(dtype, (PyTypeObject *)base)) {
            PyObject *names = PyObject_GetAttr(dtype, name_names);
            cacheable = names == Py_None;
            Py_XDECREF(names);
        }
        Py_XDECREF(key);
        Py_XDECREF(numpy);
        PyErr_Clear();
    }
    if (cacheable && table_find(&core->metas, dtype, NULL) == NULL &&
        PyList_Append(core->keep, dtype) == 0 && PyList_Append(core->keep, text) == 0 &&
        (entry = table_add(&core->metas, dtype, NULL)) != NULL) {
        entry->p = text;
    }
    PyErr_Clear(); /* out of memory: just not cached */
    return text;
}

/* summary._dim: 1 and *text for an int, float or None dimension, 0 for any other. */
static int
dim_summary(PyObject *dim, PyObject **text)
{
    if (PyLong_CheckExact(dim)) {
        *text = int_summary(dim);
    }
    else if (PyFloat_CheckExact(dim)) {
        *text = PyObject_Repr(dim);
    }
    else if (dim == Py_None) {
        *text = PyUnicode_FromString("?");
    }
    else {
        *text = NULL;
        return 0;
    }
    return *text != NULL ? 1 : -1;
}

/* The shape part of summary._array: "d0, d1, ...(+N dims)"; NULL without an
 * exception when the shape is not one summary._array shows. */
static PyObject *
shape_summary(PyObject *shape)
{
    int list = PyList_CheckExact(shape);
    if (!list && !PyTuple_Check(shape)) {
        return NULL;
    }
    Py_ssize_t ndim = list ? PyList_GET_SIZE(shape) : PyTuple_GET_SIZE(shape);
    Py_ssize_t n = ndim < SUMMARY_MAX_DIMS ? ndim : SUMMARY_MAX_DIMS;
    PyObject *dims = PyList_New(n);
    if (dims == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *text;
        int ok = dim_summary(list ? PyList_GET_ITEM(shape, i) : PyTuple_GET_ITEM(shape, i), &text);
        if (ok <= 0) {
            Py_DECREF(dims);
            return NULL;
        }
        PyList_SET_ITEM(dims, i, text);
    }
    PyObject *sep = PyUnicode_FromString(", ");
    PyObject *joined = sep != NULL ? PyUnicode_Join(sep, dims) : NULL;
    Py_XDECREF(sep);
    Py_DECREF(dims);
    if (joined != NULL && ndim > SUMMARY_MAX_DIMS) {
        Py_SETREF(joined, PyUnicode_FromFormat("%U, ...(+%zd dims)", joined,
                                               ndim - SUMMARY_MAX_DIMS));
    }
    return joined;
}

/* summary._array for an exact numpy.ndarray or torch.Tensor (`kind`: from
 * array_kind): "QualName(dtype[d0, d1], device)". */
static PyObject *
array_summary(CCore *core, PyObject *value, int64_t kind)
{
    PyTypeObject *type = Py_TYPE(value);
    PyObject *result = NULL, *dims = NULL, *dtype = NULL, *dtype_text = NULL;
    PyObject *device = NULL, *device_text = NULL, *qualname = NULL;
    PyObject *shape = PyObject_GetAttr(value, name_shape);
    if (shape == NULL || (dims = shape_summary(shape)) == NULL) {
        goto done;
    }
    if ((dtype = PyObject_GetAttr(value, name_dtype)) == NULL ||
        (dtype_text = dtype_summary(core, dtype)) == NULL) {
        goto done;
    }
    if (kind == ARRAY_WITH_DEVICE) {
        if ((device = PyObject_GetAttr(value, name_device)) == NULL) {
            goto done;
        }
        if (device != Py_None && !PyCallable_Check(device) &&
            (device_text = meta_summary(device)) == NULL) {
            goto done;
        }
    }
    if (type->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        qualname = Py_NewRef(((PyHeapTypeObject *)type)->ht_qualname);
    }
    else {
        const char *dot = strrchr(type->tp_name, '.');
        qualname = PyUnicode_FromString(dot != NULL ? dot + 1 : type->tp_name);
    }
    if (qualname != NULL) {
        result = device_text != NULL ? PyUnicode_FromFormat("%U(%U[%U], %U)", qualname,
                                                            dtype_text, dims, device_text)
                                     : PyUnicode_FromFormat("%U(%U[%U])", qualname,
                                                            dtype_text, dims);
    }
done:
    Py_XDECREF(shape);
    Py_XDECREF(dims);
    Py_XDECREF(dtype);
    Py_XDECREF(dtype_text);
    Py_XDECREF(device);
    Py_XDECREF(device_text);
    Py_XDECREF(qualname);
    return result;
}

/* A builder's answer, or when it had none (or failed) summary.summarize's; NULL
 * when the failure is kept for the program (failed(): a signal handler's
 * exception, which PyObject_Repr and PyObject_Str run handlers for). */
static PyObject *
summary_or_python(ThreadState *ts, PyObject *value, PyObject *text)
{
    if (text != NULL) {
        return text;
    }
    if (PyErr_Occurred()) {
        failed(ts);
        if (ts->interrupt != NULL) {
            return NULL;
        }
    }
    return PyObject_CallOneArg(ts->core->summarize, value);
}


/* String index of summary.type_summary(type): the summary every value of the
 * type gets, cached per type (held, so that no other type takes its address);
 * a heap type's answer only while its version tag is unchanged. NOT_BY_TYPE
 * when the value's summary depends on more than its type (or nothing can be
 * cached): summarize decides; ARRAY_WITH_DEVICE or ARRAY_NO_DEVICE for exact
 * numpy.ndarray and torch.Tensor: array_summary decides; -1 when a kept
 * exception stops summaries. */
static int64_t
type_index(ThreadState *ts, PyTypeObject *type)
{
    CCore *core = ts->core;
    int heap = (type->tp_flags & Py_TPFLAGS_HEAPTYPE) != 0;
    Entry *entry = table_find(&core->types, type, NULL);
    if (entry != NULL && (entry->a == NOT_BY_TYPE || !heap || version_is(type, entry->b))) {
        return entry->a;
    }
    if (core->type_summary == NULL) {
        return NOT_BY_TYPE;
    }
    unsigned int version = heap ? type_version(type) : 0;
    if (heap && version == 0) {
        return NOT_BY_TYPE; /* no way to tell when its summary changes */
    }
    PyObject *text = PyObject_CallOneArg(core->type_summary, (PyObject *)type);
    if (text == NULL) {
        failed(ts);
        return ts->interrupt != NULL ? -1 : NOT_BY_TYPE;
    }
    int64_t index = NOT_BY_TYPE;
    if (text == Py_None) {
        Py_DECREF(text);
        index = array_kind(type);
    }
    else if ((index = text_index(ts, text)) < 0) {
        return ts->interrupt != NULL ? -1 : NOT_BY_TYPE;
    }
    /* Python code ran: the table may have changed meanwhile. */
    entry = table_find(&core->types, type, NULL);
    if (entry == NULL) {
        if ((entry = table_add(&core->types, type, NULL)) == NULL) {
            return index; /* out of memory: just not cached */
        }
        Py_INCREF(type);
    }
    entry->a = index;
    entry->b = heap ? type_stamp(type, version) : 0;
    return index;
}

/* String index of summarize(value). Summaries of None, False, True and small
 * ints are kept in arrays, of other exact ints that fit in 64 bits and of str
 * up to MAX_CACHED_STR characters in a dict by value (their summary depends on
 * nothing else); float's summary is its repr; longer str, bytes, complex, larger
 * ints, builtin containers and exact numpy.ndarray / torch.Tensor are summarized
 * in C (builtin_summary, array_summary); values whose summary their type
 * decides are cached per type; everything else goes through summary.summarize. */
static int64_t
value_index(ThreadState *ts, PyObject *value)
{
    CCore *core = ts->core;
    if (ts->interrupt != NULL) {
        return -1;
    }
    PyTypeObject *type = Py_TYPE(value);
    int64_t *known = value == Py_None    ? &core->constants[0]
                     : value == Py_False ? &core->constants[1]
                     : value == Py_True  ? &core->constants[2]
                                         : NULL;
    int cacheable = 0, exact_int = 0;
    long long number = 0;
    if (type == &PyLong_Type) {
        int overflow;
        number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow && number >= SMALL_INT_MIN && number < SMALL_INT_MAX) {
            known = &core->small_ints[number - SMALL_INT_MIN];
        }
        cacheable = exact_int = !overflow;
    }
    if (known != NULL) {
        if (*known < 0) {
            *known = text_index(ts, PyObject_CallOneArg(core->summarize, value));
        }
        return *known;
    }
    if (type == &PyFloat_Type) {
        return text_index(ts, PyObject_Repr(value));
    }
    if (type == &PyUnicode_Type) {
        cacheable = PyUnicode_GET_LENGTH(value) <= MAX_CACHED_STR;
    }
    else if (type == &PyBytes_Type || type == &PyComplex_Type || type == &PyList_Type ||
             type == &PyTuple_Type || type == &PyDict_Type || type == &PySet_Type ||
             type == &PyFrozenSet_Type) {
        return text_index(ts, summary_or_python(ts, value, builtin_summary(value)));
    }
    else if (type != &PyLong_Type) {
        int64_t index = type_index(ts, type);
        if (index == ARRAY_WITH_DEVICE || index == ARRAY_NO_DEVICE) {
            return text_index(ts, summary_or_python(ts, value, array_summary(core, value, index)));
        }
        if (index != NOT_BY_TYPE) {
            return index;
        }
        return text_index(ts, PyObject_CallOneArg(core->summarize, value));
    }
    if (exact_int) {
        int64_t hit = int_table_find(&core->int_cache, number);
        if (hit >= 0) {
            return hit;
        }
    }
    else if (cacheable) {
        PyObject *hit = PyDict_GetItemWithError(core->value_cache, value);
        if (hit != NULL) {
            return PyLong_AsLongLong(hit);
        }
        PyErr_Clear(); /* exact int and str hash without failing */
    }
    /* An exact int that fits in 64 bits is summarized by its repr, and so is an
     * exact str up to MAX_STR characters whose repr fits in _MAX_REPR. */
    PyObject *text = cacheable ? PyObject_Repr(value) : NULL;
    if (text != NULL && type == &PyUnicode_Type &&
        PyUnicode_GET_LENGTH(text) > 2 * MAX_CACHED_STR + 2) {
        Py_CLEAR(text);
    }
    if (text == NULL) {
        if (PyErr_Occurred()) { /* PyObject_Repr runs pending signal handlers */
            failed(ts);
            if (ts->interrupt != NULL) {
                return -1;
            }
        }
        text = summary_or_python(ts, value, builtin_summary(value));
    }
    int64_t index = intern_text(ts, text, exact_int);
    if (exact_int && index >= 0) {
        int_table_add(&core->int_cache, number, index);
    }
    else if (cacheable && index >= 0) {
        PyObject *boxed = PyLong_FromLongLong(index);
        if (boxed == NULL || PyDict_SetItem(core->value_cache, value, boxed) < 0) {
            PyErr_Clear(); /* out of memory: just not cached */
        }
        Py_XDECREF(boxed);
    }
    return index;
}

/* String index of summarize_self(value): the qualname of the class (of value,
 * or value itself when a class). A heap type's is read from the type (it can be
 * reassigned), and its index cached by the address of that str (kept alive,
 * so that no other object takes the address): no lookup in the large table of
 * all texts on every method call; a static type's is cached by address. */
static int64_t
self_index(ThreadState *ts, PyObject *value)
{
    CCore *core = ts->core;
    if (ts->interrupt != NULL) {
        return -1;
    }
    PyTypeObject *type = PyType_Check(value) ? (PyTypeObject *)value : Py_TYPE(value);
    if (type->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        PyObject *qualname = ((PyHeapTypeObject *)type)->ht_qualname;
        Entry *entry = table_find(&core->self_names, qualname, NULL);
        if (entry != NULL) {
            return entry->a;
        }
        Py_INCREF(qualname); /* held across text_index, which may run Python code */
        int64_t index = text_index(ts, Py_NewRef(qualname));
        if (index >= 0 && PyUnicode_CheckExact(qualname) &&
            table_find(&core->self_names, qualname, NULL) == NULL) {
            if (PyList_Append(core->keep, qualname) == 0 &&
                (entry = table_add(&core->self_names, qualname, NULL)) != NULL) {
                entry->a = index;
            }
            PyErr_Clear(); /* out of memory: just not cached */
        }
        Py_DECREF(qualname);
        return index;
    }
    Entry *entry = table_find(&core->self_types, type, NULL);
    if (entry != NULL) {
        return entry->a;
    }
    int64_t index = text_index(ts, PyObject_CallOneArg(core->summarize_self, value));
    if (index >= 0 && table_find(&core->self_types, type, NULL) == NULL &&
        (entry = table_add(&core->self_types, type, NULL)) != NULL) {
        entry->a = index;
    }
    return index;
}

/* registry.args(ids), cached; -1 when the registry failed. */
static int64_t
intern_arguments(ThreadState *ts, const int64_t *ids, Py_ssize_t size)
{
    TupleTable *table = &ts->core->arg_tuples;
    uint64_t hash = ids_hash(ids, size);
    if (table->entries != NULL) {
        TupleEntry *entry = tuple_slot(table, hash, ids, size);
        if (entry->size != 0) {
            return entry->index;
        }
    }
    PyObject *tuple = PyTuple_New(size);
    for (Py_ssize_t i = 0; tuple != NULL && i < size; i++) {
        PyObject *item = PyLong_FromLongLong(ids[i]);
        if (item == NULL) {
            Py_CLEAR(tuple);
            break;
        }
        PyTuple_SET_ITEM(tuple, i, item);
    }
    if (tuple == NULL) {
        failed(ts);
        return -1;
    }
    CCore *core = ts->core;
    int64_t index = core->arg_ids == NULL ? -2 : table_append(core, core->arg_ids, core->arg_list, core->args_base, tuple);
    if (index == -2) {
        index = as_index(ts, PyObject_CallOneArg(core->reg_args, tuple));
    }
    else if (index < 0) {
        failed(ts);
    }
    Py_DECREF(tuple);
    if (index < 0) {
        return index;
    }
    if ((table->entries == NULL || 3 * (table->used + 1) > 2 * (table->mask + 1)) &&
        tuple_table_grow(table) < 0) {
        return index;
    }
    TupleEntry *entry = tuple_slot(table, hash, ids, size);
    /* not added by another thread meanwhile; out of memory: just not cached */
    if (entry->size == 0 && tuple_fill(entry, hash, ids, size, index)) {
        table->used++;
    }
    return index;
}

/* Where each argument of registry.functions[fid].argnames lives in the frame. */
static void
load_argument_layout(ThreadState *ts, CodeInfo *info)
{
    info->n_args = 0;
    PyObject *functions = get_attr(ts->core->registry, "functions");
    PyObject *function = functions ? PySequence_GetItem(functions, info->fid) : NULL;
    PyObject *names = function ? get_attr(function, "argnames") : NULL;
    Py_XDECREF(functions);
    Py_XDECREF(function);
    if (names == NULL) {
        failed(ts);
        return;
    }
    Py_ssize_t n = PyTuple_Check(names) ? PyTuple_GET_SIZE(names) : 0;
    info->args = n ? PyMem_Calloc((size_t)n, sizeof(ArgSlot)) : NULL;
    if (info->args == NULL) {
        Py_DECREF(names);
        return;
    }
    PyCodeObject *code = (PyCodeObject *)info->code;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        ArgSlot *arg = &info->args[i];
        arg->self = PyUnicode_Check(name) && (PyUnicode_CompareWithASCIIString(name, "self") == 0 ||
                                              PyUnicode_CompareWithASCIIString(name, "cls") == 0);
        PyObject *secret = PyObject_CallMethod(ts->core->registry, "is_secret", "O", name);
        arg->secret = secret == NULL || PyObject_IsTrue(secret) != 0; /* in doubt: a secret */
        if (secret == NULL) {
            failed(ts);
        }
        Py_XDECREF(secret);
#if FRAME_LAYOUT == 311
        arg->slot = -1;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(code->co_localsplusnames); j++) {
            if (PyObject_RichCompareBool(PyTuple_GET_ITEM(code->co_localsplusnames, j), name,
                                         Py_EQ) == 1) {
                arg->slot = j;
                arg->cell = (PyBytes_AS_STRING(code->co_localspluskinds)[j] & CO_FAST_CELL) != 0;
                break;
            }
        }
#elif FRAME_LAYOUT == 310
        /* An argument captured by a closure lives in its cell (after the plain
         * locals); its own slot is cleared when the frame is made. */
        arg->slot = -1;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(code->co_cellvars); j++) {
            if (code->co_cell2arg != NULL && code->co_cell2arg[j] != CO_CELL_NOT_AN_ARG &&
                PyObject_RichCompareBool(PyTuple_GET_ITEM(code->co_cellvars, j), name, Py_EQ) == 1) {
                arg->slot = code->co_nlocals + j;
                arg->cell = 1;
                break;
            }
        }
        for (Py_ssize_t j = 0; arg->slot < 0 && j < PyTuple_GET_SIZE(code->co_varnames); j++) {
            if (PyObject_RichCompareBool(PyTuple_GET_ITEM(code->co_varnames, j), name, Py_EQ) == 1) {
                arg->slot = j;
            }
        }
#else
        (void)code;
        arg->name = Py_NewRef(name);
#endif
    }
    info->n_args = n;
    Py_DECREF(names);
    PyErr_Clear(); /* a failed name comparison: that argument is just not found */
}

/* pycore._ArgLayouts.capture: the registry.args index of the call's arguments. */
static int64_t
capture_arguments(ThreadState *ts, CodeInfo *info, PyFrameObject *frame)
{
    if (ts->interrupt != NULL) {
        return -1;
    }
    if (info->n_args < 0) {
        load_argument_layout(ts, info);
    }
    Py_ssize_t n = info->n_args;
    if (n == 0) {
        return -1;
    }
    int64_t small[16];
    int64_t *ids = n <= 16 ? small : PyMem_Malloc((size_t)n * sizeof(int64_t));
    if (ids == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = frame_argument(frame, &info->args[i]);
        if (value == NULL) {
            ids[i] = -1;
            continue;
        }
        if (info->args[i].secret) {
            Py_DECREF(value);
            ids[i] = text_index(ts, PyUnicode_FromString("[redacted]"));
            continue;
        }
        ids[i] = info->args[i].self ? self_index(ts, value) : value_index(ts, value);
        Py_DECREF(value);
    }
    int64_t index = ts->interrupt ? -1 : intern_arguments(ts, ids, n);
    if (ids != small) {
        PyMem_Free(ids);
    }
    return index;
}

/* ---- Exceptions ------------------------------------------------------- */

static void
fill_slots(ThreadState *ts, const int64_t *slots, Py_ssize_t n, PyObject *exc)
{
    if (ts->interrupt != NULL) {
        return;
    }
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        PyObject *slot = PyLong_FromLongLong(slots[i]);
        if (slot == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, slot);
    }
    PyObject *result =
        list ? PyObject_CallFunctionObjArgs(ts->core->reg_fill_slots, list, exc, NULL) : NULL;
    Py_XDECREF(list);
    if (result == NULL) {
        failed(ts);
    }
    Py_XDECREF(result);
}

/* A new exception slot for the call of `frame` (NULL: a C call), which the
 * exception `exc` (NULL: not known yet) ended: Registry.new_exception_slot;
 * `seen`: the line of the frame's last exception event, 0: none. */
static int64_t
new_slot(ThreadState *ts, PyFrameObject *frame, PyObject *exc, int seen)
{
    if (ts->interrupt) {
        return -1;
    }
    PyObject *callable = ts->core->reg_new_slot;
    return as_index(ts, frame == NULL ? PyObject_CallNoArgs(callable)
                                      : PyObject_CallFunction(callable, "OOi", frame,
                                                              exc ? exc : Py_None, seen));
}

/* The string index of the name of the asyncio task running now (Registry.task),
 * -1: none: what a coroutine's resumption records. */
static int64_t
task_index(ThreadState *ts)
{
    return ts->interrupt ? -1 : as_index(ts, PyObject_CallNoArgs(ts->core->reg_task));
}

/* A slot to fill at the next exception event. */
static void
add_pending(ThreadState *ts, int64_t slot)
{
    if (reserve((void **)&ts->pending, &ts->pending_capacity, ts->n_pending + 1,
                sizeof(int64_t)) == 0) {
        ts->pending[ts->n_pending++] = slot;
    }
}

/* pycore's raised(): the exception slot of a call an exception ended, filled
 * now for a frame whose exception is known, else at the next exception event.
 * `level`: the stack entries below the call's own (pycore's len(stack) - 1);
 * `frame`: the call's own (NULL for a C call). */
static int64_t
raised(ThreadState *ts, int marker, Py_ssize_t level, PyFrameObject *frame)
{
    /* the entry was just popped: its seen line is still there */
    int seen = frame != NULL && level < ts->stack_capacity ? ts->seen_lines[level] : 0;
    int64_t slot = new_slot(ts, frame, ts->current, seen);
    if (slot < 0) {
        return -1;
    }
    if (marker != EXTERNAL_C && ts->current != NULL) {
        fill_slots(ts, &slot, 1, ts->current);
    }
    else {
        add_pending(ts, slot);
        ts->pending_level = level;
    }
    return slot;
}

/* pycore: the frame at or below the level of the receiver of the pending
 * exception runs on, so that exception was swallowed (in C): its slots stay
 * unknown rather than take the next, unrelated exception. */
static inline int
pending_swallowed(ThreadState *ts)
{
    return ts->n_pending && ts->n_stack <= ts->pending_level;
}

/* ---- The stack of open frames and recorded C calls -------------------- */

static void
push(ThreadState *ts, int marker, PyFrameObject *frame)
{
    if (ts->n_stack == ts->stack_capacity) {
        Py_ssize_t capacity = ts->stack_capacity, lines_capacity = ts->stack_capacity;
        if (reserve((void **)&ts->markers, &capacity, ts->n_stack + 1, 1) < 0 ||
            reserve((void **)&ts->seen_lines, &lines_capacity, ts->n_stack + 1, sizeof(int)) <
                0 ||
            reserve((void **)&ts->frames, &ts->stack_capacity, ts->n_stack + 1,
                    sizeof(PyObject *)) < 0) {
            ts->broken = 1;
            return;
        }
    }
    ts->markers[ts->n_stack] = (unsigned char)marker;
    ts->seen_lines[ts->n_stack] = 0;
    ts->frames[ts->n_stack++] = Py_NewRef(frame);
}

static int
pop(ThreadState *ts)
{
    ts->n_stack--;
    Py_DECREF(ts->frames[ts->n_stack]);
    return ts->markers[ts->n_stack];
}

static inline int
top(ThreadState *ts)
{
    return ts->n_stack ? ts->markers[ts->n_stack - 1] : IGNORED;
}

static inline int
on_top(ThreadState *ts, PyFrameObject *frame)
{
    return ts->n_stack && ts->frames[ts->n_stack - 1] == (PyObject *)frame;
}

static inline int
is_c_call(int marker)
{
    return marker == EXTERNAL_C || marker == TRIVIAL_C;
}

/* pycore's close_above: close the entries above index `index`, whose closing
 * events were lost. */
static void
close_above(ThreadState *ts, Py_ssize_t index)
{
    CCore *core = ts->core;
    int64_t now = now_ns();
    while (ts->n_stack > index + 1) {
        int marker = pop(ts);
        if (marker == IN_SCOPE || marker == EXTERNAL_C ||
            (marker == EXTERNAL_PY && core->record_externals)) {
            ts->depth--;
            emit(core, ts->return_head, now, -1);
        }
        else if (marker == SUPPRESSED) {
            ts->suppressed--;
        }
        else if (marker == TRIVIAL_C) {
            ts->n_deferred--;
        }
    }
}

/* pycore's unwind_to: close the entries above the top one of `frame` whose
 * closing events were lost (a hook raised, or another tool replaced it for a
 * while); 0 when `frame` has none. With `own`, the frame's own entry: the
 * entries of its C calls above it (they carry its frame) are closed too. */
static Py_ssize_t
find_entry(ThreadState *ts, PyFrameObject *frame, int own)
{
    Py_ssize_t index = ts->n_stack - 1;
    while (index >= 0 && (ts->frames[index] != (PyObject *)frame ||
                          (own && is_c_call(ts->markers[index])))) {
        index--;
    }
    return index;
}

static int
unwind_to(ThreadState *ts, PyFrameObject *frame, int own)
{
    Py_ssize_t index = find_entry(ts, frame, own);
    if (index < 0) {
        return 0;
    }
    close_above(ts, index);
    return 1;
}

/* An in-scope callback reached from a trivial builtin, the innermost one (the
 * entry at `index`): record the builtin. */
static void
open_deferred_at(ThreadState *ts, Py_ssize_t index)
{
    Deferred call = ts->deferred[--ts->n_deferred];
    ts->markers[index] = EXTERNAL_C;
    ts->core->recorded++;
    ts->depth++;
    emit(ts->core, ts->external_head | call.fid << REF_SHIFT, call.time, -1);
}

static void
open_deferred(ThreadState *ts)
{
    open_deferred_at(ts, ts->n_stack - 1);
}

/* ---- The hooks -------------------------------------------------------- */

static void
on_call(ThreadState *ts, PyFrameObject *frame)
{
    CCore *core = ts->core;
    if (ts->n_stack) {
        PyFrameObject *back = PyFrame_GetBack(frame);
        if (!on_top(ts, back)) {
            unwind_to(ts, back, 0); /* returns were lost: close what they ended */
        }
        Py_XDECREF(back);
    }
    if (pending_swallowed(ts)) {
        ts->n_pending = 0; /* the receiver runs on */
    }
    Py_CLEAR(ts->current);
    int caller = top(ts);
    PyCodeObject *code = frame_code(frame);
    CodeInfo *info = classify(ts, code, frame);
    int64_t fid = info->fid;
    int marker;
    if (info->in_scope) {
        if (caller == TRIVIAL_C && !ts->suppressed && core->recorded < core->max_calls) {
            open_deferred(ts);
        }
        else if (caller == IGNORED && ts->n_deferred && !ts->suppressed &&
                 core->recorded < core->max_calls) {
            /* pycore: reached through library code that a trivial builtin runs? */
            Py_ssize_t below = ts->n_stack - 2;
            while (below >= 0 && ts->markers[below] == IGNORED) {
                below--;
            }
            if (below >= 0 && ts->markers[below] == TRIVIAL_C) {
                open_deferred_at(ts, below);
            }
        }
        if (ts->suppressed || ts->depth >= core->max_depth) {
            ts->suppressed++;
            marker = SUPPRESSED;
        }
        else if (core->recorded >= core->max_calls) {
            core->dropped++;
            marker = DROPPED;
        }
        else {
            int64_t head = ts->resume_head, aux = -1;
            if (!(ts->replaced & TRACE_REPLACED) &&
                PyThreadState_Get()->c_traceobj != (PyObject *)ts) {
                note_replaced(ts, TRACE_REPLACED);
            }
            if (!is_resumption(frame, code)) {
                head = ts->call_head;
                aux = core->capture ? capture_arguments(ts, info, frame) : -1;
            }
            else if (code->co_flags & CO_ASYNC) {
                aux = task_index(ts);
            }
            core->recorded++;
            ts->depth++;
            marker = IN_SCOPE;
            emit(core, head | fid << REF_SHIFT, now_ns(), aux);
        }
    }
    else if (fid < 0 || (caller != IN_SCOPE && caller != DROPPED)) {
        marker = IGNORED;
    }
    else if (!core->record_externals) {
        marker = EXTERNAL_PY; /* marks the external region; nothing recorded */
    }
    else if (caller == DROPPED || core->recorded >= core->max_calls) {
        core->dropped++;
        marker = IGNORED;
    }
    else if (ts->depth >= core->max_depth) {
        marker = IGNORED;
    }
    else {
        core->recorded++;
        ts->depth++;
        marker = EXTERNAL_PY;
        emit(core, ts->external_head | fid << REF_SHIFT, now_ns(), -1);
    }
    push(ts, marker, frame);
}

/* `value` is NULL (None on some 3.12 releases) when the frame is unwinding
 * with an exception; like a returned None (what a Python profile function
 * sees then too), the frame's last instruction tells how it left, but for an
 * exception thrown into a generator that does not catch it, which leaves from
 * where the frame was suspended, as a yield does: see ts->thrown. */
static void
on_return(ThreadState *ts, PyFrameObject *frame, PyObject *value)
{
    CCore *core = ts->core;
    if ((!on_top(ts, frame) || is_c_call(top(ts))) && !unwind_to(ts, frame, 1)) {
        return; /* its call event was not seen */
    }
    if (pending_swallowed(ts)) {
        if (exit_kind(frame, frame_code(frame)) == EV_RAISE) {
            ts->pending_level = ts->n_stack - 1; /* passed on to its caller */
        }
        else {
            ts->n_pending = 0; /* the receiver returns */
        }
    }
    int marker = pop(ts);
    if (marker == IN_SCOPE || (marker == EXTERNAL_PY && core->record_externals)) {
        int64_t now = now_ns();
        PyCodeObject *code = frame_code(frame);
        int kind = value == NULL || value == Py_None || code->co_flags & CO_RESUMABLE
                       ? exit_kind(frame, code)
                       : EV_RETURN;
        if (kind == EV_YIELD && (value == NULL || value == Py_None) && ts->thrown) {
            kind = EV_RAISE; /* the exception thrown in was not caught */
        }
        int64_t head, aux;
        if (kind == EV_RAISE) {
            head = ts->raise_head;
            aux = raised(ts, marker, ts->n_stack, frame);
        }
        else {
            head = kind == EV_YIELD ? ts->yield_head : ts->return_head;
            aux = core->capture ? value_index(ts, value ? value : Py_None) : -1;
        }
        ts->depth--;
        emit(core, head, now, aux);
    }
    else if (marker == SUPPRESSED) {
        ts->suppressed--;
    }
    Py_CLEAR(ts->current);
    ts->thrown = 0;
}

static void
on_c_call(ThreadState *ts, PyFrameObject *frame, PyObject *func)
{
    CCore *core = ts->core;
    if (on_top(ts, frame) && is_c_call(top(ts))) {
        close_above(ts, ts->n_stack - 2); /* a C call of this frame whose c_return was lost */
    }
    if (pending_swallowed(ts)) {
        ts->n_pending = 0; /* the receiver runs on */
    }
    int caller = top(ts);
    int64_t fid;
    int trivial;
    if ((caller != IN_SCOPE && caller != DROPPED) || !core->record_externals ||
        classify_cfunction(ts, func, &fid, &trivial) < 0 || fid < 0) {
        return;
    }
    if (caller == DROPPED || core->recorded >= core->max_calls) {
        if (!trivial) {
            core->dropped++;
        }
    }
    else if (ts->depth >= core->max_depth) {
        return;
    }
    else if (trivial) {
        if (reserve((void **)&ts->deferred, &ts->deferred_capacity, ts->n_deferred + 1,
                    sizeof(Deferred)) < 0) {
            ts->broken = 1;
            return;
        }
        push(ts, TRIVIAL_C, frame);
        ts->deferred[ts->n_deferred++] = (Deferred){fid, now_ns()};
    }
    else {
        core->recorded++;
        ts->depth++;
        push(ts, EXTERNAL_C, frame);
        emit(core, ts->external_head | fid << REF_SHIFT, now_ns(), -1);
    }
}

static void
on_c_exit(ThreadState *ts, PyFrameObject *frame, int what)
{
    if (!ts->n_stack || (!on_top(ts, frame) && !unwind_to(ts, frame, 0))) {
        return;
    }
    int marker = top(ts);
    if (marker == EXTERNAL_C) {
        int64_t head = what == PyTrace_C_RETURN ? ts->return_head : ts->raise_head;
        int64_t aux = what == PyTrace_C_RETURN ? -1 : raised(ts, EXTERNAL_C, ts->n_stack - 1, NULL);
        pop(ts);
        ts->depth--;
        emit(ts->core, head, now_ns(), aux);
    }
    else if (marker == TRIVIAL_C) {
        pop(ts);
        ts->n_deferred--;
    }
}

static void
profile_event(ThreadState *ts, PyFrameObject *frame, int what, PyObject *arg)
{
    switch (what) {
    case PyTrace_CALL:
        on_call(ts, frame);
        break;
    case PyTrace_RETURN:
        on_return(ts, frame, arg);
        break;
    case PyTrace_C_CALL:
        on_c_call(ts, frame, arg);
        break;
    case PyTrace_C_RETURN:
    case PyTrace_C_EXCEPTION:
        on_c_exit(ts, frame, what);
        break;
    }
}

/* The hooks' exit: after recording is over they remove themselves (which may
 * free `ts`); otherwise a kept exception goes to the program if `deliver`,
 * else it waits for the next event. Raising makes CPython skip what follows
 * the event: not from the profile function's call events (the call or frame
 * just pushed would be skipped or abandoned), nor from the trace function's
 * return events (they come before the profile function's). */
static int
hook_exit(ThreadState *ts, int deliver)
{
    PyObject *exc = ts->interrupt;
    if (!ts->core->active || ts->broken) {
        ts->interrupt = NULL;
        uninstall_hooks(); /* may free ts */
        return exc ? raise_interrupt(exc) : 0;
    }
    if (!deliver || exc == NULL) {
        return 0;
    }
    ts->interrupt = NULL;
    return raise_interrupt(exc);
}

static int
profile_hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    ThreadState *ts = (ThreadState *)obj;
    if (ts->core->active && !ts->broken) {
        profile_event(ts, frame, what, arg);
    }
    return hook_exit(ts, what != PyTrace_CALL && what != PyTrace_C_CALL);
}

static int
trace_hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    ThreadState *ts = (ThreadState *)obj;
    if (what == PyTrace_LINE) {
        /* Only wanted after an exception thrown into a generator (see prepare_frame
         * and the exception event below): its frame caught it and runs on. */
        if (ts->thrown) {
            ts->thrown = 0;
#if FRAME_LAYOUT
            frame->f_trace_lines = 0;
#endif
        }
        return 0;
    }
    if (ts->core->active && !ts->broken) {
        if (what == PyTrace_CALL) {
            CodeInfo *info = classify(ts, frame_code(frame), frame);
            prepare_frame(frame, info->in_scope);
            if (info->in_scope && !(ts->replaced & PROFILE_REPLACED) &&
                PyThreadState_Get()->c_profileobj != (PyObject *)ts) {
                note_replaced(ts, PROFILE_REPLACED);
            }
        }
        else if (what == PyTrace_EXCEPTION && PyTuple_Check(arg) && PyTuple_GET_SIZE(arg) >= 2 &&
                 (frame_is_marked(frame) ||
                  (ts->core->record_externals && on_top(ts, frame) && top(ts) == EXTERNAL_PY))) {
            /* An in-scope frame, or a recorded external call's own (pycore's
             * external_trace): C code that called it may swallow its exception. */
            /* arg is (type, value, traceback) */
            PyObject *exc = PyTuple_GET_ITEM(arg, 1);
            Py_XSETREF(ts->current, Py_NewRef(exc));
            if (on_top(ts, frame)) {
                ts->seen_lines[ts->n_stack - 1] = PyFrame_GetLineNumber(frame);
            }
            PyCodeObject *code = frame_code(frame);
            if (code->co_flags & CO_RESUMABLE && exit_kind(frame, code) == EV_YIELD) {
                /* pycore's thrown: thrown in where the frame was suspended. If
                 * caught, the frame first runs on to another line (the except
                 * clause), reported once line events are on (from 3.12 they are
                 * for every frame). */
                ts->thrown = 1;
#if FRAME_LAYOUT
                frame->f_trace_lines = 1;
#endif
            }
            if (ts->n_pending && ts->n_stack <= ts->pending_level) {
                Py_ssize_t n = ts->n_pending;
                ts->n_pending = 0;
                fill_slots(ts, ts->pending, n, exc);
            }
        }
    }
    return hook_exit(ts, what == PyTrace_CALL || what == PyTrace_EXCEPTION);
}

/* ---- ThreadState ------------------------------------------------------ */

/* A thread state recording as registry thread `thread`. */
static ThreadState *
thread_state_alloc(CCore *core, int64_t thread)
{
    ThreadState *ts = (ThreadState *)ThreadStateType.tp_alloc(&ThreadStateType, 0);
    if (ts == NULL) {
        return NULL;
    }
    ts->core = (CCore *)Py_NewRef(core);
    int64_t shifted = thread << KIND_BITS;
    ts->call_head = EV_CALL | shifted;
    ts->resume_head = EV_RESUME | shifted;
    ts->external_head = EV_EXTERNAL | shifted;
    ts->return_head = EV_RETURN | shifted;
    ts->yield_head = EV_YIELD | shifted;
    ts->raise_head = EV_RAISE | shifted;
    return ts;
}

/* The calling thread's state, registered with the registry. */
static ThreadState *
thread_state_new(CCore *core)
{
    PyObject *result = PyObject_CallNoArgs(core->reg_thread);
    int64_t thread = result ? PyLong_AsLongLong(result) : -1;
    Py_XDECREF(result);
    if (thread == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return thread_state_alloc(core, thread);
}

static void
thread_state_dealloc(ThreadState *ts)
{
    while (ts->n_stack) {
        pop(ts);
    }
    Py_XDECREF(ts->current);
    Py_XDECREF(ts->interrupt);
    Py_XDECREF(ts->core);
    PyMem_Free(ts->markers);
    PyMem_Free(ts->frames);
    PyMem_Free(ts->seen_lines);
    PyMem_Free(ts->deferred);
    PyMem_Free(ts->pending);
    Py_TYPE(ts)->tp_free((PyObject *)ts);
}

static int
event_code(PyObject *event)
{
    static const char *const names[] = {"call", "return", "c_call", "c_return", "c_exception"};
    static const int codes[] = {PyTrace_CALL, PyTrace_RETURN, PyTrace_C_CALL, PyTrace_C_RETURN,
                                PyTrace_C_EXCEPTION};
    for (int i = 0; i < 5; i++) {
        if (PyUnicode_Check(event) && PyUnicode_CompareWithASCIIString(event, names[i]) == 0) {
            return codes[i];
        }
    }
    return -1;
}

/* sys.getprofile() and sys.gettrace() return this object: code that saves and
 * restores them (`old = sys.getprofile()` ... `sys.setprofile(old)`) installs
 * it as a Python-level hook, which then calls it. It puts the C hooks back and
 * records the event as they would have. The trace function is called before
 * the profile function for a call: when both were replaced, the call event is
 * left to the profile function reinstalled here. */
static PyObject *
thread_state_call(ThreadState *ts, PyObject *args, PyObject *kwargs)
{
    PyFrameObject *frame;
    PyObject *event, *arg;
    if (!PyArg_ParseTuple(args, "O!OO", &PyFrame_Type, &frame, &event, &arg)) {
        return NULL;
    }
    PyThreadState *tstate = PyThreadState_Get();
    int profile = tstate->c_profileobj == (PyObject *)ts && tstate->c_profilefunc != profile_hook;
    int trace = tstate->c_traceobj == (PyObject *)ts && tstate->c_tracefunc != trace_hook;
    int what = event_code(event);
    Py_INCREF(ts); /* replacing a hook drops the reference it held */
    if (!ts->core->active || ts->broken) { /* recording is over: as the C hooks would */
        if (profile) {
            PyEval_SetProfile(NULL, NULL);
        }
        if (trace) {
            PyEval_SetTrace(NULL, NULL);
        }
        Py_DECREF(ts);
        Py_RETURN_NONE;
    }
    if (trace) {
        PyEval_SetTrace(trace_hook, (PyObject *)ts);
        if (what == PyTrace_CALL) {
            prepare_frame(frame, classify(ts, frame_code(frame), frame)->in_scope);
        }
    }
    if (profile) {
        PyEval_SetProfile(profile_hook, (PyObject *)ts);
        if (what >= 0 && !(trace && what == PyTrace_CALL)) {
            profile_event(ts, frame, what, arg);
        }
    }
    PyObject *exc = ts->interrupt;
    ts->interrupt = NULL;
    Py_DECREF(ts);
    if (exc != NULL) {
        raise_interrupt(exc);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyTypeObject ThreadStateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "otel_tracer.record._ctracer.ThreadState",
    .tp_doc = "One thread's recording state (internal).",
    .tp_basicsize = sizeof(ThreadState),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)thread_state_dealloc,
    .tp_call = (ternaryfunc)thread_state_call,
};

/* ---- CCore ------------------------------------------------------------ */

static int
set_threading_profile(PyObject *hook)
{
    PyObject *threading = PyImport_ImportModule("threading");
    if (threading == NULL) {
        return -1;
    }
    PyObject *setprofile = get_attr(threading, "setprofile");
    PyObject *result = setprofile ? PyObject_CallOneArg(setprofile, hook) : NULL;
    Py_XDECREF(setprofile);
    Py_DECREF(threading);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

static int64_t
option_limit(PyObject *options, const char *name, int *error)
{
    PyObject *value = get_attr(options, name);
    int set = value ? PyObject_IsTrue(value) : -1;
    int64_t limit = UNLIMITED; /* `options.max_x or 1 << 62` */
    if (set > 0) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow) {
            limit = v;
        }
    }
    Py_XDECREF(value);
    if (set < 0 || PyErr_Occurred()) {
        *error = 1;
    }
    return limit;
}

static int
option_flag(PyObject *options, const char *name, int *error)
{
    PyObject *value = get_attr(options, name);
    int flag = value ? PyObject_IsTrue(value) : -1;
    Py_XDECREF(value);
    if (flag < 0) {
        *error = 1;
    }
    return flag > 0;
}

/* Whether `bound` (registry.<name>) is Registry.<name> itself, bound to the
 * registry: not overridden, not wrapped. */
static int
registry_method(CCore *core, PyObject *registry_class, PyObject *bound, const char *name)
{
    PyObject *func = get_attr(registry_class, name);
    int same = func != NULL && PyMethod_Check(bound) && PyMethod_GET_FUNCTION(bound) == func &&
               PyMethod_GET_SELF(bound) == core->registry;
    Py_XDECREF(func);
    return same;
}

/* The registry's attribute `name` (new reference) when it is of exact `type`. */
static PyObject *
registry_table(CCore *core, const char *name, PyTypeObject *type)
{
    PyObject *table = get_attr(core->registry, name);
    if (table != NULL && Py_TYPE(table) != type) {
        Py_CLEAR(table);
    }
    return table;
}

/* When registry.string and registry.args are Registry's own methods, take the
 * registry's string and argument tuple tables (see table_append); else every new
 * text or tuple goes through the method. */
static void
share_registry_tables(CCore *core)
{
    PyObject *module = PyImport_ImportModule("otel_tracer.record.registry");
    PyObject *cls = module != NULL ? get_attr(module, "Registry") : NULL;
    PyObject *lock = cls != NULL ? get_attr(core->registry, "_lock") : NULL;
    PyObject *locked = lock != NULL ? get_attr(lock, "locked") : NULL;
    if (locked != NULL && PyCallable_Check(locked)) {
        core->lock_locked = Py_NewRef(locked);
        if (registry_method(core, cls, core->reg_string, "string")) {
            core->string_ids = registry_table(core, "_string_ids", &PyDict_Type);
            core->strings = registry_table(core, "strings", &PyList_Type);
        }
        if (registry_method(core, cls, core->reg_args, "args")) {
            core->arg_ids = registry_table(core, "_arg_ids", &PyDict_Type);
            core->arg_list = registry_table(core, "arg_tuples", &PyList_Type);
        }
    }
    PyErr_Clear();
    if (core->string_ids == NULL || core->strings == NULL) {
        Py_CLEAR(core->string_ids);
        Py_CLEAR(core->strings);
    }
    if (core->arg_ids == NULL || core->arg_list == NULL) {
        Py_CLEAR(core->arg_ids);
        Py_CLEAR(core->arg_list);
    }
    Py_XDECREF(module);
    Py_XDECREF(cls);
    Py_XDECREF(lock);
    Py_XDECREF(locked);
}

static PyObject *
ccore_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"registry", "options", NULL};
    PyObject *registry, *options;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:CCore", keywords, &registry, &options)) {
        return NULL;
    }
    CCore *core = (CCore *)type->tp_alloc(type, 0);
    if (core == NULL) {
        return NULL;
    }
    core->registry = Py_NewRef(registry);
    core->options = Py_NewRef(options);
    for (int i = 0; i < 3; i++) {
        core->constants[i] = -1;
    }
    for (int i = 0; i < SMALL_INT_MAX - SMALL_INT_MIN; i++) {
        core->small_ints[i] = -1;
    }
    int error = 0;
    core->record_externals = option_flag(options, "external_calls", &error);
    core->capture = option_flag(options, "capture_args", &error);
    core->max_depth = option_limit(options, "max_depth", &error);
    core->max_calls = option_limit(options, "max_calls", &error);
    PyObject *summary = error || summary_names() < 0
                            ? NULL
                            : PyImport_ImportModule("otel_tracer.record.summary");
    if (summary != NULL) {
        core->summarize = get_attr(summary, "summarize");
        core->summarize_self = get_attr(summary, "summarize_self");
        core->type_summary = get_attr(summary, "type_summary");
        Py_DECREF(summary);
    }
    PyObject *errors = PyErr_Occurred() ? NULL : PyImport_ImportModule("otel_tracer.record.program_errors");
    if (errors != NULL) {
        core->program_error = get_attr(errors, "program_exception");
        Py_DECREF(errors);
    }
    PyObject *displaced = PyErr_Occurred() ? NULL : PyImport_ImportModule("otel_tracer.record.displaced");
    if (displaced != NULL) {
        core->warn_displaced = get_attr(displaced, "warn");
        Py_DECREF(displaced);
    }
    core->events = events_new();
    core->value_cache = PyDict_New();
    core->text_cache = PyDict_New();
    core->keep = PyList_New(0);
    core->reg_code = get_attr(registry, "code");
    core->reg_cfunction = get_attr(registry, "cfunction");
    core->reg_string = get_attr(registry, "string");
    core->reg_args = get_attr(registry, "args");
    core->reg_thread = get_attr(registry, "thread");
    core->reg_new_slot = get_attr(registry, "new_exception_slot");
    core->reg_fill_slots = get_attr(registry, "fill_exception_slots");
    core->reg_task = get_attr(registry, "task");
    if (PyErr_Occurred()) {
        Py_DECREF(core);
        return NULL;
    }
    share_registry_tables(core);
    return (PyObject *)core;
}

static int
ccore_traverse(CCore *core, visitproc visit, void *arg)
{
    Py_VISIT(core->registry);
    Py_VISIT(core->options);
    Py_VISIT(core->reg_code);
    Py_VISIT(core->reg_cfunction);
    Py_VISIT(core->reg_string);
    Py_VISIT(core->reg_args);
    Py_VISIT(core->reg_thread);
    Py_VISIT(core->reg_new_slot);
    Py_VISIT(core->reg_task);
    Py_VISIT(core->reg_fill_slots);
    Py_VISIT(core->summarize);
    Py_VISIT(core->program_error);
    Py_VISIT(core->warn_displaced);
    Py_VISIT(core->summarize_self);
    Py_VISIT(core->type_summary);
    Py_VISIT(core->string_ids);
    Py_VISIT(core->strings);
    Py_VISIT(core->lock_locked);
    Py_VISIT(core->arg_ids);
    Py_VISIT(core->arg_list);
    Py_VISIT(core->keep);
    for (size_t i = 0; core->types.entries && i <= core->types.mask; i++) {
        Py_VISIT((PyObject *)core->types.entries[i].k1);
    }
    return 0;
}

static int
ccore_clear(CCore *core)
{
    Py_CLEAR(core->registry);
    Py_CLEAR(core->options);
    Py_CLEAR(core->reg_code);
    Py_CLEAR(core->reg_cfunction);
    Py_CLEAR(core->reg_string);
    Py_CLEAR(core->reg_args);
    Py_CLEAR(core->reg_thread);
    Py_CLEAR(core->reg_new_slot);
    Py_CLEAR(core->reg_task);
    Py_CLEAR(core->reg_fill_slots);
    Py_CLEAR(core->summarize);
    Py_CLEAR(core->program_error);
    Py_CLEAR(core->warn_displaced);
    Py_CLEAR(core->summarize_self);
    Py_CLEAR(core->type_summary);
    Py_CLEAR(core->string_ids);
    Py_CLEAR(core->strings);
    Py_CLEAR(core->lock_locked);
    Py_CLEAR(core->arg_ids);
    Py_CLEAR(core->arg_list);
    PyMem_Free(core->metas.entries); /* its keys and texts are held by keep */
    core->metas.entries = NULL;
    core->metas.mask = core->metas.used = 0;
    PyMem_Free(core->self_names.entries); /* same */
    core->self_names.entries = NULL;
    core->self_names.mask = core->self_names.used = 0;
    Py_CLEAR(core->keep);
    Py_CLEAR(core->start_ts);
    /* Detached first: releasing a type can run code that records. */
    Entry *types = core->types.entries;
    size_t mask = core->types.mask;
    core->types.entries = NULL;
    core->types.mask = core->types.used = 0;
    for (size_t i = 0; types && i <= mask; i++) {
        Py_XDECREF((PyObject *)types[i].k1);
    }
    PyMem_Free(types);
    return 0;
}

static void
ccore_dealloc(CCore *core)
{
    PyObject_GC_UnTrack(core);
    if (core->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)core);
    }
    ccore_clear(core);
    Py_XDECREF(core->events);
    Py_XDECREF(core->value_cache);
    Py_XDECREF(core->text_cache);
    for (size_t i = 0; core->codes.entries && i <= core->codes.mask; i++) {
        if (core->codes.entries[i].k1 != NULL) {
            free_code_info(core->codes.entries[i].p);
        }
    }
    PyMem_Free(core->codes.entries);
    PyMem_Free(core->cfunctions.entries);
    PyMem_Free(core->self_types.entries);
    tuple_table_clear(&core->arg_tuples);
    int_table_clear(&core->int_cache);
    Py_TYPE(core)->tp_free((PyObject *)core);
}

static PyObject *
ccore_forget(CCore *core, PyObject *args)
{
    long long strings, arg_tuples;
    if (!PyArg_ParseTuple(args, "LL", &strings, &arg_tuples)) {
        return NULL;
    }
    core->strings_base = strings;
    core->args_base = arg_tuples;
    PyDict_Clear(core->value_cache);
    int_table_clear(&core->int_cache);
    PyDict_Clear(core->text_cache);
    tuple_table_clear(&core->arg_tuples);
    Py_RETURN_NONE;
}

static PyObject *
ccore_clock(CCore *core, PyObject *unused)
{
    return PyLong_FromLongLong(now_ns());
}

static PyObject *
ccore_start(CCore *core, PyObject *unused)
{
    if (core->registry == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "CCore was cleared");
        return NULL;
    }
    ThreadState *ts = thread_state_new(core);
    PyObject *bootstrap = ts ? get_attr((PyObject *)core, "_bootstrap") : NULL;
    core->active = bootstrap != NULL;
    if (core->active && set_threading_profile(bootstrap) < 0) {
        core->active = 0;
    }
    if (core->active) {
        PyEval_SetTrace(trace_hook, (PyObject *)ts);
        PyEval_SetProfile(profile_hook, (PyObject *)ts);
        Py_XSETREF(core->start_ts, (ThreadState *)Py_NewRef(ts));
        core->start_thread = PyThread_get_thread_ident();
        core->start_pid = (long)getpid();
    }
    Py_XDECREF(bootstrap);
    Py_XDECREF(ts);
    if (!core->active) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* displaced.warn(displaced, start_pid): a warning line per hook the program
 * replaced; nothing in a forked child, which stops its copy of the recording. */
static int
warn_displaced(CCore *core)
{
    if ((long)getpid() != core->start_pid || core->warn_displaced == NULL) {
        return 0;
    }
    PyObject *counts = displaced_counts(core);
    PyObject *result =
        counts ? PyObject_CallFunction(core->warn_displaced, "Ol", counts, core->start_pid)
               : NULL;
    Py_XDECREF(counts);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

static PyObject *
ccore_stop(CCore *core, PyObject *unused)
{
    core->active = 0;
    ThreadState *start = core->start_ts; /* taken: the warning comes once */
    core->start_ts = NULL;
    if (start != NULL && PyThread_get_thread_ident() == core->start_thread) {
        check_hooks(start); /* stopped from the thread that started: still ours? */
    }
    uninstall_hooks();
    int failed = set_threading_profile(Py_None) < 0 || (start != NULL && warn_displaced(core) < 0);
    Py_XDECREF(start);
    if (failed) {
        return NULL;
    }
    return PyLong_FromSsize_t(core->events->size);
}

/* threading.setprofile hook: a new thread's first event installs its C hooks,
 * then is recorded like any other (as pycore's _bootstrap; the trace function
 * has not seen this first call, so its frame is not marked). */
static PyObject *
ccore_bootstrap(CCore *core, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyFrame_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "_bootstrap(frame, event, arg)");
        return NULL;
    }
    ThreadState *ts = core->active && core->registry ? thread_state_new(core) : NULL;
    if (ts == NULL) {
        /* stopped meanwhile, or the thread cannot be registered: not recorded
         * (this hook runs inside a Python-level profile call, which would
         * otherwise raise into the thread) */
        PyErr_Clear();
        PyEval_SetProfile(NULL, NULL);
        Py_RETURN_NONE;
    }
    /* A trace function the thread already has is the program's (threading.settrace;
     * coverage.py measures threads so): it stays, and counts as replacing ours. */
    if (PyThreadState_Get()->c_tracefunc == NULL) {
        PyEval_SetTrace(trace_hook, (PyObject *)ts);
    }
    PyEval_SetProfile(profile_hook, (PyObject *)ts);
    check_hooks(ts);
    int what = event_code(args[1]);
    if (what >= 0) {
        profile_event(ts, (PyFrameObject *)args[0], what, args[2]);
    }
    Py_DECREF(ts); /* an exception kept for the program waits for the next event */
    Py_RETURN_NONE;
}

static PyObject *
ccore_get_events(CCore *core, void *closure)
{
    return Py_NewRef(core->events);
}

static PyObject *
ccore_get_dropped(CCore *core, void *closure)
{
    return PyLong_FromLongLong(core->dropped);
}

static PyObject *
ccore_get_displaced(CCore *core, void *closure)
{
    return displaced_counts(core);
}

static PyObject *
ccore_get_registry(CCore *core, void *closure)
{
    return Py_NewRef(core->registry ? core->registry : Py_None);
}

static PyObject *
ccore_get_options(CCore *core, void *closure)
{
    return Py_NewRef(core->options ? core->options : Py_None);
}

/* For the tests (tests/test_csummary.py): the string index value_index records
 * for `value` as an argument, on a thread state of its own; -1 when unknown. */
static PyObject *
ccore_summarize(CCore *core, PyObject *value)
{
    if (core->registry == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "CCore was cleared");
        return NULL;
    }
    ThreadState *ts = thread_state_alloc(core, 0);
    if (ts == NULL) {
        return NULL;
    }
    int64_t index = value_index(ts, value);
    PyObject *interrupt = ts->interrupt;
    ts->interrupt = NULL;
    Py_DECREF(ts);
    if (interrupt != NULL) {
        raise_interrupt(interrupt);
        return NULL;
    }
    return PyLong_FromLongLong(index);
}

static PyMethodDef ccore_methods[] = {
    {"_summarize", (PyCFunction)ccore_summarize, METH_O,
     "The string index of value's summary as an argument (for the tests)."},
    {"clock", (PyCFunction)ccore_clock, METH_NOARGS, "The core's monotonic clock in ns."},
    {"start", (PyCFunction)ccore_start, METH_NOARGS,
     "Install the hooks on this thread and on threads started from now on."},
    {"stop", (PyCFunction)ccore_stop, METH_NOARGS,
     "Remove the hooks; returns the number of event words recorded."},
    {"forget", (PyCFunction)ccore_forget, METH_VARARGS,
     "forget(strings, args): the registry let go of its streamed strings and argument "
     "tuples: strings[0] is now string `strings`, arg_tuples[0] tuple `args`; empty "
     "the caches of values and argument tuples "
     "(call holding registry._lock)."},
    {"_bootstrap", (PyCFunction)(void (*)(void))ccore_bootstrap, METH_FASTCALL,
     "First event of a new thread: give it its own hooks."},
    {NULL},
};

static PyGetSetDef ccore_getset[] = {
    {"events", (getter)ccore_get_events, NULL, "The recording (buffer of int64 words).", NULL},
    {"dropped", (getter)ccore_get_dropped, NULL, "Calls not recorded past max_calls.", NULL},
    {"displaced", (getter)ccore_get_displaced, NULL,
     "Threads whose sys.setprofile / sys.settrace hook the program replaced.", NULL},
    {"registry", (getter)ccore_get_registry, NULL, NULL, NULL},
    {"options", (getter)ccore_get_options, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject CCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "otel_tracer.record._ctracer.CCore",
    .tp_doc = "CCore(registry, options): records like otel_tracer.record.pycore.PythonCore, in C.",
    .tp_basicsize = sizeof(CCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_new = ccore_new,
    .tp_dealloc = (destructor)ccore_dealloc,
    .tp_traverse = (traverseproc)ccore_traverse,
    .tp_clear = (inquiry)ccore_clear,
    .tp_weaklistoffset = offsetof(CCore, weakrefs),
    .tp_methods = ccore_methods,
    .tp_getset = ccore_getset,
};

#if PY_VERSION_HEX >= 0x030C0000
#include "_cmoncore.h" /* the sys.monitoring core: MonCoreType */
#endif

/* ---- Module ----------------------------------------------------------- */

static PyObject *
mark_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_RETURN_NONE;
}

static PyMethodDef mark_def = {
    "_frame_mark", (PyCFunction)(void (*)(void))mark_call, METH_FASTCALL,
    "Marks frames in scope for otel_tracer's C core; does nothing when called."};

static int
load_opcodes(void)
{
    PyObject *dis = PyImport_ImportModule("dis");
    PyObject *opmap = dis ? get_attr(dis, "opmap") : NULL;
    Py_XDECREF(dis);
    if (opmap == NULL) {
        return -1;
    }
    struct {
        const char *name;
        int *op;
    } wanted[] = {{"RESUME", &op_resume},
                  {"RETURN_VALUE", &op_return_value},
                  {"RETURN_CONST", &op_return_const},
                  {"YIELD_VALUE", &op_yield_value},
                  {"YIELD_FROM", &op_yield_from}};
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        PyObject *op = PyMapping_GetItemString(opmap, wanted[i].name);
        if (op == NULL) {
            PyErr_Clear(); /* not in this version */
            continue;
        }
        *wanted[i].op = (int)PyLong_AsLong(op);
        Py_DECREF(op);
    }
    Py_DECREF(opmap);
    return PyErr_Occurred() ? -1 : 0;
}

/* The class attribute `name`: the trace metadata's core name. */
static int
set_core_name(PyTypeObject *type, const char *name)
{
    PyObject *text = PyUnicode_FromString(name);
    if (text == NULL || PyDict_SetItemString(type->tp_dict, "name", text) < 0) {
        Py_XDECREF(text);
        return -1;
    }
    Py_DECREF(text);
    PyType_Modified(type);
    return 0;
}

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "otel_tracer.record._ctracer",
    .m_doc = "The C recording core (see otel_tracer/record/pycore.py for its reference).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__ctracer(void)
{
#ifdef TSC_CLOCK
    tsc_init();
#endif
    if (version_probe == NULL &&
        (version_probe = PyUnicode_InternFromString("__otel_tracer_version_probe__")) == NULL) {
        return NULL;
    }
    if (load_opcodes() < 0 || PyType_Ready(&EventsType) < 0 ||
        PyType_Ready(&ThreadStateType) < 0 || PyType_Ready(&CCoreType) < 0 ||
        set_core_name(&CCoreType, "c") < 0) {
        return NULL;
    }
    if (frame_mark == NULL && (frame_mark = PyCFunction_New(&mark_def, NULL)) == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObject(module, "CCore", Py_NewRef(&CCoreType)) < 0) {
        Py_DECREF(&CCoreType);
        Py_DECREF(module);
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (PyType_Ready(&MonCoreType) < 0 || set_core_name(&MonCoreType, "c-monitoring") < 0 ||
        PyModule_AddObject(module, "MonCore", Py_NewRef(&MonCoreType)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
#endif
    return module;
}
