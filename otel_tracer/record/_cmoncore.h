/* The C sys.monitoring (PEP 669) core, CPython 3.12+: records exactly what
 * otel_tracer/record/moncore.py records (read that first: the decisions below mirror
 * its callbacks and _Thread handlers one for one), with C callbacks.
 *
 * Part of _ctracer.c's translation unit (included from it, 3.12+ only): it
 * shares the profile-API core's event buffer, classification and interning
 * caches (classify, classify_cfunction, capture_arguments, value_index), its
 * ThreadState (the entry stack: markers and frames) and its error handling.
 * MonCore is a subtype of CCore: forget(), clock(), events, dropped, registry
 * and options are CCore's.
 *
 * sys.monitoring calls each callback (a METH_FASTCALL builtin whose self is the
 * core) with the code object, the instruction offset in bytes and the event's
 * arguments, in the frame that runs that code: PyThreadState_GetFrame() gives it, as
 * sys._getframe(1) does in moncore.py. CPython fires no events for code run
 * inside a callback (registry calls, summaries). A callback that raises makes
 * the instruction that fired its event raise, so an exception a signal handler
 * raised inside a registry call (kept by failed()) is raised at the end of the
 * callback, once the event is recorded: a PY_START that raises unwinds the new
 * frame (its PY_UNWIND closes the call), a PY_RETURN that raises raises in the
 * frame after its return is recorded (its PY_UNWIND then finds no entry), a
 * CALL that raises makes no call (the RAISE that follows closes its entry).
 *
 * Callbacks are global: a thread finds its ThreadState in `threads`, keyed by
 * its PyThreadState and that state's unique id (a dead thread's PyThreadState
 * may be reused by a new one), with a one-entry cache in front.
 */

/* Stack markers as moncore.py orders them: IN_SCOPE and DROPPED are open to
 * scope (moncore's `< EXTERNAL_PY`); those two, EXTERNAL_PY and SUPPRESSED are a
 * frame's own entry (moncore's `<= SUPPRESSED`). Unrecorded library frames get
 * no entry, and IGNORED is only the bottom of an empty stack. */
static inline int
is_open(int marker)
{
    return marker == IN_SCOPE || marker == DROPPED;
}

static inline int
is_own_entry(int marker)
{
    return is_open(marker) || marker == EXTERNAL_PY || marker == SUPPRESSED;
}

static inline PyObject *
top_frame(ThreadState *ts)
{
    return ts->n_stack ? ts->frames[ts->n_stack - 1] : NULL;
}

typedef struct {
    CCore base;
    int tool;                /* the sys.monitoring tool id held, -1 when none */
    int scope_events;        /* local events of in-scope code */
    int return_events;       /* local events of library code called from scope */
    int64_t open_threads;    /* threads whose innermost entry is open to scope */
    PyObject *disable;       /* sys.monitoring.DISABLE */
    PyObject *missing;       /* sys.monitoring.MISSING */
    PyObject *set_local;     /* sys.monitoring.set_local_events */
    PyObject *scope;         /* registry.scope */
    PyObject *moncore;       /* otel_tracer.record.moncore, imported at construction */
    PyObject *is_library;    /* moncore.file_is_library */
    PyObject *recorded;      /* moncore.recorded_thread */
    PyObject *first_resume;  /* moncore.first_resume */
    PyObject *before;        /* threads running at start (set) */
    PyObject *local_codes;   /* code objects given local events (list) */
    PyObject *registered;    /* events with a callback (list of ints) */
    unsigned long starter;   /* ident of the thread that started recording */
    PtrTable files;          /* co_filename (strong) -> a: 1 library, 0 in scope */
    PtrTable threads;        /* (PyThreadState, its id) -> ThreadState (strong) */
    PtrTable open_codes;     /* library code -> a: its open EXTERNAL_PY entries */
    PyThreadState *last_tstate; /* one-entry cache of `threads` */
    uint64_t last_id;
    ThreadState *last_ts;
} MonCore;

static PyTypeObject MonCoreType;

/* ---- Lookups ------------------------------------------------------------ */

/* An error with no thread state to keep it in: an Exception is ours (dropped,
 * the event is not recorded) unless a signal handler of the program raised it
 * (program_errors.py); anything else is the program's, raised from the
 * callback without the tool's frames. */
static PyObject *
mon_fail(MonCore *mc)
{
    PyObject *exc = PyErr_GetRaisedException();
    if (exc == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *kept = mc->base.program_error ? PyObject_CallOneArg(mc->base.program_error, exc) : NULL;
    if (kept == NULL) { /* interrupted again: the first exception decides */
        PyErr_Clear();
        kept = PyObject_IsInstance(exc, PyExc_Exception) ? Py_NewRef(Py_None) : Py_NewRef(exc);
        PyErr_Clear();
    }
    Py_DECREF(exc);
    if (kept == Py_None) {
        return kept;
    }
    PyErr_SetRaisedException(kept);
    return NULL;
}

/* moncore's is_library, cached per file name object: 1 out of scope (hidden
 * files too), 0 in scope, -1 with an error set. */
static int
mon_is_library(MonCore *mc, PyCodeObject *code)
{
    PyObject *name = code->co_filename;
    Entry *entry = table_find(&mc->files, name, NULL);
    if (entry != NULL) {
        return (int)entry->a;
    }
    PyObject *result = PyObject_CallFunctionObjArgs(mc->is_library, name, mc->scope, NULL);
    int library = result ? PyObject_IsTrue(result) : -1;
    Py_XDECREF(result);
    if (library < 0) {
        return -1;
    }
    /* Python code ran: look again before adding */
    if (table_find(&mc->files, name, NULL) == NULL &&
        (entry = table_add(&mc->files, name, NULL)) != NULL) {
        entry->a = library;
        Py_INCREF(name);
    }
    return library;
}

/* The state of the thread of `tstate` (new reference), NULL when it has none yet. */
static ThreadState *
mon_find_thread(MonCore *mc, PyThreadState *tstate)
{
    uint64_t id = PyThreadState_GetID(tstate);
    if (tstate != mc->last_tstate || id != mc->last_id) {
        Entry *entry = table_find(&mc->threads, tstate, (const void *)(uintptr_t)id);
        if (entry == NULL) {
            return NULL;
        }
        mc->last_tstate = tstate;
        mc->last_id = id;
        mc->last_ts = entry->p;
    }
    return (ThreadState *)Py_NewRef(mc->last_ts);
}

/* Add the calling thread's state to `threads` (new reference). */
static ThreadState *
mon_add_thread(MonCore *mc, ThreadState *ts)
{
    PyThreadState *tstate = PyThreadState_Get();
    uint64_t id = PyThreadState_GetID(tstate);
    Entry *entry = table_add(&mc->threads, tstate, (const void *)(uintptr_t)id);
    if (entry == NULL) {
        Py_DECREF(ts);
        PyErr_NoMemory();
        return NULL;
    }
    entry->p = Py_NewRef(ts);
    return ts;
}

/* moncore's new_thread: the first in-scope event of a thread. Threads running
 * before recording started get an idle state (no registry entry). */
static ThreadState *
mon_new_thread(MonCore *mc)
{
    PyObject *result = PyObject_CallFunction(mc->recorded, "kO", mc->starter, mc->before);
    int recorded = result ? PyObject_IsTrue(result) : -1;
    Py_XDECREF(result);
    if (recorded < 0) {
        return NULL;
    }
    ThreadState *ts = recorded ? thread_state_new(&mc->base) : thread_state_alloc(&mc->base, 0);
    if (ts == NULL) {
        return NULL;
    }
    ts->idle = !recorded;
    if (!mc->base.active) {
        return ts; /* stopped during those calls: stop() let go of the table */
    }
    return mon_add_thread(mc, ts);
}

/* The frame that runs the event's code (borrowed: it runs, so it lives). One
 * PyThreadState_Get() per callback: it is a thread-local read through
 * __tls_get_addr from an extension module. */
static inline PyFrameObject *
mon_frame(PyThreadState *tstate)
{
    PyFrameObject *frame = PyThreadState_GetFrame(tstate);
    Py_XDECREF(frame);
    return frame;
}

static inline int
mon_recording(ThreadState *ts)
{
    return !ts->idle && !ts->broken;
}

/* The end of a callback: the program's kept exception is raised from it. */
static PyObject *
mon_exit(ThreadState *ts, PyObject *answer)
{
    PyObject *exc = NULL;
    if (ts != NULL) {
        exc = ts->interrupt;
        ts->interrupt = NULL;
        Py_DECREF(ts);
    }
    if (exc != NULL) {
        raise_interrupt(exc);
        return NULL;
    }
    return Py_NewRef(answer);
}

/* ---- Code objects ------------------------------------------------------- */

/* Give a code object its local events, once (moncore's scope_fid and
 * watch_returns); set at its PY_START, they hold for that frame too. */
static void
mon_watch(MonCore *mc, ThreadState *ts, CodeInfo *info, int events)
{
    if (info->local_events || mc->tool < 0) {
        return;
    }
    info->local_events = 1;
    if (PyList_Append(mc->local_codes, info->code) < 0) {
        failed(ts);
        return;
    }
    PyObject *result = PyObject_CallFunction(mc->set_local, "iOi", mc->tool, info->code, events);
    if (result == NULL) {
        failed(ts);
    }
    Py_XDECREF(result);
}

/* Whether `code` is in scope (classified so). */
static inline int
mon_in_scope(MonCore *mc, PyCodeObject *code)
{
    Entry *entry = table_find(&mc->base.codes, code, NULL);
    return entry != NULL && ((CodeInfo *)entry->p)->in_scope;
}

static inline int
mon_code_open(MonCore *mc, PyCodeObject *code)
{
    Entry *entry = table_find(&mc->open_codes, code, NULL);
    return entry != NULL && entry->a > 0;
}

/* Count an external call of `code` in or out of open_codes. Its code went
 * through registry.code, which keeps it alive: its address stays its own. */
static void
mon_count_open(MonCore *mc, PyCodeObject *code, int delta)
{
    Entry *entry = table_find(&mc->open_codes, code, NULL);
    if (entry == NULL && delta > 0) {
        entry = table_add(&mc->open_codes, code, NULL);
    }
    if (entry != NULL && entry->a + delta >= 0) {
        entry->a += delta;
    }
}

/* moncore's tracked: whether `frame` may have an entry. */
static int
mon_tracked(MonCore *mc, PyFrameObject *frame)
{
    if (frame == NULL) {
        return 0;
    }
    PyCodeObject *code = frame_code(frame);
    return mon_in_scope(mc, code) || mon_code_open(mc, code);
}

/* ---- The entry stack (moncore's _Thread handlers) ----------------------- */

/* Close the entries above `index`, whose closing events were lost, counting
 * their external calls out of open_codes. */
static void
mon_close_above(MonCore *mc, ThreadState *ts, Py_ssize_t index)
{
    if (index >= ts->n_stack - 1) {
        return; /* the common case: none (and no clock read) */
    }
    for (Py_ssize_t i = index + 1; i < ts->n_stack; i++) {
        if (ts->markers[i] == EXTERNAL_PY) {
            mon_count_open(mc, frame_code((PyFrameObject *)ts->frames[i]), -1);
        }
    }
    close_above(ts, index);
}

/* `frame` runs: close the entries above its own, whose closing events were lost. */
static void
mon_unwind(MonCore *mc, ThreadState *ts, PyFrameObject *frame)
{
    Py_ssize_t index = find_entry(ts, frame, 1);
    if (index >= 0) {
        mon_close_above(mc, ts, index);
    }
}

/* An in-scope frame starts (EV_CALL) or resumes (EV_RESUME). */
static void
mon_enter(MonCore *mc, ThreadState *ts, PyFrameObject *frame, CodeInfo *info, int kind)
{
    CCore *core = &mc->base;
    /* An in-scope callback of a trivial builtin records that builtin (moncore's
     * enter): called by it, thrown into by its throw(), or reached through
     * library code it runs. */
    int opened = top(ts) == TRIVIAL_C && !ts->suppressed &&
                 core->recorded < core->max_calls;
    int entry;
    int64_t head = 0, time = 0, aux = -1;
    if (ts->suppressed || ts->depth + opened >= core->max_depth) {
        entry = SUPPRESSED;
    }
    else if (core->recorded + opened >= core->max_calls) {
        entry = DROPPED;
    }
    else {
        entry = IN_SCOPE;
        head = (kind == EV_CALL ? ts->call_head : ts->resume_head) | info->fid << REF_SHIFT;
        if (kind == EV_CALL && core->capture) {
            aux = capture_arguments(ts, info, frame);
        }
        else if (kind == EV_RESUME && ((PyCodeObject *)info->code)->co_flags & CO_ASYNC) {
            aux = task_index(ts);
        }
        time = now_ns();
    }
    if (opened) {
        open_deferred(ts);
    }
    if (entry == IN_SCOPE) {
        core->recorded++;
        ts->depth++;
    }
    else if (entry == SUPPRESSED) {
        ts->suppressed++;
    }
    else {
        core->dropped++;
    }
    push(ts, entry, frame);
    if (entry == IN_SCOPE) {
        emit(core, head, time, aux);
    }
}

/* A library frame starts or resumes while the innermost entry is open to
 * scope: an external call if that entry's frame started it. */
static void
mon_enter_external(MonCore *mc, ThreadState *ts, PyFrameObject *frame, CodeInfo *info)
{
    CCore *core = &mc->base;
    PyFrameObject *back = PyFrame_GetBack(frame);
    int called = back != NULL && (PyObject *)back == top_frame(ts);
    Py_XDECREF(back);
    if (!called) {
        return; /* started by an unrecorded library frame */
    }
    if (top(ts) == DROPPED || core->recorded >= core->max_calls) {
        core->dropped++;
    }
    else if (ts->depth < core->max_depth) {
        mon_watch(mc, ts, info, mc->return_events); /* its return closes the call */
        core->recorded++;
        ts->depth++;
        push(ts, EXTERNAL_PY, frame);
        mon_count_open(mc, (PyCodeObject *)info->code, 1);
        emit(core, ts->external_head | info->fid << REF_SHIFT, now_ns(), -1);
    }
}

/* A frame returns, yields or unwinds (`value` is then the exception). */
static void
mon_leave(MonCore *mc, ThreadState *ts, PyFrameObject *frame, int kind, PyObject *value)
{
    CCore *core = &mc->base;
    int64_t time = now_ns();
    Py_ssize_t at = ts->n_stack - 1;
    if (at < 0 || ts->frames[at] != (PyObject *)frame || !is_own_entry(ts->markers[at])) {
        at = find_entry(ts, frame, 1);
        if (at < 0) {
            return; /* not recorded: started before recording, or a library frame */
        }
    }
    int marker = ts->markers[at];
    int closes = marker == IN_SCOPE || marker == EXTERNAL_PY;
    int64_t head = 0, aux = -1;
    if (closes && kind == EV_RAISE) {
        head = ts->raise_head;
        aux = new_slot(ts, frame, value, 0);
        if (aux >= 0) {
            fill_slots(ts, &aux, 1, value);
        }
    }
    else if (closes) {
        head = kind == EV_YIELD ? ts->yield_head : ts->return_head;
        aux = core->capture ? value_index(ts, value) : -1;
    }
    mon_close_above(mc, ts, at);
    pop(ts);
    if (closes) {
        ts->depth--;
        if (marker == EXTERNAL_PY) {
            mon_count_open(mc, frame_code(frame), -1);
        }
        emit(core, head, time, aux);
    }
    else if (marker == SUPPRESSED) {
        ts->suppressed--;
    }
}

/* A builtin called by the frame of the innermost (open) entry. */
static void
mon_c_call(MonCore *mc, ThreadState *ts, int caller, int64_t fid, int trivial)
{
    CCore *core = &mc->base;
    if (fid < 0) {
        return;
    }
    if (caller == DROPPED || core->recorded >= core->max_calls) {
        if (!trivial) {
            core->dropped++;
        }
    }
    else if (ts->depth < core->max_depth) {
        PyFrameObject *frame = (PyFrameObject *)top_frame(ts);
        if (!trivial) {
            core->recorded++;
            ts->depth++;
            push(ts, EXTERNAL_C, frame);
            emit(core, ts->external_head | fid << REF_SHIFT, now_ns(), -1);
        }
        else if (reserve((void **)&ts->deferred, &ts->deferred_capacity, ts->n_deferred + 1,
                         sizeof(Deferred)) < 0) {
            ts->broken = 1;
        }
        else {
            push(ts, TRIVIAL_C, frame);
            ts->deferred[ts->n_deferred++] = (Deferred){fid, now_ns()};
        }
    }
}

/* The builtin called by `frame` returned or raised: close its entry (and the
 * ones above it, whose closing events were lost). */
static void
mon_c_leave(MonCore *mc, ThreadState *ts, PyFrameObject *frame, int raised)
{
    Py_ssize_t at = ts->n_stack - 1;
    if (at < 0) {
        return;
    }
    if (ts->markers[at] == TRIVIAL_C && ts->frames[at] == (PyObject *)frame) {
        pop(ts); /* the common case, nothing to emit */
        ts->n_deferred--;
        return;
    }
    if (ts->frames[at] != (PyObject *)frame && (at = find_entry(ts, frame, 0)) < 0) {
        return;
    }
    int marker = ts->markers[at];
    int64_t slot = marker == EXTERNAL_C && raised ? new_slot(ts, NULL, NULL, 0) : -1;
    mon_close_above(mc, ts, at);
    if (marker == EXTERNAL_C) {
        pop(ts);
        ts->depth--;
        emit(&mc->base, raised ? ts->raise_head : ts->return_head, now_ns(), slot);
        if (slot >= 0) {
            add_pending(ts, slot); /* filled by the RAISE event that follows */
        }
    }
    else if (marker == TRIVIAL_C) {
        pop(ts);
        ts->n_deferred--;
    }
}

/* ---- Callbacks ---------------------------------------------------------- */

/* The offset of the event (a small int) is compared with first_resume: a
 * PY_THROW before it enters a generator that never ran (a call). */
static int
mon_throw_kind(MonCore *mc, ThreadState *ts, CodeInfo *info, PyObject *offset)
{
    if (info->first_resume < 0) {
        info->first_resume = as_index(ts, PyObject_CallOneArg(mc->first_resume, info->code));
    }
    Py_ssize_t at = PyLong_AsSsize_t(offset);
    if (at == -1 && PyErr_Occurred()) {
        PyErr_Clear();
    }
    return at < info->first_resume ? EV_CALL : EV_RESUME;
}

/* An in-scope frame starts or resumes (kind -1: thrown into, moncore's on_throw). */
static PyObject *
mon_scope_enter(MonCore *mc, PyCodeObject *code, int kind, PyObject *offset)
{
    PyThreadState *tstate = PyThreadState_Get();
    PyFrameObject *frame = mon_frame(tstate);
    ThreadState *ts = mon_find_thread(mc, tstate);
    if (frame == NULL || (ts == NULL && (ts = mon_new_thread(mc)) == NULL)) {
        return frame == NULL ? Py_NewRef(Py_None) : mon_fail(mc);
    }
    CodeInfo *info = classify(ts, code, frame);
    if (info != &unclassified && info->in_scope) {
        mon_watch(mc, ts, info, mc->scope_events);
        if (mon_recording(ts)) {
            if (kind < 0) {
                kind = mon_throw_kind(mc, ts, info, offset);
            }
            int was_open = is_open(top(ts));
            PyFrameObject *back = PyFrame_GetBack(frame);
            if ((PyObject *)back != top_frame(ts) && mon_tracked(mc, back)) {
                mon_unwind(mc, ts, back); /* a signal handler cut closing events short */
            }
            mon_enter(mc, ts, frame, info, kind);
            Py_XDECREF(back);
            mc->open_threads += is_open(top(ts)) - was_open;
        }
    }
    return mon_exit(ts, Py_None);
}

/* A library frame starts or resumes while some thread's innermost entry is
 * open to scope: an external call if it is this thread's and that entry's
 * frame started it. The import machinery is never shown: DISABLE (not for
 * PY_THROW, which cannot be disabled). */
static PyObject *
mon_library_enter(MonCore *mc, PyCodeObject *code, int may_disable)
{
    PyThreadState *tstate = PyThreadState_Get();
    ThreadState *ts = mon_find_thread(mc, tstate);
    if (ts == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *answer = Py_None;
    /* the frame only when it may be an external call: library code called from
     * library code makes no frame object */
    PyFrameObject *frame = mon_recording(ts) && is_open(top(ts)) ? mon_frame(tstate) : NULL;
    if (frame != NULL) {
        CodeInfo *info = classify(ts, code, frame);
        if (info != &unclassified && info->fid < 0) {
            answer = may_disable ? mc->disable : Py_None;
        }
        else if (info != &unclassified) {
            int was_open = is_open(top(ts));
            mon_enter_external(mc, ts, frame, info);
            mc->open_threads += is_open(top(ts)) - was_open;
        }
    }
    return mon_exit(ts, answer);
}

/* PY_START, PY_RESUME (kind EV_CALL, EV_RESUME) and PY_THROW (kind -1). Library
 * locations that can never be an external call return DISABLE: all of them when
 * external calls are not recorded. */
static PyObject *
mon_on_enter(MonCore *mc, PyObject *const *args, Py_ssize_t nargs, int kind)
{
    CCore *core = &mc->base;
    if (nargs < 2 || !PyCode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "callback(code, offset, ...)");
        return NULL;
    }
    if (!core->active) {
        Py_RETURN_NONE;
    }
    PyCodeObject *code = (PyCodeObject *)args[0];
    int library = mon_is_library(mc, code);
    if (library < 0) {
        return mon_fail(mc);
    }
    if (!library) {
        return mon_scope_enter(mc, code, kind, args[1]);
    }
    if (mc->open_threads > 0 && core->record_externals) {
        return mon_library_enter(mc, code, kind >= 0);
    }
    return Py_NewRef(core->record_externals || kind < 0 ? Py_None : mc->disable);
}

/* PY_RETURN, PY_YIELD, PY_UNWIND (kind EV_RETURN, EV_YIELD, EV_RAISE). */
static PyObject *
mon_on_leave(MonCore *mc, PyObject *const *args, Py_ssize_t nargs, int kind)
{
    if (nargs < 3 || !PyCode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "callback(code, offset, value)");
        return NULL;
    }
    PyCodeObject *code = (PyCodeObject *)args[0];
    if (!mc->base.active) {
        Py_RETURN_NONE;
    }
    int in_scope = mon_in_scope(mc, code);
    if (!in_scope && !mon_code_open(mc, code)) {
        Py_RETURN_NONE;
    }
    PyThreadState *tstate = PyThreadState_Get();
    ThreadState *ts = mon_find_thread(mc, tstate);
    if (ts == NULL) {
        Py_RETURN_NONE; /* a thread without in-scope calls */
    }
    PyFrameObject *frame = mon_frame(tstate);
    /* library code: only the frame of the innermost entry ends an external call */
    if (mon_recording(ts) && frame != NULL &&
        (in_scope || (top(ts) == EXTERNAL_PY && top_frame(ts) == (PyObject *)frame))) {
        int was_open = is_open(top(ts));
        mon_leave(mc, ts, frame, kind, args[2]);
        mc->open_threads += is_open(top(ts)) - was_open;
    }
    return mon_exit(ts, Py_None);
}

/* moncore's on_call for a builtin (or a method descriptor bound to arg0, as
 * the profile API reports it), called by this thread's innermost frame. */
static void
mon_builtin_call(MonCore *mc, ThreadState *ts, PyThreadState *tstate, PyObject *func,
                 PyObject *arg0)
{
    int caller = top(ts);
    if (!is_open(caller)) {
        PyFrameObject *frame = mon_frame(tstate);
        if (!is_c_call(caller) || top_frame(ts) != (PyObject *)frame) {
            return; /* not a C call of this frame (it has no entry) */
        }
        /* A C call of this very frame is still open: its closing event was lost
         * (interrupted callbacks). Close it, as PythonCore does. */
        mon_c_leave(mc, ts, frame, 0);
        caller = top(ts);
        if (!is_open(caller)) {
            return;
        }
    }
    int64_t fid;
    int trivial;
    if (Py_IS_TYPE(func, &PyMethodDescr_Type)) {
        /* keyed as the bound method would be: bound only when not cached */
        PyMethodDef *def = ((PyMethodDescrObject *)func)->d_method;
        if (!cached_cfunction(&mc->base, def, cfunction_owner(arg0), &fid, &trivial)) {
            PyObject *bound = Py_TYPE(func)->tp_descr_get(func, arg0, (PyObject *)Py_TYPE(arg0));
            if (bound == NULL) {
                PyErr_Clear(); /* wrong self type: the call itself will raise */
                return;
            }
            int error = classify_cfunction(ts, bound, &fid, &trivial);
            Py_DECREF(bound);
            if (error < 0) {
                return;
            }
        }
    }
    else if (classify_cfunction(ts, func, &fid, &trivial) < 0) {
        return;
    }
    mon_c_call(mc, ts, caller, fid, trivial);
}

/* CALL at an in-scope call site: builtin functions and method descriptors are
 * the profile API's 'c_call'. */
static PyObject *
mon_on_call(MonCore *mc, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 4) {
        PyErr_SetString(PyExc_TypeError, "callback(code, offset, callable, arg0)");
        return NULL;
    }
    PyObject *func = args[2], *arg0 = args[3];
    if (!mc->base.active ||
        (Py_IS_TYPE(func, &PyMethodDescr_Type) ? arg0 == mc->missing : !PyCFunction_Check(func))) {
        Py_RETURN_NONE;
    }
    PyThreadState *tstate = PyThreadState_Get();
    ThreadState *ts = mon_find_thread(mc, tstate);
    if (ts == NULL) {
        Py_RETURN_NONE;
    }
    if (mon_recording(ts)) {
        int was_open = is_open(top(ts));
        mon_builtin_call(mc, ts, tstate, func, arg0);
        mc->open_threads += is_open(top(ts)) - was_open;
    }
    return mon_exit(ts, Py_None);
}

/* C_RETURN, C_RAISE: close the builtin's entry, if it has one. */
static PyObject *
mon_on_c_leave(MonCore *mc, int raised)
{
    if (!mc->base.active) {
        Py_RETURN_NONE;
    }
    PyThreadState *tstate = PyThreadState_Get();
    ThreadState *ts = mon_find_thread(mc, tstate);
    if (ts == NULL) {
        Py_RETURN_NONE;
    }
    PyFrameObject *frame = mon_frame(tstate);
    if (mon_recording(ts) && is_c_call(top(ts)) && frame != NULL) {
        int was_open = is_open(top(ts));
        mon_c_leave(mc, ts, frame, raised);
        mc->open_threads += is_open(top(ts)) - was_open;
    }
    return mon_exit(ts, Py_None);
}

/* RAISE: the exception is in `code`'s frame, which runs again, so entries above
 * its own are over: a C call it made raised (this is its exception: C_RAISE
 * does not give it), or the exception came from one of our callbacks and cut
 * an update short. Then the slots of raised C calls get it. */
static PyObject *
mon_on_raise(MonCore *mc, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || !PyCode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "callback(code, offset, exception)");
        return NULL;
    }
    if (!mc->base.active) {
        Py_RETURN_NONE;
    }
    PyCodeObject *code = (PyCodeObject *)args[0];
    PyThreadState *tstate = PyThreadState_Get();
    ThreadState *ts = mon_find_thread(mc, tstate);
    if (ts == NULL) {
        Py_RETURN_NONE;
    }
    if (mon_recording(ts) && ts->n_stack && (mon_in_scope(mc, code) || mon_code_open(mc, code))) {
        PyFrameObject *frame = mon_frame(tstate);
        int was_open = is_open(top(ts));
        if (frame != NULL && top_frame(ts) != (PyObject *)frame) {
            mon_unwind(mc, ts, frame);
        }
        else if (frame != NULL && is_c_call(top(ts))) {
            mon_c_leave(mc, ts, frame, 1);
        }
        mc->open_threads += is_open(top(ts)) - was_open;
    }
    if (ts->n_pending) {
        Py_ssize_t n = ts->n_pending;
        ts->n_pending = 0;
        fill_slots(ts, ts->pending, n, args[2]);
    }
    return mon_exit(ts, Py_None);
}

#define MON_CALLBACK(name, body)                                                              \
    static PyObject *name(PyObject *self, PyObject *const *args, Py_ssize_t nargs)            \
    {                                                                                         \
        MonCore *mc = (MonCore *)self;                                                        \
        (void)args;                                                                           \
        (void)nargs;                                                                          \
        return body;                                                                          \
    }

MON_CALLBACK(mon_py_start, mon_on_enter(mc, args, nargs, EV_CALL))
MON_CALLBACK(mon_py_resume, mon_on_enter(mc, args, nargs, EV_RESUME))
MON_CALLBACK(mon_py_throw, mon_on_enter(mc, args, nargs, -1))
MON_CALLBACK(mon_py_return, mon_on_leave(mc, args, nargs, EV_RETURN))
MON_CALLBACK(mon_py_yield, mon_on_leave(mc, args, nargs, EV_YIELD))
MON_CALLBACK(mon_py_unwind, mon_on_leave(mc, args, nargs, EV_RAISE))
MON_CALLBACK(mon_raise, mon_on_raise(mc, args, nargs))
MON_CALLBACK(mon_call, mon_on_call(mc, args, nargs))
MON_CALLBACK(mon_c_return, mon_on_c_leave(mc, 0))
MON_CALLBACK(mon_c_raise, mon_on_c_leave(mc, 1))

/* The callbacks, by sys.monitoring.events name; `local`: a local event of
 * in-scope code, `externals`: only when external calls are recorded. */
static struct {
    const char *event;
    int local, externals;
    PyMethodDef def;
} mon_callbacks[] = {
#define MON_DEF(event, local, externals, func)                                                \
    {event, local, externals, {"otel_tracer_" #func, (PyCFunction)(void (*)(void))func,        \
                               METH_FASTCALL, "otel-tracer's " event " callback."}}
    MON_DEF("PY_START", 0, 0, mon_py_start),
    MON_DEF("PY_RESUME", 0, 0, mon_py_resume),
    MON_DEF("PY_THROW", 0, 0, mon_py_throw),
    MON_DEF("PY_UNWIND", 0, 0, mon_py_unwind),
    MON_DEF("RAISE", 0, 0, mon_raise),
    MON_DEF("PY_RETURN", 1, 0, mon_py_return),
    MON_DEF("PY_YIELD", 1, 0, mon_py_yield),
    MON_DEF("CALL", 1, 1, mon_call),
    MON_DEF("C_RETURN", 1, 1, mon_c_return),
    MON_DEF("C_RAISE", 1, 1, mon_c_raise),
#undef MON_DEF
};
#define N_MON_CALLBACKS ((int)(sizeof(mon_callbacks) / sizeof(mon_callbacks[0])))

/* ---- Start and stop ----------------------------------------------------- */

/* sys.monitoring.<name>(args...) (new reference). */
static PyObject *
mon_api(const char *name, const char *format, ...)
{
    PyObject *monitoring = PySys_GetObject("monitoring"); /* borrowed */
    PyObject *func = monitoring ? get_attr(monitoring, name) : NULL;
    if (func == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "sys.monitoring is missing");
        }
        return NULL;
    }
    va_list va;
    va_start(va, format);
    PyObject *args = Py_VaBuildValue(format, va);
    va_end(va);
    PyObject *result = args ? PyObject_Call(func, args, NULL) : NULL;
    Py_XDECREF(args);
    Py_DECREF(func);
    return result;
}

/* Call sys.monitoring.<name>(...) for its effect; -1 with an error set. */
#define MON_DO(name, ...) mon_do(mon_api(name, __VA_ARGS__))
static int
mon_do(PyObject *result)
{
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

/* sys.monitoring.events.<name> (or DISABLE, MISSING from sys.monitoring). */
static PyObject *
mon_constant(const char *owner, const char *name)
{
    PyObject *monitoring = PySys_GetObject("monitoring"); /* borrowed */
    if (monitoring == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "sys.monitoring is missing");
        return NULL;
    }
    if (owner == NULL) {
        return get_attr(monitoring, name);
    }
    PyObject *events = get_attr(monitoring, owner);
    PyObject *value = events ? get_attr(events, name) : NULL;
    Py_XDECREF(events);
    return value;
}

static int
mon_event(const char *name)
{
    PyObject *value = mon_constant("events", name);
    int event = value ? (int)PyLong_AsLong(value) : -1;
    Py_XDECREF(value);
    return event;
}

/* Let go of every thread state (they hold the core: a cycle until now). */
static void
mon_forget_threads(MonCore *mc)
{
    PtrTable threads = mc->threads;
    mc->threads = (PtrTable){NULL, 0, 0};
    mc->last_tstate = NULL;
    mc->last_ts = NULL;
    for (size_t i = 0; threads.entries && i <= threads.mask; i++) {
        if (threads.entries[i].k1 != NULL) {
            Py_DECREF((PyObject *)threads.entries[i].p);
        }
    }
    PyMem_Free(threads.entries);
}

/* Take the tool id's events and callbacks away and free it (stop, or a failed
 * start). Every step is tried; the first error is raised. */
static int
mon_release(MonCore *mc)
{
    int tool = mc->tool;
    mc->tool = -1;
    mc->base.active = 0;
    if (tool < 0) {
        return 0;
    }
    PyObject *exc = NULL;
#define KEEP_FIRST(call)                                                                      \
    if ((call) < 0 && exc == NULL) {                                                          \
        exc = PyErr_GetRaisedException();                                                     \
    }                                                                                         \
    PyErr_Clear()
    KEEP_FIRST(MON_DO("set_events", "(ii)", tool, 0));
    for (Py_ssize_t i = 0; mc->local_codes && i < PyList_GET_SIZE(mc->local_codes); i++) {
        KEEP_FIRST(MON_DO("set_local_events", "(iOi)", tool,
                          PyList_GET_ITEM(mc->local_codes, i), 0));
    }
    for (Py_ssize_t i = 0; mc->registered && i < PyList_GET_SIZE(mc->registered); i++) {
        KEEP_FIRST(MON_DO("register_callback", "(iOO)", tool, PyList_GET_ITEM(mc->registered, i),
                          Py_None));
    }
    KEEP_FIRST(MON_DO("free_tool_id", "(i)", tool));
#undef KEEP_FIRST
    Py_CLEAR(mc->local_codes);
    Py_CLEAR(mc->registered);
    mon_forget_threads(mc);
    if (exc != NULL) {
        PyErr_SetRaisedException(exc);
        return -1;
    }
    return 0;
}

/* The Python helpers and sys.monitoring objects the callbacks use. */
static int
mon_prepare(MonCore *mc)
{
    PyObject *moncore = Py_NewRef(mc->moncore);
    Py_XSETREF(mc->is_library, get_attr(moncore, "file_is_library"));
    Py_XSETREF(mc->recorded, get_attr(moncore, "recorded_thread"));
    Py_XSETREF(mc->first_resume, get_attr(moncore, "first_resume"));
    PyObject *threads_before = get_attr(moncore, "threads_before");
    Py_DECREF(moncore);
    Py_XSETREF(mc->before, threads_before ? PyObject_CallNoArgs(threads_before) : NULL);
    Py_XDECREF(threads_before);
    Py_XSETREF(mc->scope, get_attr(mc->base.registry, "scope"));
    Py_XSETREF(mc->disable, mon_constant(NULL, "DISABLE"));
    Py_XSETREF(mc->missing, mon_constant(NULL, "MISSING"));
    Py_XSETREF(mc->set_local, mon_constant(NULL, "set_local_events"));
    Py_XSETREF(mc->local_codes, PyList_New(0));
    Py_XSETREF(mc->registered, PyList_New(0));
    mc->return_events = mon_event("PY_RETURN") | mon_event("PY_YIELD");
    return PyErr_Occurred() ? -1 : 0;
}

/* moncore.claim_tool_id(): MonitoringUnavailable when every id we may use is taken. */
static int
mon_claim_tool_id(MonCore *mc)
{
    PyObject *claim = get_attr(mc->moncore, "claim_tool_id");
    PyObject *tool = claim ? PyObject_CallNoArgs(claim) : NULL;
    int id = tool ? (int)PyLong_AsLong(tool) : -1;
    Py_XDECREF(claim);
    Py_XDECREF(tool);
    return PyErr_Occurred() ? -1 : id;
}

/* Register the callbacks; returns the global events, -1 on error. */
static int
mon_register(MonCore *mc)
{
    int global = 0;
    mc->scope_events = 0;
    for (int i = 0; i < N_MON_CALLBACKS; i++) {
        if (mon_callbacks[i].externals && !mc->base.record_externals) {
            continue;
        }
        PyObject *event = mon_constant("events", mon_callbacks[i].event);
        PyObject *callback = event ? PyCFunction_New(&mon_callbacks[i].def, (PyObject *)mc) : NULL;
        int error = callback == NULL || PyList_Append(mc->registered, event) < 0 ||
                    MON_DO("register_callback", "(iOO)", mc->tool, event, callback) < 0;
        int bit = error ? 0 : (int)PyLong_AsLong(event);
        Py_XDECREF(event);
        Py_XDECREF(callback);
        if (error || PyErr_Occurred()) {
            return -1;
        }
        if (mon_callbacks[i].local) {
            mc->scope_events |= bit;
        }
        else {
            global |= bit;
        }
    }
    return global;
}

static PyObject *
moncore_start(MonCore *mc, PyObject *unused)
{
    CCore *core = &mc->base;
    if (core->registry == NULL || mc->tool >= 0) {
        PyErr_SetString(PyExc_RuntimeError, "MonCore was cleared or is recording");
        return NULL;
    }
    if (mon_prepare(mc) < 0 || (mc->tool = mon_claim_tool_id(mc)) < 0) {
        return NULL;
    }
    /* DISABLE is sticky per location and tool id, even across free_tool_id:
     * locations an earlier recording (or another holder of this id) disabled
     * must fire again. */
    mc->starter = PyThread_get_thread_ident();
    ThreadState *ts = MON_DO("restart_events", "()") < 0 ? NULL : thread_state_new(core);
    ts = ts ? mon_add_thread(mc, ts) : NULL; /* the starting thread, registered first */
    Py_XDECREF(ts);
    int global = ts ? mon_register(mc) : -1;
    core->active = global >= 0;
    if (global < 0 || MON_DO("set_events", "(ii)", mc->tool, global) < 0) {
        PyObject *exc = PyErr_GetRaisedException();
        mon_release(mc);
        PyErr_Clear();
        PyErr_SetRaisedException(exc);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
moncore_stop(MonCore *mc, PyObject *unused)
{
    if (mon_release(mc) < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(mc->base.events->size);
}

static PyObject *
moncore_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    MonCore *mc = (MonCore *)ccore_new(type, args, kwargs);
    if (mc != NULL) {
        mc->tool = -1;
        /* now, not at start(): the program may by then have hidden this tool's
         * modules (its own otel_tracer) or changed the import system */
        mc->moncore = PyImport_ImportModule("otel_tracer.record.moncore");
        if (mc->moncore == NULL) {
            Py_DECREF(mc);
            return NULL;
        }
    }
    return (PyObject *)mc;
}

static int
moncore_traverse(MonCore *mc, visitproc visit, void *arg)
{
    Py_VISIT(mc->disable);
    Py_VISIT(mc->missing);
    Py_VISIT(mc->set_local);
    Py_VISIT(mc->scope);
    Py_VISIT(mc->moncore);
    Py_VISIT(mc->is_library);
    Py_VISIT(mc->recorded);
    Py_VISIT(mc->first_resume);
    Py_VISIT(mc->before);
    Py_VISIT(mc->local_codes);
    Py_VISIT(mc->registered);
    return ccore_traverse(&mc->base, visit, arg);
}

static int
moncore_clear(MonCore *mc)
{
    Py_CLEAR(mc->disable);
    Py_CLEAR(mc->missing);
    Py_CLEAR(mc->set_local);
    Py_CLEAR(mc->scope);
    Py_CLEAR(mc->moncore);
    Py_CLEAR(mc->is_library);
    Py_CLEAR(mc->recorded);
    Py_CLEAR(mc->first_resume);
    Py_CLEAR(mc->before);
    Py_CLEAR(mc->local_codes);
    Py_CLEAR(mc->registered);
    mon_forget_threads(mc);
    return ccore_clear(&mc->base);
}

static void
moncore_dealloc(MonCore *mc)
{
    PyObject_GC_UnTrack(mc);
    moncore_clear(mc);
    for (size_t i = 0; mc->files.entries && i <= mc->files.mask; i++) {
        Py_XDECREF((PyObject *)mc->files.entries[i].k1);
    }
    PyMem_Free(mc->files.entries);
    PyMem_Free(mc->open_codes.entries);
    ccore_dealloc(&mc->base);
}

static PyObject *
moncore_get_tool(MonCore *mc, void *closure)
{
    return mc->tool < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(mc->tool);
}

static PyMethodDef moncore_methods[] = {
    {"start", (PyCFunction)moncore_start, METH_NOARGS,
     "Start recording this thread and threads started from now on (claims a "
     "sys.monitoring tool id: MonitoringUnavailable when none is free)."},
    {"stop", (PyCFunction)moncore_stop, METH_NOARGS,
     "Stop recording (idempotent); returns the number of event words recorded."},
    {NULL},
};

static PyGetSetDef moncore_getset[] = {
    {"_tool", (getter)moncore_get_tool, NULL, "The sys.monitoring tool id held, or None.", NULL},
    {NULL},
};

static PyTypeObject MonCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "otel_tracer.record._ctracer.MonCore",
    .tp_doc = "MonCore(registry, options): records like otel_tracer.record.moncore.MonitoringCore "
              "(sys.monitoring), in C.",
    .tp_basicsize = sizeof(MonCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_base = &CCoreType,
    .tp_new = moncore_new,
    .tp_dealloc = (destructor)moncore_dealloc,
    .tp_traverse = (traverseproc)moncore_traverse,
    .tp_clear = (inquiry)moncore_clear,
    .tp_methods = moncore_methods,
    .tp_getset = moncore_getset,
};
