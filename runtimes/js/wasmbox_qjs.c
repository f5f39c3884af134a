/*
 * wasmbox's QuickJS entry points: a WASI reactor that is pre-initialised once (runtime, context,
 * std/os modules and our prelude loaded), snapshotted, and then entered once per fresh instance.
 *
 *   wasmbox_init  build time only (run by the snapshotter): everything that does not depend on
 *                 the execution.
 *   wasmbox_run   per execution: re-read environ and argv from WASI, reseed Math.random, let the
 *                 prelude refresh process.env/argv and chdir to $PWD, run the program and its
 *                 event loop. Returns the exit status; process.exit() ends the instance directly.
 *   wasmbox_cell  per cell of a kernel (the same instance each time, a fresh WASI context):
 *                 argv ["qjs", "<cell>", CODE]; evaluates CODE as a global script (top-level
 *                 bindings persist), shows its completion value as a rich output, runs the
 *                 event loop. Returns 0, or 1 if the cell threw.
 *   wasmbox_interrupt_slots  (address, bits) pairs ended by address 0: the host ORs them in to
 *                 interrupt a running cell (QuickJS's interrupt handler then throws an
 *                 uncatchable error).
 *
 * argv: ["qjs", "-e", CODE, ARGS...] or ["qjs", FILE, ARGS...].
 */
#include "qjs.c"

#include <wasi/api.h>

#define WASMBOX_PRELUDE "/usr/lib/wasmbox/prelude.js"

void wasmbox_reseed_random(JSContext *ctx, uint64_t seed);
void __wasilibc_deinitialize_environ(void);
void __wasilibc_initialize_environ(void);

static JSRuntime *wasmbox_rt;
static JSContext *wasmbox_ctx;

/* Set by the host (through wasmbox_interrupt_slots) to stop the running cell. */
static volatile uint32_t wasmbox_interrupt;
static uint32_t wasmbox_slots[3];

__attribute__((import_module("wasmbox"), import_name("emit_output")))
extern int32_t wasmbox_emit_output(const uint8_t *data, uint32_t len);

__attribute__((export_name("wasmbox_interrupt_slots")))
uint32_t *wasmbox_interrupt_slots(void)
{
    wasmbox_slots[0] = (uint32_t)(uintptr_t)&wasmbox_interrupt;
    wasmbox_slots[1] = 1;
    wasmbox_slots[2] = 0;
    return wasmbox_slots;
}

static int wasmbox_interrupt_handler(JSRuntime *rt, void *opaque)
{
    (void)rt;
    (void)opaque;
    return wasmbox_interrupt != 0;
}

/* __wasmbox_emit(json): one rich output for the host; true if it was kept. */
static JSValue wasmbox_js_emit(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
    size_t len;
    (void)this_val;
    if (argc < 1)
        return JS_ThrowTypeError(ctx, "__wasmbox_emit needs a string");
    const char *s = JS_ToCStringLen(ctx, &len, argv[0]);
    if (!s)
        return JS_EXCEPTION;
    int32_t kept = wasmbox_emit_output((const uint8_t *)s, (uint32_t)len);
    JS_FreeCString(ctx, s);
    return JS_NewBool(ctx, kept == 0);
}

__attribute__((export_name("wasmbox_init")))
void wasmbox_init(void)
{
    static char *argv0[] = { "qjs", NULL };
    static const char std_globals[] =
        "import * as bjson from 'qjs:bjson';\n"
        "import * as std from 'qjs:std';\n"
        "import * as os from 'qjs:os';\n"
        "globalThis.bjson = bjson;\n"
        "globalThis.std = std;\n"
        "globalThis.os = os;\n";

    qjs__argc = 1;
    qjs__argv = argv0;
    wasmbox_rt = JS_NewRuntime();
    if (!wasmbox_rt)
        abort();
    js_std_set_worker_new_context_func(JS_NewCustomContext);
    js_std_init_handlers(wasmbox_rt);
    wasmbox_ctx = JS_NewCustomContext(wasmbox_rt);
    if (!wasmbox_ctx)
        abort();
    JS_SetModuleLoaderFunc2(wasmbox_rt, NULL, js_module_loader, js_module_check_attributes, NULL);
    JS_SetHostPromiseRejectionTracker(wasmbox_rt, js_std_promise_rejection_tracker, NULL);
    js_std_add_helpers(wasmbox_ctx, 0, NULL);
    JS_SetInterruptHandler(wasmbox_rt, wasmbox_interrupt_handler, NULL);
    {
        JSValue global = JS_GetGlobalObject(wasmbox_ctx);
        JS_SetPropertyStr(wasmbox_ctx, global, "__wasmbox_emit",
                          JS_NewCFunction(wasmbox_ctx, wasmbox_js_emit, "__wasmbox_emit", 1));
        JS_FreeValue(wasmbox_ctx, global);
    }
    if (eval_buf(wasmbox_ctx, std_globals, sizeof(std_globals) - 1, "<input>", JS_EVAL_TYPE_MODULE))
        abort();
    if (eval_file(wasmbox_ctx, WASMBOX_PRELUDE, 0))
        abort();
}

/* argv as WASI passes it to this execution (wasi-libc only reads it for commands). */
static char **wasmbox_args(int *argc_out)
{
    __wasi_size_t argc = 0, size = 0;
    if (__wasi_args_sizes_get(&argc, &size) != 0)
        return NULL;
    char **argv = calloc(argc + 1, sizeof(char *));
    char *buf = malloc(size ? size : 1);
    if (!argv || !buf || __wasi_args_get((uint8_t **)argv, (uint8_t *)buf) != 0)
        return NULL;
    *argc_out = (int)argc;
    return argv;
}

static int wasmbox_restart(JSContext *ctx, char **args, int nargs)
{
    JSValue global = JS_GetGlobalObject(ctx);
    JSValue list = JS_NewArray(ctx);
    for (int i = 0; i < nargs; i++)
        JS_SetPropertyUint32(ctx, list, i, JS_NewString(ctx, args[i]));
    JSValue restart = JS_GetPropertyStr(ctx, global, "__wasmbox_restart");
    JSValue ret = JS_Call(ctx, restart, global, 1, (JSValueConst *)&list);
    int failed = JS_IsException(ret);
    if (failed)
        js_std_dump_error(ctx);
    JS_FreeValue(ctx, ret);
    JS_FreeValue(ctx, restart);
    JS_FreeValue(ctx, list);
    JS_FreeValue(ctx, global);
    return failed;
}

__attribute__((export_name("wasmbox_run")))
int wasmbox_run(void)
{
    JSContext *ctx = wasmbox_ctx;
    int argc = 0, status;
    char **argv;
    uint64_t seed = 0;

    __wasilibc_deinitialize_environ();
    __wasilibc_initialize_environ();
    (void)__wasi_random_get((uint8_t *)&seed, sizeof(seed));
    wasmbox_reseed_random(ctx, seed);

    argv = wasmbox_args(&argc);
    if (!argv || argc < 2) {
        fputs("wasmbox: usage: qjs -e CODE [ARGS...] | qjs FILE [ARGS...]\n", stderr);
        return 2;
    }
    const char *expr = NULL, *file = NULL;
    int rest;
    if (!strcmp(argv[1], "-e") && argc >= 3) {
        expr = argv[2];
        rest = 3;
    } else {
        file = argv[1];
        rest = 1; /* scriptArgs starts with the script, as with `qjs FILE` */
    }
    if (wasmbox_restart(ctx, argv + rest, argc - rest))
        return 1;

    if (expr) {
        size_t len = strlen(expr);
        int flags = JS_DetectModule(expr, len) ? JS_EVAL_TYPE_MODULE : JS_EVAL_TYPE_GLOBAL;
        status = eval_buf(ctx, expr, (int)len, "<cmdline>", flags);
    } else {
        status = eval_file(ctx, file, -1);
    }
    if (!status && js_std_loop(ctx)) {
        js_std_dump_error(ctx);
        status = -1;
    }
    fflush(stdout);
    fflush(stderr);
    return status ? 1 : 0;
}

__attribute__((export_name("wasmbox_cell")))
int wasmbox_cell(void)
{
    JSContext *ctx = wasmbox_ctx;
    int argc = 0, status = 0;
    char **argv;

    wasmbox_interrupt = 0;
    __wasilibc_deinitialize_environ();
    __wasilibc_initialize_environ();
    argv = wasmbox_args(&argc);
    if (!argv || argc < 3) {
        fputs("wasmbox: usage: qjs <cell> CODE\n", stderr);
        return 2;
    }
    if (wasmbox_restart(ctx, argv + 3, 0))
        return 1;

    const char *code = argv[2];
    JSValue value = JS_Eval(ctx, code, strlen(code), "<cell>", JS_EVAL_TYPE_GLOBAL);
    if (JS_IsException(value)) {
        js_std_dump_error(ctx);
        status = 1;
    } else {
        JSValue global = JS_GetGlobalObject(ctx);
        JSValue show = JS_GetPropertyStr(ctx, global, "__wasmbox_show");
        JSValue ret = JS_Call(ctx, show, global, 1, (JSValueConst *)&value);
        if (JS_IsException(ret)) {
            js_std_dump_error(ctx);
            status = 1;
        }
        JS_FreeValue(ctx, ret);
        JS_FreeValue(ctx, show);
        JS_FreeValue(ctx, global);
    }
    JS_FreeValue(ctx, value);
    if (!status && js_std_loop(ctx)) {
        js_std_dump_error(ctx);
        status = 1;
    }
    /* The kernel lives on: give back this cell's copy of argv (one buffer, argv[0] first). */
    free(argv[0]);
    free(argv);
    fflush(stdout);
    fflush(stderr);
    return status;
}
