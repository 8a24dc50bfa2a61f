/* vmsnap qemuctl: a clone's sockets and files in its runtime directory
 * (relocate.h). */
#include "relocate.h"

#include "relaunch.h"

struct _VmsRelocator {
  char *runtime_dir;
  GHashTable *moved; /* old path -> new path */
  GHashTable *names; /* basenames taken in the runtime dir */
};

VmsRelocator *
vms_relocator_new(const char *runtime_dir)
{
  VmsRelocator *r = g_new0(VmsRelocator, 1);

  r->runtime_dir = g_strdup(runtime_dir);
  r->moved = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  r->names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  return r;
}

void
vms_relocator_free(VmsRelocator *r)
{
  if (r == NULL)
    return;
  g_hash_table_unref(r->moved);
  g_hash_table_unref(r->names);
  g_free(r->runtime_dir);
  g_free(r);
}

const char *
vms_relocator_path(VmsRelocator *r, const char *old_path)
{
  const char *done = g_hash_table_lookup(r->moved, old_path);

  if (done != NULL)
    return done;
  g_autofree char *base = g_path_get_basename(old_path);
  char *name = g_strdup(base);
  for (guint n = 2; g_hash_table_contains(r->names, name); n++) {
    g_free(name);
    name = g_strdup_printf("%u-%s", n, base);
  }
  char *new_path = g_build_filename(r->runtime_dir, name, NULL);
  g_hash_table_add(r->names, name);
  g_hash_table_insert(r->moved, g_strdup(old_path), new_path);
  return new_path;
}

char *
vms_relocate_plugin_sockets(VmsRelocator *r, const char *plugin_arg)
{
  static const char *const socket_keys[] = { "qmp", "control", "monitor" };
  char *out = g_strdup(plugin_arg);

  for (gsize i = 0; i < G_N_ELEMENTS(socket_keys); i++) {
    g_autofree char *path = vms_qemu_opt_get(out, socket_keys[i], NULL);
    if (path != NULL) {
      char *next = vms_qemu_opt_set(out, socket_keys[i], vms_relocator_path(r, path));
      g_free(out);
      out = next;
    }
  }
  return out;
}

char *
vms_relocate_chardev(VmsRelocator *r, const char *chardev_arg)
{
  g_autofree char *backend = vms_qemu_opt_get(chardev_arg, "backend", "backend");
  g_autofree char *path = vms_qemu_opt_get(chardev_arg, "path", NULL);

  if (path == NULL || (g_strcmp0(backend, "socket") != 0 && g_strcmp0(backend, "file") != 0))
    return g_strdup(chardev_arg);
  return vms_qemu_opt_set(chardev_arg, "path", vms_relocator_path(r, path));
}
