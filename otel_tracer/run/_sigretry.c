/* Re-delivery of a signal whose Python handler has not run.

CPython runs a Python signal handler in the main thread at its next check
for pending work. A signal that arrives just before the main thread blocks in
a call that only checks again when interrupted (``sem_wait`` under
``multiprocessing``'s queue locks) is taken, but its handler never runs: the
process, which untraced would have died of SIGTERM, waits forever.

``arm(signum)`` puts a small C handler in front of CPython's for ``signum``
(whose Python handler must be the tracer's). When the signal arrives it
passes it on to CPython's handler and starts a timer that sends the signal
again to the main thread, after 100 ms and then less and less often (up to
once a second), until the Python handler says it ran (``acknowledge()``). A
signal sent again interrupts the blocking call, whose retry loop then runs
the handler. Timer signals that come after the acknowledgement are dropped.

``relay(signum, relay_signum)`` does the same for a signal whose Python
handler stays the default, as the program sees it (``signal.getsignal``): the
tracer's handler is the Python handler of ``relay_signum`` (a real-time signal
nothing else uses), and the C handler in front of ``signum`` passes the signal on
to CPython's handler as ``relay_signum``. ``release(signum)`` puts the default
action back when the C handler is still in front.

A program that installs its own handler for the signal replaces this one
(``signal.signal`` sets CPython's handler again). Linux only (per-thread
timer signals); elsewhere the module is not built and nothing is armed.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define FIRST_DELAY_NS 100000000L
#define LONGEST_DELAY_NS 1000000000L

static int armed_signum = 0;
static int passed_signum = 0;        /* what CPython's handler is told: the signal or its relay */
static pid_t armed_pid = 0;          /* the process the timer belongs to */
static struct sigaction python_action; /* CPython's handler, passed on to */
static timer_t retry_timer;
static volatile sig_atomic_t acknowledged = 1;
static volatile long next_delay_ns = FIRST_DELAY_NS;

static void
start_timer(long delay_ns)
{
    struct itimerspec when;
    memset(&when, 0, sizeof(when));
    when.it_value.tv_sec = delay_ns / 1000000000L;
    when.it_value.tv_nsec = delay_ns % 1000000000L;
    timer_settime(retry_timer, 0, &when, NULL); /* async-signal-safe */
}

static void
pass_on(int signum, siginfo_t *info, void *context)
{
    if (python_action.sa_flags & SA_SIGINFO) {
        python_action.sa_sigaction(passed_signum, info, context);
    }
    else if (python_action.sa_handler != SIG_DFL && python_action.sa_handler != SIG_IGN) {
        python_action.sa_handler(passed_signum);
    }
}

static void
on_signal(int signum, siginfo_t *info, void *context)
{
    int saved_errno = errno;
    int ours = armed_pid == getpid();
    int from_timer = info != NULL && info->si_code == SI_TIMER;
    if (from_timer) {
        if (!ours || acknowledged) {
            errno = saved_errno;
            return; /* a retry that is no longer needed */
        }
        pass_on(signum, info, context);
        long delay = next_delay_ns * 2;
        next_delay_ns = delay > LONGEST_DELAY_NS ? LONGEST_DELAY_NS : delay;
        start_timer(next_delay_ns);
    }
    else {
        pass_on(signum, info, context);
        if (ours) {
            acknowledged = 0;
            next_delay_ns = FIRST_DELAY_NS;
            start_timer(next_delay_ns);
        }
    }
    errno = saved_errno;
}

static int
in_front(int signum)
{
    struct sigaction current;
    return sigaction(signum, NULL, &current) == 0 && (current.sa_flags & SA_SIGINFO) &&
           current.sa_sigaction == on_signal;
}

static PyObject *
put_in_front(long signum, long relay_signum)
{
    if (signum < 1 || signum >= NSIG || relay_signum < 1 || relay_signum >= NSIG) {
        PyErr_SetString(PyExc_ValueError, "signal number out of range");
        return NULL;
    }
    struct sigaction current, python;
    if (sigaction((int)signum, NULL, &current) != 0 ||
        sigaction((int)relay_signum, NULL, &python) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    int was_in_front = (current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_signal;
    if (was_in_front && armed_pid == getpid()) {
        if (relay_signum != signum) { /* the relay's handler may have changed */
            python_action = python;
            passed_signum = (int)relay_signum;
        }
        Py_RETURN_TRUE; /* already in front */
    }
    if (was_in_front) { /* inherited through a fork: CPython's handler is the relay's */
        python = python_action;
        if (relay_signum != signum) {
            sigaction((int)relay_signum, NULL, &python);
        }
    }
    pid_t pid = getpid();
    if (armed_pid != pid) { /* a fork does not inherit timers: a new one */
        struct sigevent event;
        memset(&event, 0, sizeof(event));
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = (int)signum;
        event.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
        if (timer_create(CLOCK_MONOTONIC, &event, &retry_timer) != 0) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        armed_pid = pid;
        armed_signum = (int)signum;
    }
    else if (armed_signum != signum) {
        PyErr_SetString(PyExc_ValueError, "already armed for another signal");
        return NULL;
    }
    struct sigaction front = python;
    front.sa_flags = (python.sa_flags | SA_SIGINFO) & ~SA_RESETHAND;
    front.sa_sigaction = on_signal;
    python_action = python;
    passed_signum = (int)relay_signum;
    acknowledged = 1;
    if (sigaction((int)signum, &front, NULL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_TRUE;
}

static PyObject *
sigretry_arm(PyObject *module, PyObject *arg)
{
    long signum = PyLong_AsLong(arg);
    if (signum == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return put_in_front(signum, signum);
}

static PyObject *
sigretry_relay(PyObject *module, PyObject *args)
{
    long signum, relay_signum;
    if (!PyArg_ParseTuple(args, "ll", &signum, &relay_signum)) {
        return NULL;
    }
    return put_in_front(signum, relay_signum);
}

static PyObject *
sigretry_release(PyObject *module, PyObject *arg)
{
    long signum = PyLong_AsLong(arg);
    if (signum == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (signum < 1 || signum >= NSIG || !in_front((int)signum)) {
        Py_RETURN_FALSE;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    if (sigaction((int)signum, &dfl, NULL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_TRUE;
}

static PyObject *
sigretry_acknowledge(PyObject *module, PyObject *unused)
{
    acknowledged = 1;
    if (armed_pid == getpid()) {
        start_timer(0); /* a zero time disarms it */
    }
    Py_RETURN_NONE;
}

static PyMethodDef sigretry_methods[] = {
    {"arm", sigretry_arm, METH_O,
     "Send ``signum`` again to the main thread until acknowledge() (call right "
     "after signal.signal installed the tracer's handler, in the main thread)."},
    {"relay", sigretry_relay, METH_VARARGS,
     "relay(signum, relay_signum): a C handler in front of ``signum`` that passes it "
     "on to CPython's handler of ``relay_signum`` (whose Python handler is the "
     "tracer's), sent again as arm() does; signal.getsignal(signum) is unchanged."},
    {"release", sigretry_release, METH_O,
     "The default action for ``signum`` again, if the C handler is still in front "
     "(True), else nothing (False)."},
    {"acknowledge", sigretry_acknowledge, METH_NOARGS,
     "The Python handler ran: stop sending the signal again."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sigretry_module = {
    PyModuleDef_HEAD_INIT, "_sigretry", "Re-delivery of a signal whose Python handler has not run.",
    -1, sigretry_methods,
};

PyMODINIT_FUNC
PyInit__sigretry(void)
{
    return PyModule_Create(&sigretry_module);
}
