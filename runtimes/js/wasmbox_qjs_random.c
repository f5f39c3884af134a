/*
 * wasmbox: QuickJS-NG's engine (quickjs.c, compiled in this translation unit) plus one hook.
 *
 * Math.random's state is seeded when a context is created. A pre-initialised snapshot would
 * hand every execution the same seed, so wasmbox_run reseeds it from WASI's random_get.
 * (The atom hash seed is derived at the same time but cannot change once atoms exist; it stays
 * fixed per snapshot.)
 */
#include "quickjs.c"

void wasmbox_reseed_random(JSContext *ctx, uint64_t seed)
{
    ctx->random_state = seed ? seed : 1;
}
