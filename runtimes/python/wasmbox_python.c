/*
 * wasmbox's entry points for CPython 3.13 on wasm32-wasip1, linked as a WASI reactor
 * (`-mexec-model=reactor`) with libpython by runtimes/fetch.py (table `python-snapshot`).
 *
 *   wasmbox_init()  -> void   run ONCE, at snapshot time (src/engine/preinit.rs, wasmtime-wizer):
 *                             starts the interpreter with an isolated configuration, imports the
 *                             modules most programs use (runtimes/python/_wasmbox.py, stored in the
 *                             standard-library zip) and freezes the GC generations.
 *   wasmbox_run()   -> i32    run once per execution, in a FRESH instance restored from the
 *                             snapshot: forgets the preopens, argv and environment the snapshot saw,
 *                             re-reads them from this execution's WASI context, and runs argv
 *                             (`python -c CODE`, `python script.py ARGS`, `python -m MOD`) as
 *                             __main__. Returns the exit status (SystemExit's code, 1 for an uncaught
 *                             exception, whose traceback goes to stderr). stdout/stderr are flushed.
 *   wasmbox_cell()  -> i32    run once per cell of a kernel: the SAME instance again and again, each
 *                             time with a fresh WASI context (argv ["python", "<cell>", CODE],
 *                             environment, preopens). Runs CODE in __main__ as IPython does (the
 *                             last expression is displayed). Returns 0, or 1 if the cell raised.
 *   wasmbox_interrupt_slots() -> u32*   where the host writes to interrupt a running cell, as
 *                             SIGINT would: (address, bits to OR in) pairs, ended by address 0.
 *                             The host writes them while the guest is suspended in an epoch check
 *                             or parked in a host call, never concurrently with guest code.
 *
 * Rich outputs (display(), a cell's last value) leave through the import wasmbox.emit_output,
 * reached from Python as _wasmbox_host.emit(bytes).
 *
 * The standard library is /usr/local/lib/python313.zip in the guest (read-only mount of
 * <cache>/runtimes/python313-lib/): the same path at snapshot time and at run time.
 */

#define PY_SSIZE_T_CLEAN
/* The interrupt slots point into the runtime's signal state: internal headers. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include "internal/pycore_ceval.h"
#include "internal/pycore_runtime.h"

#include <signal.h>
#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>
#include <wasi/libc-environ.h>

/* wasi-libc: forget the preopened directories found so far; they are looked up again (from the
 * current WASI context) on the next path operation. Not declared in a public header. */
extern void __wasilibc_reset_preopens(void);

#define STDLIB_ZIP L"/usr/local/lib/python313.zip"

static PyObject *wasmbox_module; /* runtimes/python/_wasmbox.py */

/* A rich output (a JSON document, see _wasmbox.py) for the host; 0 if it was kept. */
__attribute__((import_module("wasmbox"), import_name("emit_output")))
extern int32_t wasmbox_emit_output(const uint8_t *data, uint32_t len);

static PyObject *host_emit(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int32_t kept = view.len > UINT32_MAX ? 1
                   : wasmbox_emit_output((const uint8_t *)view.buf, (uint32_t)view.len);
    PyBuffer_Release(&view);
    return PyBool_FromLong(kept == 0);
}

/* Makes every object of the list immortal (CPython 3.12+: its reference count is pinned, so
 * Py_INCREF/Py_DECREF no longer write to it). Used once, on the objects that exist when the
 * snapshot is taken: they live for ever anyway, and a cell that only uses them then writes to
 * none of their pages (fewer copy-on-write faults per execution, smaller kernel images). */
static PyObject *host_immortalize(PyObject *self, PyObject *list) {
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "immortalize() takes a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *op = PyList_GET_ITEM(list, i);
        if (op != list)
            op->ob_refcnt = _Py_IMMORTAL_REFCNT;
    }
    return PyLong_FromSsize_t(n);
}

static PyMethodDef host_methods[] = {
    {"emit", host_emit, METH_O, "Hand one rich output (JSON bytes) to the host; True if kept."},
    {"immortalize", host_immortalize, METH_O, "Pin the reference counts of a list's objects."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef host_module = {
    PyModuleDef_HEAD_INIT, "_wasmbox_host", "wasmbox's host imports.", -1, host_methods,
};

static PyObject *host_module_init(void) { return PyModule_Create(&host_module); }

/* (address, bits) pairs and a 0 terminator: what trip_signal(SIGINT) stores. */
static uint32_t interrupt_slots[7];

__attribute__((export_name("wasmbox_interrupt_slots")))
uint32_t *wasmbox_interrupt_slots(void) {
    interrupt_slots[0] = (uint32_t)(uintptr_t)&_PyRuntime.signals.handlers[SIGINT].tripped;
    interrupt_slots[1] = 1;
    interrupt_slots[2] = (uint32_t)(uintptr_t)&_PyRuntime.signals.is_tripped;
    interrupt_slots[3] = 1;
    interrupt_slots[4] = (uint32_t)(uintptr_t)&_PyRuntime.main_tstate->eval_breaker;
    interrupt_slots[5] = _PY_SIGNALS_PENDING_BIT;
    interrupt_slots[6] = 0;
    return interrupt_slots;
}
static int init_status = -1;     /* 0 once wasmbox_init succeeded */

static void fail(const char *what, PyStatus status) {
    fprintf(stderr, "wasmbox_init: %s: %s%s%s\n", what,
            status.func ? status.func : "", status.func ? ": " : "",
            status.err_msg ? status.err_msg : "");
    fflush(stderr);
}

__attribute__((export_name("wasmbox_init")))
void wasmbox_init(void) {
    PyStatus status;

    if (PyImport_AppendInittab("_wasmbox_host", host_module_init) < 0) {
        fputs("wasmbox_init: cannot register _wasmbox_host\n", stderr);
        __builtin_trap();
    }

    /* UTF-8 everywhere, whatever the (absent) locale says. */
    PyPreConfig preconfig;
    PyPreConfig_InitIsolatedConfig(&preconfig);
    preconfig.utf8_mode = 1;
    status = Py_PreInitialize(&preconfig);
    if (PyStatus_Exception(status)) {
        fail("pre-initialisation", status);
        __builtin_trap();
    }

    /* Isolated: no PYTHON* environment variables, no user site, no script directory on sys.path
     * (wasmbox_run puts the right one there per execution). */
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.site_import = 1;          /* exit(), quit(), help(), copyright() as in `python` */
    config.write_bytecode = 0;       /* never litter sandbox folders with __pycache__ */
    config.install_signal_handlers = 0;
    config.buffered_stdio = 1;
    config.module_search_paths_set = 1;
    status = PyConfig_SetString(&config, &config.program_name, L"python3");
    if (!PyStatus_Exception(status))
        status = PyConfig_SetString(&config, &config.home, L"/usr/local");
    if (!PyStatus_Exception(status))
        status = PyWideStringList_Append(&config.module_search_paths, STDLIB_ZIP);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        fail("starting the interpreter", status);
        __builtin_trap();
    }

    wasmbox_module = PyImport_ImportModule("_wasmbox");
    if (wasmbox_module == NULL) {
        PyErr_Print();
        fflush(stderr);
        __builtin_trap();
    }
    PyObject *r = PyObject_CallMethod(wasmbox_module, "init", NULL);
    if (r == NULL) {
        PyErr_Print();
        fflush(stderr);
        __builtin_trap();
    }
    Py_DECREF(r);
    fflush(NULL);
    init_status = 0;
}

/* argv or the environment of this execution, straight from WASI (not wasi-libc's copies, which
 * are those of the snapshot), as a list of str (argv) or bytes ("KEY=VALUE", environment). */
static PyObject *wasi_strings(int env) {
    __wasi_size_t count = 0, size = 0;
    __wasi_errno_t err = env ? __wasi_environ_sizes_get(&count, &size)
                             : __wasi_args_sizes_get(&count, &size);
    if (err != 0) {
        PyErr_Format(PyExc_OSError, "wasmbox: reading %s sizes: WASI errno %d",
                     env ? "environment" : "argv", (int)err);
        return NULL;
    }
    uint8_t **ptrs = calloc(count + 1, sizeof(uint8_t *));
    uint8_t *buf = malloc(size ? size : 1);
    if (ptrs == NULL || buf == NULL) {
        free(ptrs);
        free(buf);
        return PyErr_NoMemory();
    }
    err = env ? __wasi_environ_get(ptrs, buf) : __wasi_args_get(ptrs, buf);
    PyObject *list = NULL;
    if (err != 0) {
        PyErr_Format(PyExc_OSError, "wasmbox: reading %s: WASI errno %d",
                     env ? "environment" : "argv", (int)err);
        goto done;
    }
    list = PyList_New(count);
    if (list == NULL)
        goto done;
    for (__wasi_size_t i = 0; i < count; i++) {
        const char *s = (const char *)ptrs[i];
        PyObject *item = env ? PyBytes_FromString(s)
                             : PyUnicode_DecodeFSDefault(s);
        if (item == NULL) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, i, item);
    }
done:
    free(ptrs);
    free(buf);
    return list;
}

/* Calls _wasmbox.<method>(argv, env) with this call's WASI argv and environment; returns the
 * status it returns (1 if it failed itself). */
static int call_entry(const char *method) {
    if (init_status != 0) {
        fprintf(stderr, "wasmbox: the interpreter was not initialised (run wasmbox_init "
                        "first, e.g. by snapshotting the module)\n");
        fflush(stderr);
        return 70; /* EX_SOFTWARE */
    }

    /* Directories: the preopens seen so far (the standard library at snapshot time, or the last
     * cell's context) are not this call's; wasi-libc looks them up again on the next path
     * operation. */
    __wasilibc_reset_preopens();
    /* C-level environment (getenv, used by a few C modules): re-read from WASI. */
    __wasilibc_deinitialize_environ();
    __wasilibc_initialize_environ();

    int status = 1;
    PyObject *argv = wasi_strings(0);
    PyObject *env = argv ? wasi_strings(1) : NULL;
    PyObject *r = NULL;
    if (env != NULL)
        r = PyObject_CallMethod(wasmbox_module, method, "OO", argv, env);
    if (r == NULL) {
        /* A failure of _wasmbox itself (user-code errors are handled there). */
        PyErr_Print();
        status = 1;
    } else {
        status = (int)PyLong_AsLong(r);
        if (status == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            status = 1;
        }
    }
    Py_XDECREF(r);
    Py_XDECREF(argv);
    Py_XDECREF(env);
    fflush(NULL);
    return status;
}

__attribute__((export_name("wasmbox_run")))
int wasmbox_run(void) {
    return call_entry("run");
}

__attribute__((export_name("wasmbox_cell")))
int wasmbox_cell(void) {
    /* An interrupt that arrived as the previous cell ended must not hit this one. */
    if (init_status == 0 && PyErr_CheckSignals() < 0)
        PyErr_Clear();
    return call_entry("cell");
}
