/* vmsnap CLI: how `vmsnap restore` maps the guest RAM (cli.h,
 * vms_cli_restore_placeholder). The RAM overlay where it can be kept
 * correct (overlay.h), else the private share=off mapping with one line
 * that says why (doc/diff.md, "The RAM overlay"). */
#include "cli.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "overlay.h"
#include "snapdir.h"
#include "util.h"

/* Why the overlay cannot be used for this restore (NULL: it can). */
static char *
overlay_refusal(VmsSnapshot *state_snap, const VmsManifest *m, const char *const *argv,
                const char *const *extra)
{
  /* The target page size and block name as saved. A manifest from before
   * they were recorded (0, "") leaves them to the stream; a stream that does
   * not say its page size (x86's) is then not read: the private mapping. */
  VmsStripGuest guest = { .ram_size = m->memory_size_bytes,
                          .ram_block = m->ram_block != NULL && m->ram_block[0] != '\0'
                                           ? m->ram_block : NULL,
                          .target_page_size = m->target_page_size };
  g_autoptr(GError) error = NULL;

  if (!vms_overlay_check_argv(argv, &error) ||
      (extra != NULL && !vms_overlay_check_argv(extra, &error)))
    return g_strdup(error->message);
  vms_autofd fd = vms_snapshot_open_file(state_snap, VMS_STATE_FILE, O_RDONLY, &error);
  if (fd < 0 || !vms_overlay_check_state(fd, &guest, &error))
    return g_strdup(error->message);
  return NULL;
}

char *
vms_cli_restore_placeholder(const char *mode, VmsSnapshot *state_snap, const VmsManifest *m,
                            const char *const *extra, const char *rdir, GError **error)
{
  if (g_strcmp0(mode, "private") == 0)
    return NULL;
  if (mode != NULL && !g_str_equal(mode, "overlay") && !g_str_equal(mode, "auto")) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                "--ram %s: expected auto, overlay or private", mode);
    return NULL;
  }
  g_autofree char **argv = g_new0(char *, m->n_qemu_argv + 1); /* NULL-terminated */
  memcpy(argv, m->qemu_argv, m->n_qemu_argv * sizeof(char *));
  g_autofree char *why = overlay_refusal(state_snap, m, (const char *const *)argv, extra);
  if (why == NULL)
    return g_build_filename(rdir, VMS_OVERLAY_PLACEHOLDER, NULL);
  if (g_strcmp0(mode, "overlay") == 0) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--ram overlay: %s", why);
    return NULL;
  }
  fprintf(stderr, "vmsnap: guest RAM mapped private (share=off), not as an overlay: %s; "
                  "a diff save of this clone streams all its RAM (doc/diff.md)\n", why);
  return NULL;
}
