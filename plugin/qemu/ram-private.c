/* vmsnap plugin: the share=off restore's guard of the memory file (ram-private.h). */
#include "ram-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "relaunch.h"
#include "restore.h"
#include "util.h"

/* Puts a read-only descriptor of @path at @fd, keeping @fd's FD_CLOEXEC. */
static gboolean
reopen_read_only(int fd, const char *path, GError **error)
{
  int fdflags = fcntl(fd, F_GETFD);
  vms_autofd ro = open(path, O_RDONLY | O_CLOEXEC);

  if (ro < 0 || fdflags < 0)
    return vms_set_error_errno(error, errno, "failed to reopen %s read-only", path);
  if (dup3(ro, fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
    return vms_set_error_errno(error, errno, "failed to put a read-only %s at descriptor %d",
                               path, fd);
  return TRUE;
}

gboolean
vms_ram_private_guard(guint *ret_reopened, GError **error)
{
  g_auto(GStrv) argv = vms_restore_read_cmdline();
  g_autofree char *mem_path = NULL;
  g_autoptr(GDir) dir = NULL;
  guint64 size = 0;
  gboolean share = TRUE;
  struct stat want;
  const char *name;

  *ret_reopened = 0;
  if (argv == NULL ||
      !vms_relaunch_find_memory((const char *const *)argv, &mem_path, &size, &share, NULL) ||
      share)
    return TRUE;
  if (stat(mem_path, &want) < 0)
    return vms_set_error_errno(error, errno, "memory: %s", mem_path);
  dir = g_dir_open("/proc/self/fd", 0, error);
  if (dir == NULL)
    return FALSE;
  while ((name = g_dir_read_name(dir)) != NULL) {
    int fd = atoi(name);
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_dev != want.st_dev || st.st_ino != want.st_ino ||
        (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY)
      continue;
    if (!reopen_read_only(fd, mem_path, error)) {
      g_prefix_error(error, "memory: ");
      return FALSE;
    }
    (*ret_reopened)++;
  }
  return TRUE;
}
