/* vmsnap core: the QMP wire protocol — framing, client, server, sockets.
 *
 * This file: the splitter, the listening sockets and shared helpers
 * (qmp-private.h); the client is in qmp-client.c, the server in
 * qmp-server.c.
 */
#include "qmp.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "qmp-private.h"
#include "util.h"

/* ======================= framing ======================= */

struct _VmsJsonSplitter {
  GString *buf;
  gsize max;
  gsize pos;        /* next byte to scan */
  gssize start;     /* start of the value being scanned; -1 between values
                     * and while skipping */
  guint depth;
  gboolean in_str;
  gboolean esc;
  gboolean skipping; /* inside an oversized or too deep value: bytes are dropped */
};

VmsJsonSplitter *
vms_json_splitter_new(gsize max_message)
{
  VmsJsonSplitter *s = g_new0(VmsJsonSplitter, 1);

  s->buf = g_string_new(NULL);
  s->max = max_message;
  s->start = -1;
  return s;
}

void
vms_json_splitter_free(VmsJsonSplitter *s)
{
  if (s == NULL)
    return;
  g_string_free(s->buf, TRUE);
  g_free(s);
}

void
vms_json_splitter_feed(VmsJsonSplitter *s, const char *data, gsize len)
{
  g_string_append_len(s->buf, data, (gssize)len);
}

/* Drops the first @n buffered bytes. */
static void
splitter_consume(VmsJsonSplitter *s, gsize n)
{
  g_string_erase(s->buf, 0, (gssize)n);
  s->pos -= n;
  if (s->start >= 0)
    s->start -= (gssize)n;
}

static gboolean
is_json_space(char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Outside any value: skips whitespace; a run of other bytes that cannot start
 * a value is dropped and reported once. */
static gboolean
splitter_between_values(VmsJsonSplitter *s, char c, GError **error)
{
  if (is_json_space(c))
    return FALSE;
  if (c == '{' || c == '[') {
    s->depth = 1;
    s->start = (gssize)s->pos - 1;
    return FALSE;
  }
  /* One error per run of garbage: up to the end of the line or the next
   * thing that can start a value. */
  while (s->pos < s->buf->len) {
    char n = s->buf->str[s->pos];
    if (n == '\n' || n == '{' || n == '[')
      break;
    s->pos++;
  }
  splitter_consume(s, s->pos);
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "JSON parse error, expecting a JSON object (got '%c')", c);
  return TRUE;
}

/* A byte that cannot appear in JSON outside a string. (Letters can: they
 * make true, false and null; the parser judges those.) */
static gboolean
is_stray(char c)
{
  return !(is_json_space(c) || g_ascii_isalnum(c) || strchr("{}[],:-+.\"", c) != NULL) ||
         c == '\0';
}

static char *
stray_name(char c)
{
  return g_ascii_isgraph(c) ? g_strdup_printf("%c", c) : g_strdup_printf("\\x%02x", (guchar)c);
}

/* Drops the value scanned so far, through the current byte (QEMU resets
 * its parser the same way after a bad token). */
static void
splitter_reset(VmsJsonSplitter *s)
{
  s->depth = 0;
  s->in_str = FALSE;
  s->esc = FALSE;
  s->start = -1;
  splitter_consume(s, s->pos);
}

/* Refuses the value being scanned (too large, too deep) once; its bytes
 * are dropped up to its end. */
static gboolean G_GNUC_PRINTF(3, 4)
splitter_refuse(VmsJsonSplitter *s, GError **error, const char *format, ...)
{
  va_list ap;

  s->skipping = s->depth > 0;
  s->start = -1;
  splitter_consume(s, s->pos);
  va_start(ap, format);
  g_propagate_error(error, g_error_new_valist(VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, format, ap));
  va_end(ap);
  return TRUE;
}

gboolean
vms_json_splitter_next(VmsJsonSplitter *s, char **ret_text, GError **error)
{
  *ret_text = NULL;
  while (s->pos < s->buf->len) {
    char c = s->buf->str[s->pos++];

    if (s->depth == 0) {
      if (splitter_between_values(s, c, error))
        return TRUE;
      continue;
    }
    if (s->in_str) {
      if (s->esc)
        s->esc = FALSE;
      else if (c == '\\')
        s->esc = TRUE;
      else if (c == '"')
        s->in_str = FALSE;
    } else if (c == '"') {
      s->in_str = TRUE;
    } else if (c == '{' || c == '[') {
      s->depth++;
    } else if (c == '}' || c == ']') {
      s->depth--;
    } else if (!s->skipping && is_stray(c)) {
      g_autofree char *name = stray_name(c);
      splitter_reset(s);
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                  "JSON parse error, stray '%s'", name);
      return TRUE;
    }
    if (!s->skipping && s->depth > VMS_JSON_MAX_DEPTH)
      return splitter_refuse(s, error, "JSON nesting depth limit exceeded (more than %u levels)",
                             VMS_JSON_MAX_DEPTH);
    if (!s->skipping && s->pos - (gsize)s->start > s->max)
      return splitter_refuse(s, error, "JSON message too large (more than %u bytes)",
                             (guint)s->max);
    if (s->depth == 0 && s->skipping) {
      /* the end of an oversized value, already reported */
      s->skipping = FALSE;
      splitter_consume(s, s->pos);
    } else if (s->depth == 0) {
      gsize len = s->pos - (gsize)s->start;
      /* JSON text never holds a NUL byte; the C string would end there */
      if (memchr(s->buf->str + s->start, '\0', len) == NULL)
        *ret_text = g_strndup(s->buf->str + s->start, len);
      else
        g_set_error_literal(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                            "JSON parse error, NUL byte in the input");
      s->start = -1;
      splitter_consume(s, s->pos);
      return TRUE;
    }
  }
  if (s->skipping)
    splitter_consume(s, s->pos);
  return FALSE;
}

/* ======================= sockets ======================= */

gboolean
vms_qmp_fill_sockaddr(const char *path, struct sockaddr_un *sa, GError **error)
{
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sa->sun_path)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "socket path %s is too long (%zu bytes, at most %zu)", path, strlen(path),
                sizeof(sa->sun_path) - 1);
    return FALSE;
  }
  strcpy(sa->sun_path, path);
  return TRUE;
}

/* Removes a socket file at @path that nobody listens on; refuses any other
 * file and a socket that is in use. */
static gboolean
remove_stale_socket(const char *path, const struct sockaddr_un *sa, GError **error)
{
  struct stat st;
  vms_autofd probe = -1;

  if (lstat(path, &st) < 0)
    return errno == ENOENT ? TRUE : vms_set_error_errno(error, errno, "cannot stat %s", path);
  if (!S_ISSOCK(st.st_mode)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_EXISTS,
                "%s exists and is not a socket; refusing to replace it", path);
    return FALSE;
  }
  probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0)
    return vms_set_error_errno(error, errno, "socket()");
  if (connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_BUSY,
                "socket %s is in use by another process", path);
    return FALSE;
  }
  if (unlink(path) < 0 && errno != ENOENT)
    return vms_set_error_errno(error, errno, "cannot remove stale socket %s", path);
  return TRUE;
}

GSocket *
vms_unix_listen(const char *path, GError **error)
{
  struct sockaddr_un sa;
  vms_autofd fd = -1;
  GSocket *sock;

  if (!vms_qmp_fill_sockaddr(path, &sa, error) || !remove_stale_socket(path, &sa, error))
    return NULL;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return vms_set_error_errno(error, errno, "socket()"), NULL;
  if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0)
    return vms_set_error_errno(error, errno, "cannot bind socket %s", path), NULL;
  /* Nobody can connect before listen(), so fixing the mode here leaves no
   * window in which another user could get in, and needs no process-wide
   * umask change (QEMU's other threads run concurrently). */
  if (chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
    int saved = errno;
    unlink(path);
    return vms_set_error_errno(error, saved, "cannot listen on %s", path), NULL;
  }
  sock = g_socket_new_from_fd(fd, error);
  if (sock == NULL) {
    unlink(path);
    return NULL;
  }
  g_steal_fd(&fd);
  return sock;
}

JsonNode *
vms_qmp_parse_object(const char *text, GError **error)
{
  g_autoptr(JsonNode) root = vms_json_parse_bounded(text, error);

  if (root == NULL)
    return NULL;
  if (!JSON_NODE_HOLDS_OBJECT(root)) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                        "QMP input must be a JSON object");
    return NULL;
  }
  return g_steal_pointer(&root);
}

JsonObject *
vms_json_get_object(JsonObject *obj, const char *name)
{
  JsonNode *n = obj != NULL ? json_object_get_member(obj, name) : NULL;

  return n != NULL && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

JsonArray *
vms_json_get_array(JsonObject *obj, const char *name)
{
  JsonNode *n = obj != NULL ? json_object_get_member(obj, name) : NULL;

  return n != NULL && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

char *
vms_qmp_object_to_line(JsonObject *obj)
{
  g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), obj);
  g_autofree char *text = vms_json_to_text(node);

  return g_strconcat(text, "\r\n", NULL);
}
