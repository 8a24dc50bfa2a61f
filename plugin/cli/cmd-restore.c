/* vmsnap CLI: `vmsnap restore DIR [--dry-run] [--flatten-to DIR2]
 * [--runtime-dir RDIR] [--plugin PATH] [--disk-dir DDIR]
 * [--vm-generation-id GUID|saved] [-- EXTRA QEMU ARGS]`.
 * Each disk gets the clone's own qcow2 overlay on the frozen image and a VM
 * with vmgenid a fresh GUID (restore-disks.c).
 *
 * Starts QEMU from the command line recorded in the manifest, rewritten by
 * relaunch.h (the snapshot's memory mapped copy-on-write: the RAM overlay where
 * it can be used, else share=off; restore-ram.c), -S -incoming defer,
 * restore=DIR, sockets in a runtime dir of their own), by exec: the QEMU
 * process takes this process's place, so a supervisor sees QEMU itself.
 * A diff snapshot is flattened first (doc/restore.md) and restored as
 * itself — restore=DIFF with its flattening's memory.bin mapped — so the
 * clone's next diff names the diff as its parent (doc/diff.md). */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/statvfs.h>

#include "chain.h"
#include "chunks.h"
#include "error.h"
#include "libvirt.h"
#include "relaunch.h"
#include "restore-disks.h"
#include "save-qemu.h"
#include "snapdir.h"

/* DIR.flat beside DIR (DIR without a trailing slash). */
static char *
default_flat_dir(const char *dir)
{
  g_autofree char *abs = g_canonicalize_filename(dir, NULL);
  return g_strconcat(abs, ".flat", NULL);
}

/* TRUE if @flat_dir already holds the flattening of @diff: flatten copies
 * the diff's manifest, so created_at and state_sha256 identify it. */
static gboolean
flat_is_current(VmsSnapshot *diff, const char *flat_dir)
{
  g_autoptr(VmsSnapshot) flat = vms_snapshot_open(flat_dir, NULL);

  return flat != NULL && vms_chain_is_flattening(diff, flat);
}

/* TRUE if @path, or its nearest existing parent, is on a read-only
 * filesystem or not writable by us. */
static gboolean
read_only_place(const char *path)
{
  g_autofree char *p = g_canonicalize_filename(path, NULL);
  struct statvfs st;

  while (statvfs(p, &st) < 0) {
    g_autofree char *up = g_path_get_dirname(p);
    if (errno != ENOENT || g_str_equal(up, p))
      return FALSE;
    g_free(p);
    p = g_steal_pointer(&up);
  }
  return (st.f_flag & ST_RDONLY) != 0 || access(p, W_OK) != 0;
}

/* QEMU 7.2 opens a memory-backend-file read-write even with share=off (it
 * never writes it; readonly=on would make guest RAM read-only): a snapshot
 * on a read-only filesystem would fail inside QEMU, so say it here. */
static gboolean
check_memory_writable(const char *full, gboolean diff, GError **error)
{
  g_autofree char *mem = g_build_filename(full, VMS_MEMORY_FILE, NULL);

  if (!read_only_place(mem))
    return TRUE;
  g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
              "%s is on a read-only filesystem (or not writable): QEMU opens the guest memory "
              "file read-write even with share=off, though it never writes it; %s", mem,
              diff ? "give --flatten-to DIR2 on a writable filesystem"
                   : "copy the snapshot to a writable filesystem and restore the copy");
  return FALSE;
}

/* The memory checks of a restore (doc/format.md "Who checks what"): every
 * diff of the chain of @dir (a flatten made now has checked everything);
 * with @verify also the base's memory and the mapped flattening's. */
static gboolean
check_memory(VmsSnapshot *s, const char *full, gboolean flattened_now, gboolean verify,
             GError **error)
{
  if (s->manifest->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF)
    return !verify || vms_snapshot_verify_chunks(s, error);
  if (flattened_now)
    return TRUE;
  if (!vms_chain_verify_diffs(s->path, verify, error))
    return FALSE;
  if (!verify)
    return TRUE;
  g_autoptr(VmsSnapshot) flat = vms_snapshot_open(full, error);
  return flat != NULL && vms_snapshot_verify_chunks(flat, error);
}

/* The FULL snapshot to restore: @dir itself, or its flattening (made now
 * unless @dry_run or already there). Returns the directory (caller frees);
 * *@ret_ready is FALSE when a dry run left the flattening unmade. The
 * memory is checked as check_memory says, unless @dry_run. */
static char *
full_snapshot_dir(const char *dir, const char *flatten_to, gboolean dry_run, gboolean verify,
                  gboolean *ret_ready, GError **error)
{
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(dir, error);

  *ret_ready = TRUE;
  if (s == NULL)
    return NULL;
  if (s->manifest->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF) {
    if (!dry_run && (!check_memory(s, dir, FALSE, verify, error) ||
                     !check_memory_writable(dir, FALSE, error)))
      return NULL;
    return g_strdup(dir);
  }
  g_autofree char *flat = flatten_to != NULL ? g_strdup(flatten_to) : default_flat_dir(dir);
  gboolean current = flat_is_current(s, flat);
  if (current) {
    fprintf(stderr, "vmsnap: %s is a diff snapshot; using its flattening %s\n", dir, flat);
  } else if (dry_run) {
    fprintf(stderr, "vmsnap: %s is a diff snapshot; would flatten it into %s\n", dir, flat);
    *ret_ready = FALSE;
  } else if (read_only_place(flat)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "%s is a diff snapshot, and %s, where it would be flattened, is on a read-only "
                "filesystem (or not writable): give --flatten-to DIR2 on a writable filesystem",
                dir, flat);
    return NULL;
  } else {
    fprintf(stderr, "vmsnap: %s is a diff snapshot; flattening it into %s\n", dir, flat);
    if (!vms_chain_flatten(dir, flat, NULL, error))
      return NULL;
  }
  if (!dry_run && (!check_memory(s, flat, !current, verify, error) ||
                   !check_memory_writable(flat, TRUE, error)))
    return NULL;
  return g_steal_pointer(&flat);
}

/* --runtime-dir, or a new private directory (not created by a dry run). */
static char *
runtime_dir(const char *given, const VmsManifest *m, gboolean dry_run, GError **error)
{
  const char *base = g_getenv("XDG_RUNTIME_DIR");

  if (given != NULL) {
    if (!g_file_test(given, G_FILE_TEST_IS_DIR)) {
      g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "--runtime-dir %s is not a directory", given);
      return NULL;
    }
    if (read_only_place(given)) {
      g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_ROFS, "--runtime-dir %s is read-only: the "
                  "clone's sockets go there; give a writable directory", given);
      return NULL;
    }
    return g_canonicalize_filename(given, NULL);
  }
  if (base == NULL || !g_file_test(base, G_FILE_TEST_IS_DIR))
    base = g_get_tmp_dir();
  if (dry_run)
    return g_strdup_printf("%s/vmsnap-restore-%.8s-XXXXXX", base, m->id != NULL ? m->id : "");
  g_autofree char *tmpl = g_strdup_printf("%s/vmsnap-restore-%.8s-XXXXXX", base,
                                          m->id != NULL ? m->id : "");
  if (g_mkdtemp_full(tmpl, 0700) == NULL) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                "failed to create the runtime directory %s: %s (give --runtime-dir RDIR on a "
                "writable filesystem)", tmpl, g_strerror(errno));
    return NULL;
  }
  return g_steal_pointer(&tmpl);
}

/* relaunch ends the command line with "-S -incoming defer" and the EXTRA
 * QEMU ARGS, for this run only: how many arguments that is, from the last
 * "-S -incoming defer" on. The clone's saves leave them out of their
 * recorded command line (VMS_RESTORE_APPENDED_ENV), so it does not grow
 * down a chain. */
static guint
appended_count(char **argv)
{
  guint n = g_strv_length(argv);

  for (guint i = n; i >= 3; i--) {
    if (g_str_equal(argv[i - 3], "-S") && g_str_equal(argv[i - 2], "-incoming") &&
        g_str_equal(argv[i - 1], "defer"))
      return n - (i - 3);
  }
  return 0;
}

static void
print_command(char **argv)
{
  for (guint i = 0; argv[i] != NULL; i++) {
    g_autofree char *q = g_shell_quote(argv[i]);
    /* Plain words stay unquoted so the line reads like a command line. */
    gboolean plain = strspn(argv[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789-_=,.:/@+%") == strlen(argv[i]) && argv[i][0];
    printf("%s%s", i > 0 ? " " : "", plain ? argv[i] : q);
  }
  printf("\n");
}

/* Splits off what follows "--": QEMU arguments appended as given. */
static char **
take_extra_args(int *argc, char **argv)
{
  for (int i = 1; i < *argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      char **extra = g_strdupv(argv + i + 1);
      argv[i] = NULL;
      *argc = i;
      return extra;
    }
  }
  return g_new0(char *, 1);
}

/* The rewritten command line from @s's manifest, restoring @target (@s
 * itself, or the diff @s is the flattening of) from @memory (nullable:
 * @target's memory.bin). */
typedef struct {
  const char *disk_dir;     /* --disk-dir, nullable */
  const char *vmgenid;      /* --vm-generation-id, nullable */
  gboolean dry_run;
  const char *ram;          /* --ram, nullable (restore-ram.c) */
  gboolean paused;          /* --paused: a warm clone */
  VmsCloneIdentity *clone;  /* filled by restore_argv */
} CloneOptions;

/* Says once what a clone without a vmgenid device shares (doc/restore.md). */
static void
note_identity(const VmsCloneIdentity *c, const VmsManifest *m)
{
  if (c->vmgenid != NULL)
    fprintf(stderr, "vmsnap: clone vm-generation-id %s\n", c->vmgenid);
  else
    fprintf(stderr, "vmsnap: the VM has no vmgenid device: its clones share RNG state "
                    "(add -device vmgenid to the VM)\n");
  if (c->disks->len > 0)
    fprintf(stderr, "vmsnap: %u disk%s on the clone's own overlay%s (first: %s)\n",
            c->disks->len, c->disks->len == 1 ? "" : "s", c->disks->len == 1 ? "" : "s",
            g_array_index(c->disks, VmsRelaunchDisk, 0).overlay);
}

static char **
restore_argv(VmsSnapshot *s, const char *target, const char *memory, const char *rdir,
             const char *plugin, char **extra, CloneOptions *co, GError **error)
{
  const char *dir = s->path;

  /* Checks the disks' identities too: before QEMU loads anything. */
  if (!vms_snapshot_verify(s, error))
    return NULL;
  if (s->manifest->n_qemu_argv == 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "qemu_argv: %s records no QEMU command line to restore with", dir);
    return NULL;
  }
  g_autoptr(VmsSnapshot) state_snap = vms_snapshot_open(target, error);
  if (state_snap == NULL)
    return NULL;
  g_autoptr(GError) local = NULL;
  g_autofree char *placeholder = vms_cli_restore_placeholder(
      co->ram, state_snap, s->manifest, (const char *const *)extra, rdir, &local);
  if (local != NULL) {
    g_propagate_error(error, g_steal_pointer(&local));
    return NULL;
  }
  g_autofree char **argv = g_new0(char *, s->manifest->n_qemu_argv + 1);
  memcpy(argv, s->manifest->qemu_argv, s->manifest->n_qemu_argv * sizeof(char *));
  VmsRelaunchOptions opts = {
    .overlay_placeholder = placeholder,
    .paused = co->paused,
    .snapshot_dir = target,
    .memory_path = memory,
    .runtime_dir = rdir,
    .plugin_path = plugin,
    .extra_args = (const char *const *)extra,
  };
  if (!vms_clone_identity_prepare(dir, s->manifest, rdir, co->disk_dir, co->vmgenid, co->dry_run,
                                  co->clone, error))
    return NULL;
  note_identity(co->clone, s->manifest);
  vms_clone_identity_apply(co->clone, &opts);
  return vms_relaunch_argv((const char *const *)argv, &opts, error);
}

int
vms_cli_restore(int argc, char **argv)
{
  g_autofree char *flatten_to = NULL, *rdir_opt = NULL, *plugin = NULL, *ram = NULL;
  g_autofree char *disk_dir = NULL, *vmgenid = NULL;
  g_autofree char *libvirt = NULL, *uri = NULL;
  gboolean dry_run = FALSE, paused = FALSE, verify = FALSE;
  const GOptionEntry entries[] = {
    { "dry-run", 'n', 0, G_OPTION_ARG_NONE, &dry_run, "print the QEMU command line, run nothing", NULL },
    { "verify", 0, 0, G_OPTION_ARG_NONE, &verify,
      "also check every chunk of the base memory (the diffs of a chain are always checked)", NULL },
    { "flatten-to", 0, 0, G_OPTION_ARG_FILENAME, &flatten_to,
      "where a diff snapshot is flattened (default: DIR.flat beside it)", "DIR2" },
    { "runtime-dir", 0, 0, G_OPTION_ARG_FILENAME, &rdir_opt,
      "put the clone's sockets and chardev files here (default: a new directory)", "RDIR" },
    { "plugin", 0, 0, G_OPTION_ARG_FILENAME, &plugin,
      "load this libvmsnap.so instead of the recorded one", "PATH" },
    { "paused", 0, 0, G_OPTION_ARG_NONE, &paused,
      "load the state and wait paused (a warm clone: `cont` on QMP starts it)", NULL },
    { "ram", 0, 0, G_OPTION_ARG_STRING, &ram,
      "auto (default): the RAM overlay where possible, else private; overlay; private", "MODE" },
    { "disk-dir", 0, 0, G_OPTION_ARG_FILENAME, &disk_dir,
      "put the clone's disk overlays here (default: the runtime directory)", "DDIR" },
    { "vm-generation-id", 0, 0, G_OPTION_ARG_STRING, &vmgenid,
      "the clone's vmgenid GUID (default: a fresh one; \"saved\": the snapshot's)", "GUID" },
    { "libvirt", 0, 0, G_OPTION_ARG_STRING, &libvirt,
      "define and start a new libvirt domain NAME running the clone (doc/libvirt.md)", "NAME" },
    { "connect", 0, 0, G_OPTION_ARG_STRING, &uri, "with --libvirt: the libvirt URI (virsh -c)",
      "URI" },
    { NULL },
  };
  g_auto(GStrv) extra = take_extra_args(&argc, argv);
  g_autoptr(GError) error = NULL;

  if (!vms_cli_parse(&argc, &argv, entries, "DIR [-- EXTRA QEMU ARGS]",
                     "Start QEMU from snapshot DIR with the command line recorded in its\n"
                     "manifest: memory mapped copy-on-write from DIR/memory.bin (as the RAM\n"
                     "overlay, so diff saves skip the RAM stream, or share=off),\n"
                     "-S -incoming defer, the plugin in restore mode, sockets in a runtime\n"
                     "directory of their own so the clone runs beside the original.\n"
                     "A diff snapshot is flattened first. Every diff of the chain is checked\n"
                     "against its memory digests; --verify checks the base memory too."))
    return 1;
  if (argc != 2)
    return vms_cli_error(argc < 2 ? "missing DIR (see --help)" : "too many arguments (see --help)");
  if ((uri != NULL && libvirt == NULL) ||
      (libvirt != NULL && (plugin != NULL || extra[0] != NULL || ram != NULL || paused)))
    return vms_cli_error(libvirt == NULL ? "--connect needs --libvirt NAME"
                                         : "--libvirt takes no --plugin, --ram, --paused or extra "
                                           "QEMU arguments (the clone's domain XML is the saved one)");

  gboolean ready = TRUE;
  g_autofree char *full = full_snapshot_dir(argv[1], flatten_to, dry_run, verify, &ready,
                                            &error);
  if (full == NULL)
    return vms_cli_error("%s", error->message);
  /* Under libvirt too, a diff is restored as itself over its flattening's memory. */
  if (libvirt != NULL) {
    g_autofree char *memory = g_build_filename(full, VMS_MEMORY_FILE, NULL);
    return vms_cli_restore_libvirt(argv[1], memory, libvirt, uri, rdir_opt, dry_run);
  }
  /* A dry run of an unflattened diff reads the diff's own manifest. */
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(ready ? full : argv[1], &error);
  if (s == NULL)
    return vms_cli_error("%s", error->message);
  g_autofree char *rdir = runtime_dir(rdir_opt, s->manifest, dry_run, &error);
  if (rdir == NULL)
    return vms_cli_error("%s", error->message);
  /* A diff is restored as itself from its flattening's memory. */
  gboolean diff = !g_str_equal(full, argv[1]);
  g_autofree char *flat_mem = diff ? g_build_filename(full, VMS_MEMORY_FILE, NULL) : NULL;
  g_auto(VmsCloneIdentity) clone = { 0 };
  CloneOptions co = { .disk_dir = disk_dir, .vmgenid = vmgenid, .dry_run = dry_run,
                      .ram = ram, .paused = paused, .clone = &clone };
  g_auto(GStrv) qemu = restore_argv(s, diff ? argv[1] : full, flat_mem, rdir, plugin, extra, &co,
                                    &error);
  if (qemu == NULL) {
    if (rdir_opt == NULL && !dry_run)
      (void)rmdir(rdir); /* the empty directory made for this run */
    return vms_cli_error("%s", error->message);
  }
  if (dry_run) {
    print_command(qemu);
    return 0;
  }
  fprintf(stderr, "vmsnap: restoring %s; sockets in %s\n", argv[1], rdir);
  fflush(stderr);
  g_autofree char *appended = g_strdup_printf("%u", appended_count(qemu));
  g_setenv(VMS_RESTORE_APPENDED_ENV, appended, TRUE);
  execvp(qemu[0], qemu);
  return vms_cli_error("failed to run %s: %s", qemu[0], g_strerror(errno));
}
