/* vmsnap core: who may connect to the plugin's sockets (conn.h):
 * SO_PEERCRED against allow-uids= / allow-gid= (doc/spec.md section 11). */
#include "conn.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

void
vms_peer_policy_clear(VmsPeerPolicy *p)
{
  g_clear_pointer(&p->uids, g_free);
  p->n_uids = 0;
  p->gid = -1;
}

static gboolean
parse_id(const char *what, const char *text, guint32 *ret, GError **error)
{
  guint64 v = 0;

  if (!g_ascii_string_to_unsigned(text, 10, 0, G_MAXUINT32 - 1, &v, NULL)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "bad %s '%s': expected a number", what, text);
    return FALSE;
  }
  *ret = (guint32)v;
  return TRUE;
}

gboolean
vms_peer_policy_parse_uids(VmsPeerPolicy *p, const char *text, GError **error)
{
  g_auto(GStrv) parts = g_strsplit(text, ":", -1);
  guint n = g_strv_length(parts);
  g_autofree guint32 *uids = g_new0(guint32, p->n_uids + n + 1);

  if (p->n_uids > 0) /* memcpy from NULL is undefined even for 0 bytes */
    memcpy(uids, p->uids, p->n_uids * sizeof(guint32));
  for (guint i = 0; i < n; i++)
    if (!parse_id("uid", parts[i], &uids[p->n_uids + i], error))
      return FALSE;
  g_free(p->uids);
  p->uids = g_steal_pointer(&uids);
  p->n_uids += n;
  return TRUE;
}

gboolean
vms_peer_policy_parse_gid(VmsPeerPolicy *p, const char *text, GError **error)
{
  guint32 gid;

  if (!parse_id("gid", text, &gid, error))
    return FALSE;
  p->gid = gid;
  return TRUE;
}

/* Whether process @pid has @gid among its supplementary groups. */
static gboolean
pid_in_group(gint pid, guint32 gid)
{
  g_autofree char *path = g_strdup_printf("/proc/%d/status", pid);
  g_autofree char *text = NULL;
  const char *line;
  g_autofree char *list = NULL;
  g_auto(GStrv) groups = NULL;

  if (!g_file_get_contents(path, &text, NULL, NULL) ||
      (line = strstr(text, "\nGroups:")) == NULL)
    return FALSE;
  line += strlen("\nGroups:");
  list = g_strndup(line, strcspn(line, "\n"));
  groups = g_strsplit_set(list, " \t", -1);
  for (char **g = groups; *g != NULL; g++)
    if (**g != '\0' && g_ascii_strtoull(*g, NULL, 10) == gid)
      return TRUE;
  return FALSE;
}

gboolean
vms_peer_policy_allows(const VmsPeerPolicy *p, guint32 uid, guint32 gid, gint pid)
{
  if (uid == getuid())
    return TRUE;
  for (guint i = 0; p != NULL && i < p->n_uids; i++)
    if (p->uids[i] == uid)
      return TRUE;
  return p != NULL && p->gid >= 0 && (gid == (guint32)p->gid || pid_in_group(pid, (guint32)p->gid));
}

/* The peer's credentials, or FALSE when the kernel gives none. */
gboolean
vms_socket_peer_cred(GSocket *sock, guint32 *ret_uid, guint32 *ret_gid, gint *ret_pid)
{
  g_autoptr(GCredentials) cred = g_socket_get_credentials(sock, NULL);
  const struct ucred *uc;

  if (cred == NULL)
    return FALSE;
  uc = g_credentials_get_native(cred, G_CREDENTIALS_TYPE_LINUX_UCRED);
  if (uc == NULL)
    return FALSE;
  *ret_uid = uc->uid;
  *ret_gid = uc->gid;
  *ret_pid = uc->pid;
  return TRUE;
}

/* Opens the socket file to the peers @policy lets in: a group (0660, that
 * group) and/or other uids (0666; SO_PEERCRED still decides). */
gboolean
vms_peer_policy_apply_mode(const VmsPeerPolicy *policy, const char *path, GError **error)
{
  mode_t mode = 0600;

  if (policy->gid >= 0) {
    if (chown(path, (uid_t)-1, (gid_t)policy->gid) < 0)
      return vms_set_error_errno(error, errno, "cannot give socket %s to group %" G_GINT64_FORMAT,
                                 path, policy->gid);
    mode = 0660;
  }
  for (guint i = 0; i < policy->n_uids; i++)
    if (policy->uids[i] != getuid() && policy->uids[i] != 0)
      mode = 0666;
  if (chmod(path, mode) < 0)
    return vms_set_error_errno(error, errno, "cannot chmod socket %s", path);
  return TRUE;
}

