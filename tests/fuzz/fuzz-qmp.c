/* vmsnap fuzz target: the control socket as a peer sees it. Two parts per
 * input:
 *  - framing: the input is fed to the splitter in pieces whose sizes come
 *    from the input itself; every value it returns must be a bracketed
 *    text within the size bound, and parsing it must either give an object
 *    or an error;
 *  - the server: the input goes, after qmp_capabilities, through a real
 *    control socket (the server on its own thread, an echo dispatch that
 *    answers with the arguments it got), and every line that comes back —
 *    replies with their echoed ids, errors — must be one JSON object that
 *    json-glib reads, each answering a message, until the server closes
 *    after the half-close. Input up to 256 KiB, so nesting and size limits
 *    are reached too. */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "qmp-private.h"
#include "qmp.h"

#define MAX_MESSAGE 256
#define FUZZ_MAX_INPUT (256u * 1024)

static void
drain(VmsJsonSplitter *s)
{
  for (;;) {
    g_autofree char *text = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) node = NULL;
    gsize len;

    if (!vms_json_splitter_next(s, &text, &error))
      return;
    if (text == NULL) {
      g_assert_nonnull(error);
      continue;
    }
    len = strlen(text);
    g_assert_cmpuint(len, >=, 2);
    g_assert_cmpuint(len, <=, MAX_MESSAGE);
    g_assert_true(text[0] == '{' || text[0] == '[');
    g_assert_true(text[len - 1] == '}' || text[len - 1] == ']');
    node = vms_qmp_parse_object(text, &error);
    g_assert_true((node != NULL) != (error != NULL));
    if (node != NULL)
      g_assert_true(JSON_NODE_HOLDS_OBJECT(node));
  }
}

static void
fuzz_framing(const uint8_t *data, size_t size)
{
  g_autoptr(VmsJsonSplitter) s = vms_json_splitter_new(MAX_MESSAGE);
  size_t pos = 0;

  while (pos < size) {
    size_t chunk = 1 + data[pos] % 64;
    if (chunk > size - pos)
      chunk = size - pos;
    vms_json_splitter_feed(s, (const char *)data + pos, chunk);
    drain(s);
    pos += chunk;
  }
}

/* Answers every command with its own arguments (any JSON a peer sent). */
static void
echo_dispatch(const char *command, JsonObject *args, VmsReplyFunc reply, gpointer reply_data,
              gpointer user_data)
{
  JsonNode *ret = json_node_init_object(json_node_alloc(), args);

  if (strcmp(command, "fail") == 0) {
    g_autoptr(GError) error = g_error_new(G_IO_ERROR, G_IO_ERROR_FAILED, "failed: %s", command);
    json_node_unref(ret);
    reply(NULL, error, reply_data);
    return;
  }
  reply(ret, NULL, reply_data);
}

static gpointer
run_loop(gpointer loop)
{
  g_main_context_push_thread_default(g_main_loop_get_context(loop));
  g_main_loop_run(loop);
  return NULL;
}

/* One server for the whole run (it lives until the process exits). */
static const char *
server_path(void)
{
  static char *path;
  static VmsQmpServer *server;

  if (path == NULL) {
    g_autofree char *dir = g_dir_make_tmp("vmsnap-fuzz-qmp-XXXXXX", NULL);
    GMainContext *ctx = g_main_context_new();
    g_autoptr(JsonObject) version = json_object_new();

    g_assert_nonnull(dir);
    path = g_build_filename(dir, "ctl.sock", NULL);
    server = vms_qmp_server_new(path, ctx, version, NULL, echo_dispatch, NULL, NULL);
    g_assert_nonnull(server);
    g_thread_unref(g_thread_new("fuzz-svc", run_loop, g_main_loop_new(ctx, FALSE)));
  }
  return path;
}

typedef struct {
  int fd;
  const uint8_t *data;
  size_t size;
} Writer;

static gpointer
write_all(gpointer p)
{
  Writer *w = p;
  static const char caps[] = "{\"execute\": \"qmp_capabilities\"}";
  size_t done = 0;

  g_assert_cmpint(write(w->fd, caps, strlen(caps)), ==, (gssize)strlen(caps));
  while (done < w->size) {
    gssize n = write(w->fd, w->data + done, w->size - done);
    if (n <= 0)
      break; /* the server may drop us (output cap): fine */
    done += (size_t)n;
  }
  shutdown(w->fd, SHUT_WR);
  return NULL;
}

static void
check_line(const char *line)
{
  g_autoptr(JsonParser) p = json_parser_new();
  g_autoptr(GError) error = NULL;
  JsonObject *o;

  if (!json_parser_load_from_data(p, line, -1, &error))
    g_error("the server sent invalid JSON (%s): %.200s", error->message, line);
  g_assert_true(JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)));
  o = json_node_get_object(json_parser_get_root(p));
  g_assert_true(json_object_has_member(o, "return") || json_object_has_member(o, "error") ||
                json_object_has_member(o, "QMP"));
}

static void
fuzz_server(const uint8_t *data, size_t size)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  Writer w = { .data = data, .size = MIN(size, FUZZ_MAX_INPUT) };
  g_autoptr(GString) in = g_string_new(NULL);
  GThread *writer;
  char buf[65536];
  gssize n;
  char *nl;

  g_strlcpy(sa.sun_path, server_path(), sizeof(sa.sun_path));
  w.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_assert_cmpint(connect(w.fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
  writer = g_thread_new("fuzz-writer", write_all, &w);
  while ((n = read(w.fd, buf, sizeof(buf))) > 0) {
    g_string_append_len(in, buf, n);
    while ((nl = strstr(in->str, "\r\n")) != NULL) {
      *nl = '\0';
      check_line(in->str);
      g_string_erase(in, 0, nl - in->str + 2);
    }
  }
  g_assert_cmpuint(in->len, ==, 0); /* every message ends with \r\n */
  g_thread_join(writer);
  close(w.fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  fuzz_framing(data, size);
  fuzz_server(data, size);
  return 0;
}
