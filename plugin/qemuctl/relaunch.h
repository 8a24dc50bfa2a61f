/* vmsnap core: rewriting a saved QEMU command line for a restore.
 *
 * A snapshot's manifest records QEMU's argv at save time (qemu_argv). To
 * restore it, QEMU is started again with that command line, changed so that:
 *   - the guest RAM's memory-backend-file maps the snapshot's memory.bin
 *     with share=off (a private copy-on-write mapping: the guest never
 *     writes the snapshot), with prealloc and discard-data turned off (both
 *     would touch the file or every page of it);
 *   - `-incoming defer` and `-S` are present (the plugin loads state.bin,
 *     then lets the guest run if resume=on); any other -incoming is dropped;
 *   - the vmsnap plugin argument carries restore=DIR (replacing any restore=)
 *     and, if it had mem=, mem=DIR/memory.bin; overlay= and resume= as the
 *     options say (a recorded one is dropped);
 *   - with the RAM overlay, the backend maps an empty placeholder share=on
 *     instead, and the plugin maps the memory over it (overlay.h);
 *   - every unix socket path (-chardev socket,path=; -qmp/-monitor/-serial/
 *     -parallel unix:PATH; the plugin's qmp=, control=, monitor=) and every
 *     -chardev file,path= output is
 *     moved into a runtime directory, the same old path always to the same
 *     new path, so a clone runs beside the original;
 *   - -daemonize, -pidfile FILE and -loadvm NAME are dropped;
 *   - each disk (relaunch-disks.c) opens the clone's overlay: the -drive
 *     with id=DEVICE gets file=OVERLAY,format=qcow2; a -blockdev format node
 *     named DEVICE becomes driver=qcow2 and its file node (or inline
 *     file.filename) points at OVERLAY; -device vmgenid gets guid=VMGENID.
 * QEMU option strings are understood in both the dotted "key=value,..."
 * syntax (",," is a literal comma) and, for -object, the JSON syntax.
 *
 * Hypervisor-specific knowledge kept small: only QEMU's option names.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* One disk of a clone (doc/spec.md section 8): the device recorded in the
 * manifest and the clone's own new qcow2 overlay on the frozen image. */
typedef struct {
  const char *device;     /* DiskRecord.device: a -drive id, or a -blockdev node-name */
  const char *node_name;  /* DiskRecord.node_name at save time */
  const char *overlay;    /* absolute path of the clone's overlay */
} VmsRelaunchDisk;

typedef struct {
  const char *snapshot_dir;      /* the snapshot to restore (restore=); made absolute */
  const char *memory_path;       /* nullable: the memory file to map, default
                                  * snapshot_dir/memory.bin; a DIFF snapshot maps
                                  * its flattening's memory.bin (doc/diff.md) */
  const char *runtime_dir;       /* where sockets and chardev files go; must exist */
  const char *plugin_path;       /* nullable: replaces the recorded path of libvmsnap.so */
  const char *const *extra_args; /* nullable, NULL-terminated: appended as given */
  const char *overlay_placeholder; /* nullable: the RAM overlay (overlay.h) — the backend maps
                                  * this empty placeholder share=on and the plugin gets
                                  * overlay=MEMORY; NULL: the backend maps MEMORY share=off */
  gboolean paused;               /* the plugin gets resume=off (a warm clone) */
  const VmsRelaunchDisk *disks;  /* @n_disks writable disks to point at their overlays */
  gsize n_disks;
  const char *vmgenid;           /* nullable: the guid= given to -device vmgenid */
} VmsRelaunchOptions;

/* Returns the rewritten command line (NULL-terminated, caller frees with
 * g_strfreev) for @argv (NULL-terminated, argv[0] the QEMU binary).
 * Fails (VMS_ERROR_INVALID_ARGUMENT, naming the option) when @argv is empty,
 * has no -plugin for libvmsnap.so (a path ending in "libvmsnap.so"), has no
 * memory-backend-file or more than one without a -machine memory-backend=
 * naming the guest RAM. */
char **vms_relaunch_argv(const char *const *argv, const VmsRelaunchOptions *opts, GError **error);

/* Finds the guest RAM backend in @argv: the memory-backend-file named by
 * -machine memory-backend=ID, else the only memory-backend-file. Returns its
 * mem-path, size in bytes and share flag (share defaults to off, as in QEMU).
 * Fails as vms_relaunch_argv() does. */
gboolean vms_relaunch_find_memory(const char *const *argv, char **ret_mem_path,
                                  guint64 *ret_size, gboolean *ret_share, GError **error);

/* ---- QEMU option strings (exposed for tests and restore.c) ---- */

/* The value of @key in the dotted option string @opts ("a=1,b=x,,y"), with
 * ",," unescaped; NULL if absent. If @implied_key is not NULL, a first
 * element without '=' is the value of @implied_key (e.g. "qom-type" for
 * -object, "backend" for -chardev). */
char *vms_qemu_opt_get(const char *opts, const char *key, const char *implied_key);

/* @opts with @key set to @value (replacing every occurrence, appended if
 * absent; @value NULL removes the key). Commas in @value are escaped. */
char *vms_qemu_opt_set(const char *opts, const char *key, const char *value);

/* Parses a QEMU size ("512M", "1G", "4096", "2.5G" is refused): an optional
 * suffix K, M, G, T (binary units, case-insensitive, optional trailing "B"
 * or "iB"); without a suffix the number is in @default_unit bytes. */
gboolean vms_qemu_parse_size(const char *text, guint64 default_unit, guint64 *ret_bytes,
                             GError **error);

/* The disk and vmgenid part of vms_relaunch_argv(), applied in place to the
 * option/value pairs of @argv (a GPtrArray of strings, argv[0] first, no
 * NULL terminator yet). Fails (VMS_ERROR_INVALID_ARGUMENT) naming the disk
 * when a disk has no -drive/-blockdev to rewrite, or when the vmgenid to set
 * has no -device vmgenid to go to. */
gboolean vms_relaunch_disks(GPtrArray *argv, const VmsRelaunchOptions *opts, GError **error);

G_END_DECLS
