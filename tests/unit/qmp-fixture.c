/* vmsnap unit tests: the socket front-end fixture (qmp-fixture.h). */
#include "qmp-fixture.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "helpers.h"

static gpointer
loop_thread(gpointer data)
{
  Fixture *f = data;

  g_main_context_push_thread_default(f->ctx);
  g_main_loop_run(f->loop);
  g_main_context_pop_thread_default(f->ctx);
  return NULL;
}

void
fixture_dispatch(const char *command, JsonObject *args, VmsReplyFunc reply, gpointer reply_data,
                 gpointer user_data)
{
  Fixture *f = user_data;
  const char *text = json_object_get_string_member_with_default(args, "text", "");

  g_mutex_lock(&f->lock);
  f->dispatched++;
  g_mutex_unlock(&f->lock);
  if (strcmp(command, "echo") == 0) {
    JsonObject *ret = json_object_new();
    json_object_set_string_member(ret, "said", text);
    reply(json_node_init_object(json_node_alloc(), ret), NULL, reply_data);
    json_object_unref(ret);
  } else if (strcmp(command, "fail") == 0) {
    g_autoptr(GError) error = g_error_new_literal(VMS_ERROR, VMS_ERROR_FAILED, text);
    reply(NULL, error, reply_data);
  } else if (strcmp(command, "hold") == 0) {
    g_mutex_lock(&f->lock);
    f->held_data = reply_data;
    f->held = reply;
    g_mutex_unlock(&f->lock);
  } else {
    g_autoptr(GError) error = g_error_new(VMS_ERROR, VMS_ERROR_COMMAND_NOT_FOUND,
                                          "The command %s has not been found", command);
    reply(NULL, error, reply_data);
  }
}

void
fixture_start(Fixture *f)
{
  f->dir = vms_test_tmpdir(NULL);
  f->path = g_build_filename(f->dir, "ctl.sock", NULL);
  g_mutex_init(&f->lock);
  f->ctx = g_main_context_new();
  f->loop = g_main_loop_new(f->ctx, FALSE);
  /* GLib creates the default context (a wakeup pipe) the first time a
   * thread pushes a context: here, not later in a test that has used up
   * every fd on purpose */
  (void)g_main_context_default();
  f->thread = g_thread_new("svc", loop_thread, f);
  while (!g_main_loop_is_running(f->loop))
    g_usleep(1000);
}

void
fixture_setup(Fixture *f, gconstpointer data)
{
  g_autoptr(JsonObject) version = json_object_new();
  g_autoptr(GError) error = NULL;

  fixture_start(f);
  f->server = vms_qmp_server_new(f->path, f->ctx, version, NULL, fixture_dispatch, f, &error);
  g_assert_no_error(error);
}

static gboolean
quit_cb(gpointer data)
{
  g_main_loop_quit(data);
  return G_SOURCE_REMOVE;
}

void
fixture_teardown(Fixture *f, gconstpointer data)
{
  g_main_context_invoke(f->ctx, quit_cb, f->loop);
  g_thread_join(f->thread);
  g_clear_pointer(&f->server, vms_qmp_server_free);
  if (f->front != NULL)
    f->front_free(f->front);
  g_assert_false(g_file_test(f->path, G_FILE_TEST_EXISTS));
  g_main_loop_unref(f->loop);
  g_main_context_unref(f->ctx);
  vms_test_rmtree(f->dir);
  g_free(f->dir);
  g_free(f->path);
  g_mutex_clear(&f->lock);
}

void
wait_held(Fixture *f)
{
  gboolean held = FALSE;

  while (!held) {
    g_usleep(1000);
    g_mutex_lock(&f->lock);
    held = f->held != NULL;
    g_mutex_unlock(&f->lock);
  }
}

void
answer_held(Fixture *f)
{
  VmsReplyFunc reply;

  g_mutex_lock(&f->lock);
  reply = f->held;
  f->held = NULL;
  g_mutex_unlock(&f->lock);
  reply(NULL, NULL, f->held_data);
}

Raw *
raw_connect(const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  Raw *r = g_new0(Raw, 1);
  struct timeval tv = { .tv_sec = 10 };

  g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
  r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_assert_cmpint(connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
  setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  r->buf = g_string_new(NULL);
  return r;
}

void
raw_free(Raw *r)
{
  close(r->fd);
  g_string_free(r->buf, TRUE);
  g_free(r);
}

void
raw_send_len(Raw *r, const char *data, gsize len)
{
  gsize done = 0;

  while (done < len) {
    gssize n = write(r->fd, data + done, len - done);
    g_assert_cmpint(n, >, 0);
    done += (gsize)n;
  }
}

void
raw_send(Raw *r, const char *text)
{
  raw_send_len(r, text, strlen(text));
}

char *
raw_read_until(Raw *r, const char *marker)
{
  for (;;) {
    char *at = strstr(r->buf->str, marker);
    char chunk[65536];
    gssize n;

    if (at != NULL) {
      gsize len = (gsize)(at - r->buf->str) + strlen(marker);
      char *text = g_strndup(r->buf->str, len);
      g_string_erase(r->buf, 0, (gssize)len);
      return text;
    }
    n = read(r->fd, chunk, sizeof(chunk));
    if (n <= 0)
      return NULL;
    g_string_append_len(r->buf, chunk, n);
  }
}

char *
raw_read_line(Raw *r)
{
  char *line = raw_read_until(r, "\n");
  gsize len;

  if (line == NULL)
    return NULL;
  len = strlen(line);
  line[--len] = '\0';
  if (len > 0 && line[len - 1] == '\r')
    line[len - 1] = '\0';
  return line;
}

JsonObject *
raw_read(Raw *r)
{
  g_autofree char *line = raw_read_line(r);
  g_autoptr(JsonParser) p = json_parser_new();

  g_assert_nonnull(line);
  g_assert_true(json_parser_load_from_data(p, line, -1, NULL));
  return json_object_ref(json_node_get_object(json_parser_get_root(p)));
}

const char *
error_class(JsonObject *msg)
{
  JsonObject *err = json_object_get_object_member(msg, "error");

  g_assert_nonnull(err);
  return json_object_get_string_member(err, "class");
}

const char *
error_desc(JsonObject *msg)
{
  JsonObject *err = json_object_get_object_member(msg, "error");

  g_assert_nonnull(err);
  g_assert_nonnull(json_object_get_string_member(err, "class"));
  return json_object_get_string_member(err, "desc");
}
