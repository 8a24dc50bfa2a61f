/* plugin-api-version MODULE [EXPECTED]: prints the plugin API version a
 * built libvmsnap.so exports (its qemu_plugin_version), and with EXPECTED
 * fails unless it is that one. A module for an API this QEMU refuses (API 2
 * under QEMU 7.2) cannot be loaded by QEMU here, so this is how CI checks
 * the -Dqemu_plugin_api=2 build (scripts/test.sh).
 *
 * RTLD_LAZY: the module's qemu_plugin_* calls resolve against the QEMU
 * binary that loads it; nothing here calls them, so they stay unresolved. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
main(int argc, char **argv)
{
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s MODULE [EXPECTED]\n", argv[0]);
    return 2;
  }
  void *module = dlopen(argv[1], RTLD_LAZY | RTLD_LOCAL);
  if (module == NULL) {
    fprintf(stderr, "plugin-api-version: %s\n", dlerror());
    return 1;
  }
  const int *version = dlsym(module, "qemu_plugin_version");
  if (version == NULL || dlsym(module, "qemu_plugin_install") == NULL) {
    fprintf(stderr, "plugin-api-version: %s exports no qemu_plugin_version/qemu_plugin_install\n",
            argv[1]);
    return 1;
  }
  printf("%d\n", *version);
  if (argc == 3 && *version != atoi(argv[2])) {
    fprintf(stderr, "plugin-api-version: %s exports qemu_plugin_version %d, expected %s\n",
            argv[1], *version, argv[2]);
    return 1;
  }
  return 0;
}
