/* vmsnap fuzz targets: the libFuzzer entry point every target defines.
 * fuzz-main.c replays files through it when the build is not a libFuzzer
 * build, so each target also runs as an ordinary test over its corpus. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Must return 0; aborts (g_assert) when an invariant breaks. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
