/* vmsnap core: finding the guest memory mapping in /proc/self/maps. */
#include "memfile.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "error.h"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

/* What a user should add to QEMU's command line, quoted in errors. */
#define QEMU_OPTIONS_HINT \
  "start QEMU with a file-backed, shared guest memory backend, e.g. " \
  "-object memory-backend-file,id=ram0,size=SIZE,mem-path=/dev/shm/vm.ram,share=on " \
  "-machine memory-backend=ram0"

void
vms_meminfo_clear(VmsMemInfo *info)
{
  g_clear_pointer(&info->path, g_free);
  memset(info, 0, sizeof(*info));
}

/* One line of a maps file. @path points into the line. */
typedef struct {
  guint64 start, end, offset;
  char perms[5];
  unsigned int dev_major, dev_minor;
  guint64 inode;
  const char *path;
} MapsLine;

static gboolean
parse_maps_line(char *line, MapsLine *ret)
{
  int path_at = 0;

  memset(ret, 0, sizeof(*ret));
  if (sscanf(line, "%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x %4s %" G_GINT64_MODIFIER
                   "x %x:%x %" G_GINT64_MODIFIER "u %n",
             &ret->start, &ret->end, ret->perms, &ret->offset, &ret->dev_major,
             &ret->dev_minor, &ret->inode, &path_at) < 7)
    return FALSE;
  ret->path = path_at > 0 ? line + path_at : "";
  return ret->end > ret->start;
}

/* A writable mapping of a regular file that could be guest RAM: not
 * anonymous, not a device, not memfd (QEMU can't skip it in migration),
 * not a shared library's data segment. */
static gboolean
is_candidate(const MapsLine *l)
{
  if (l->perms[1] != 'w' || l->inode == 0 || l->path[0] != '/')
    return FALSE;
  if (g_str_has_prefix(l->path, "/memfd:") || g_str_has_prefix(l->path, "/SYSV") ||
      strcmp(l->path, "/dev/zero") == 0 || strstr(l->path, ".so") != NULL)
    return FALSE;
  return TRUE;
}

static gboolean
fill_info(const MapsLine *l, VmsMemInfo *ret_info, GError **error)
{
  guint32 page_size;

  if (g_str_has_suffix(l->path, " (deleted)")) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "the guest memory backing file %s has been deleted; " QEMU_OPTIONS_HINT,
                l->path);
    return FALSE;
  }
  if (!vms_memfile_page_size(l->path, &page_size, error))
    return FALSE;
  ret_info->path = g_strdup(l->path);
  ret_info->addr = (guint8 *)(guintptr)l->start;
  ret_info->size = l->end - l->start;
  ret_info->file_offset = l->offset;
  ret_info->shared = l->perms[3] == 's';
  ret_info->page_size = page_size;
  ret_info->dev = makedev(l->dev_major, l->dev_minor);
  ret_info->ino = (ino_t)l->inode;
  return TRUE;
}

/* Picks the mapping: by path (largest range of that file), by exact size
 * (must be unique), or the largest candidate. Returns the index or -1. */
static gssize
pick_mapping(GArray *lines, const char *want_path, guint64 want_size, guint *ret_matches)
{
  gssize best = -1;
  guint matches = 0;

  for (guint i = 0; i < lines->len; i++) {
    MapsLine *l = &g_array_index(lines, MapsLine, i);
    guint64 size = l->end - l->start;
    MapsLine *b = best >= 0 ? &g_array_index(lines, MapsLine, best) : NULL;

    if (!is_candidate(l))
      continue;
    if (want_path != NULL && strcmp(l->path, want_path) != 0)
      continue;
    if (want_path == NULL && want_size != 0 && size != want_size)
      continue;
    matches++;
    if (b == NULL || size > b->end - b->start)
      best = (gssize)i;
  }
  *ret_matches = matches;
  return best;
}

gboolean
vms_memfile_find(const char *maps_text, const char *want_path, guint64 want_size,
                 VmsMemInfo *ret_info, GError **error)
{
  g_autofree char *own_text = NULL;
  g_autofree char *real = NULL;
  g_auto(GStrv) lines = NULL;
  g_autoptr(GArray) parsed = g_array_new(FALSE, TRUE, sizeof(MapsLine));
  guint matches = 0;
  gssize idx;

  if (maps_text == NULL) {
    if (!g_file_get_contents("/proc/self/maps", &own_text, NULL, error))
      return FALSE;
    maps_text = own_text;
  }
  if (want_path != NULL)
    real = realpath(want_path, NULL);
  lines = g_strsplit(maps_text, "\n", -1);
  for (char **p = lines; *p != NULL; p++) {
    MapsLine l;
    if (parse_maps_line(*p, &l))
      g_array_append_val(parsed, l);
  }
  idx = pick_mapping(parsed, real != NULL ? real : want_path, want_size, &matches);
  if (idx < 0 && want_path != NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "mem=%s: this file is not mapped writable by QEMU; mem= must name the "
                "mem-path of the guest's -object memory-backend-file", want_path);
    return FALSE;
  }
  if (idx < 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "no file-backed guest memory of %" G_GUINT64_FORMAT " bytes found in this "
                "process (anonymous or memfd memory cannot be snapshotted); " QEMU_OPTIONS_HINT,
                want_size);
    return FALSE;
  }
  if (want_path == NULL && want_size != 0 && matches > 1) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "%u file mappings of %" G_GUINT64_FORMAT " bytes found; name the guest memory "
                "file with the plugin argument mem=PATH", matches, want_size);
    return FALSE;
  }
  return fill_info(&g_array_index(parsed, MapsLine, idx), ret_info, error);
}

gboolean
vms_memfile_page_size(const char *path, guint32 *ret_page_size, GError **error)
{
  struct statfs sfs;

  if (statfs(path, &sfs) < 0)
    return vms_set_error_errno(error, errno, "cannot statfs %s", path);
  if ((guint64)sfs.f_type == HUGETLBFS_MAGIC)
    *ret_page_size = (guint32)sfs.f_bsize;
  else
    *ret_page_size = (guint32)sysconf(_SC_PAGESIZE);
  return TRUE;
}
