/*
 * wasmbox's QuickJS entry points: a WASI reactor that is pre-initialised once (runtime, context,
 * std/os modules and our prelude loaded), snapshotted, and then entered once per fresh instance.
 *
 *   wasmbox_init  build time only (run by the snapshotter): everything that does not depend on
 *                 the execution.
 *   wasmbox_run   per execution: re-read environ and argv from WASI, reseed Math.random, let the
 *                 prelude refresh process.env/argv and chdir to $PWD, run the program and its
 *                 event loop. Returns the exit status; process.exit() ends the instance directly.
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
