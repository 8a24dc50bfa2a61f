/* vmsnap plugin: libvirt=on restores — the snapshot's memory mapped over
 * the guest RAM that QEMU has just mapped (restore.h).
 *
 * libvirt names the file of a file-backed guest RAM itself
 * (memory_backing_dir/<id>-<name>/pc.ram, the id known only once the domain
 * starts), so a domain cannot point its RAM at a snapshot's memory.bin. At
 * qemu_plugin_install QEMU has created the memory backend (mapped, never
 * touched: the machine, its ROMs and the guest come later), so the plugin
 * replaces that mapping in place — the same address, length and flags,
 * MAP_PRIVATE of memory.bin opened read-only — and QEMU, which only ever
 * uses the address, runs the guest on the snapshot's pages copy-on-write.
 * The file QEMU created stays empty (the mapping was private).
 */
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "relaunch.h"
#include "snapdir.h"
#include "util.h"

/* The VmFlags of the mapping at @addr in /proc/self/smaps ("" if none). */
static char *
mapping_vmflags(const guint8 *addr)
{
  g_autofree char *smaps = NULL;
  g_autofree char *head = g_strdup_printf("\n%" G_GINT64_MODIFIER "x-", (guint64)(guintptr)addr);

  if (!g_file_get_contents("/proc/self/smaps", &smaps, NULL, NULL))
    return g_strdup("");
  g_autofree char *text = g_strconcat("\n", smaps, NULL);
  const char *block = strstr(text, head);
  const char *flags = block != NULL ? strstr(block, "\nVmFlags:") : NULL;
  if (flags == NULL)
    return g_strdup("");
  flags += strlen("\nVmFlags:");
  return g_strndup(flags, strcspn(flags, "\n"));
}

/* QEMU's madvise() hints on the old mapping (dump-guest-core=off, which
 * libvirt sets, is MADV_DONTDUMP) carried over to the new one. */
static void
reapply_advice(guint8 *addr, guint64 size, const char *vmflags)
{
  static const struct { const char *flag; int advice; } hints[] = {
    { " dd", MADV_DONTDUMP }, { " mg", MADV_MERGEABLE }, { " hg", MADV_HUGEPAGE },
  };
  g_autofree char *padded = g_strconcat(vmflags, " ", NULL);

  for (gsize i = 0; i < G_N_ELEMENTS(hints); i++) {
    g_autofree char *word = g_strconcat(hints[i].flag, " ", NULL);
    if (strstr(padded, word) != NULL && madvise(addr, size, hints[i].advice) < 0)
      fprintf(stderr, "vmsnap: warning: madvise(%s) on the restored memory: %s\n",
              hints[i].flag + 1, g_strerror(errno));
  }
}

/* The RAM backend on QEMU's command line: its file, size, and share=off. */
static gboolean
cmdline_ram(char **ret_mem_path, guint64 *ret_size, GError **error)
{
  g_auto(GStrv) argv = vms_restore_own_cmdline();
  gboolean share = FALSE;

  if (argv == NULL)
    return vms_set_error_errno(error, EIO, "failed to read /proc/self/cmdline");
  if (!vms_relaunch_find_memory((const char *const *)argv, ret_mem_path, ret_size, &share, error))
    return FALSE;
  if (share) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "memory share=on: libvirt=on restores map the snapshot's memory privately; the "
                "domain needs <memoryBacking><access mode='private'/> (libvirt then passes "
                "share=off)");
    return FALSE;
  }
  return TRUE;
}

/* Checks that @snap_mem fits the mapping @ram made of @ram_path. */
static gboolean
check_fit(const VmsManifest *m, const char *snap_mem, const VmsMemInfo *ram, GError **error)
{
  guint32 ram_page = 0, snap_page = 0;

  if (ram->size != m->memory_size_bytes) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "snapshot memory size (%" G_GUINT64_FORMAT ") doesn't match this VM (%"
                G_GUINT64_FORMAT ")", m->memory_size_bytes, ram->size);
    return FALSE;
  }
  if (ram->shared || ram->file_offset != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "memory: QEMU mapped %s %s at offset %" G_GUINT64_FORMAT "; expected a private "
                "mapping of the whole file", ram->path, ram->shared ? "shared" : "private",
                ram->file_offset);
    return FALSE;
  }
  if (!vms_memfile_page_size(ram->path, &ram_page, error) ||
      !vms_memfile_page_size(snap_mem, &snap_page, error))
    return FALSE;
  if (ram_page != snap_page || snap_page != m->page_size) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "page size: the snapshot's memory %s has %u-byte pages (manifest: %u), the "
                "domain's RAM %s %u-byte pages", snap_mem, snap_page, m->page_size, ram->path,
                ram_page);
    return FALSE;
  }
  return TRUE;
}

gboolean
vms_restore_map_memory(const char *dir, GError **error)
{
  g_autofree char *ram_path = NULL;
  g_auto(VmsMemInfo) ram = { 0 };
  guint64 size = 0;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(dir, error);

  if (s == NULL)
    return FALSE;
  if (s->manifest->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "kind: %s is a %s snapshot; libvirt=on restores a full one (`vmsnap restore "
                "--libvirt` restores a diff from its flattening)", dir,
                vms_manifest_kind_name(s->manifest->kind));
    return FALSE;
  }
  g_autofree char *snap_mem = g_build_filename(s->path, vms_snapshot_memory_file(s), NULL);
  if (!cmdline_ram(&ram_path, &size, error) ||
      !vms_memfile_find(NULL, ram_path, 0, &ram, error) || !check_fit(s->manifest, snap_mem, &ram, error))
    return FALSE;
  vms_autofd fd = open(snap_mem, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return vms_set_error_errno(error, errno, "failed to open %s", snap_mem);
  g_autofree char *vmflags = mapping_vmflags(ram.addr);
  /* MAP_FIXED replaces the old pages atomically: no window without a mapping. */
  void *p = mmap(ram.addr, ram.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED)
    return vms_set_error_errno(error, errno, "failed to map %s over the guest RAM at %p",
                               snap_mem, (void *)ram.addr);
  reapply_advice(ram.addr, ram.size, vmflags);
  return TRUE;
}
