/* Unit tests for qmp.c / qmp-server.c: framing, the control-socket server,
 * the client (against a scripted fake QEMU), listening sockets. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "helpers.h"
#include "qmp.h"
#include "qmp-fixture.h"

/* ---- splitter ---- */

static char *
next_text(VmsJsonSplitter *s, gboolean *ret_error)
{
  g_autoptr(GError) error = NULL;
  char *text = NULL;

  *ret_error = FALSE;
  if (!vms_json_splitter_next(s, &text, &error))
    return NULL;
  *ret_error = text == NULL;
  return text;
}

static void
test_splitter(void)
{
  g_autoptr(VmsJsonSplitter) s = vms_json_splitter_new(64);
  g_autofree char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  gboolean err;
  static const char in[] = "{\"a\": \"}{\\\"\"}  {\"b\": [1, {\"c\": 2}]}\n{\"part";

  vms_json_splitter_feed(s, in, strlen(in));
  a = next_text(s, &err);
  g_assert_cmpstr(a, ==, "{\"a\": \"}{\\\"\"}");
  b = next_text(s, &err);
  g_assert_cmpstr(b, ==, "{\"b\": [1, {\"c\": 2}]}");
  g_assert_null(next_text(s, &err));
  g_assert_false(err);
  vms_json_splitter_feed(s, "\": 1}", 5);
  c = next_text(s, &err);
  g_assert_cmpstr(c, ==, "{\"part\": 1}");
  /* a run of garbage is reported once, then the stream carries on */
  vms_json_splitter_feed(s, "hello world {}", 14);
  g_assert_null(next_text(s, &err));
  g_assert_true(err);
  d = next_text(s, &err);
  g_assert_cmpstr(d, ==, "{}");
}

static void
test_splitter_oversized(void)
{
  g_autoptr(VmsJsonSplitter) s = vms_json_splitter_new(16);
  g_autofree char *big = g_strnfill(100, 'x');
  g_autofree char *msg = g_strdup_printf("{\"k\": \"%s\"} {\"ok\": 1}", big);
  g_autofree char *next = NULL;
  gboolean err;

  /* fed byte by byte: the oversized value is refused once, then skipped */
  for (const char *p = msg; *p != '\0'; p++)
    vms_json_splitter_feed(s, p, 1);
  g_assert_null(next_text(s, &err));
  g_assert_true(err);
  next = next_text(s, &err);
  g_assert_cmpstr(next, ==, "{\"ok\": 1}");
}

/* Found by fuzz-qmp: a NUL byte inside a value, and a value exactly one
 * byte over the limit that ends on that byte, are refused. */
static void
test_splitter_edges(void)
{
  g_autoptr(VmsJsonSplitter) s = vms_json_splitter_new(8);
  g_autofree char *ok = NULL;
  gboolean err;
  static const char nul[] = "{\"a\0\"}";
  static const char nine[] = "{\"abcde\"}"; /* 9 bytes */

  vms_json_splitter_feed(s, nul, sizeof(nul) - 1);
  g_assert_null(next_text(s, &err));
  g_assert_true(err);
  vms_json_splitter_feed(s, nine, sizeof(nine) - 1);
  g_assert_null(next_text(s, &err));
  g_assert_true(err);
  vms_json_splitter_feed(s, "{\"ab\":1}", 8);
  ok = next_text(s, &err);
  g_assert_cmpstr(ok, ==, "{\"ab\":1}");
}

static void
test_server_protocol(Fixture *f, gconstpointer data)
{
  Raw *r = raw_connect(f->path);
  g_autoptr(JsonObject) greeting = raw_read(r);
  JsonObject *m;
  struct stat st;

  g_assert_cmpint(stat(f->path, &st), ==, 0);
  g_assert_cmpint(st.st_mode & 0777, ==, 0600);
  g_assert_true(json_object_has_member(greeting, "QMP"));
  raw_send(r, "{\"execute\": \"echo\"}\n");
  m = raw_read(r);
  g_assert_nonnull(strstr(error_desc(m), "qmp_capabilities"));
  json_object_unref(m);
  raw_send(r, "{\"execute\": \"qmp_capabilities\"}");
  m = raw_read(r);
  g_assert_true(json_object_has_member(m, "return"));
  json_object_unref(m);
  /* malformed, not an object, unknown member, bad types, unknown command:
   * each an error, the connection stays */
  raw_send(r, "{\"execute\": }\n[1, 2]\n{\"execute\": \"echo\", \"bogus\": 1}\n"
              "{\"execute\": 5}\n{\"execute\": \"echo\", \"arguments\": 3}\n"
              "{\"execute\": \"nope\", \"id\": {\"n\": 7}}\n");
  for (int i = 0; i < 6; i++) {
    m = raw_read(r);
    g_assert_nonnull(error_desc(m));
    if (i == 5)
      g_assert_cmpint(json_object_get_int_member(json_object_get_object_member(m, "id"), "n"),
                      ==, 7);
    json_object_unref(m);
  }
  raw_send(r, "{\"execute\": \"echo\", \"arguments\": {\"text\": \"hi\"}, \"id\": \"x1\"}");
  m = raw_read(r);
  g_assert_cmpstr(json_object_get_string_member(m, "id"), ==, "x1");
  g_assert_cmpstr(json_object_get_string_member(json_object_get_object_member(m, "return"), "said"),
                  ==, "hi");
  json_object_unref(m);
  raw_free(r);
}

static void
test_server_events(Fixture *f, gconstpointer data)
{
  Raw *r = raw_connect(f->path);
  Raw *unnegotiated = raw_connect(f->path);
  JsonObject *m, *ev = json_object_new();

  json_object_unref(raw_read(r));
  json_object_unref(raw_read(unnegotiated));
  raw_send(r, "{\"execute\": \"qmp_capabilities\"}");
  json_object_unref(raw_read(r));
  json_object_set_string_member(ev, "dir", "/x");
  vms_qmp_server_emit(f->server, "VMSNAP_TEST", ev);
  m = raw_read(r);
  g_assert_cmpstr(json_object_get_string_member(m, "event"), ==, "VMSNAP_TEST");
  g_assert_true(json_object_has_member(json_object_get_object_member(m, "timestamp"), "seconds"));
  g_assert_true(
      json_object_has_member(json_object_get_object_member(m, "timestamp"), "microseconds"));
  json_object_unref(m);
  /* the unnegotiated client got no event: its next message is this reply */
  raw_send(unnegotiated, "{\"execute\": \"qmp_capabilities\"}");
  m = raw_read(unnegotiated);
  g_assert_true(json_object_has_member(m, "return"));
  json_object_unref(m);
  raw_free(r);
  raw_free(unnegotiated);
}

/* A client that hangs up before its reply: the late reply is dropped and
 * the server keeps serving others. */
static void
test_server_client_gone(Fixture *f, gconstpointer data)
{
  Raw *r = raw_connect(f->path);
  Raw *other;
  JsonObject *m;

  json_object_unref(raw_read(r));
  raw_send(r, "{\"execute\": \"qmp_capabilities\"}{\"execute\": \"hold\"}");
  json_object_unref(raw_read(r));
  wait_held(f);
  raw_free(r);
  g_usleep(50 * 1000);
  answer_held(f);
  other = raw_connect(f->path);
  json_object_unref(raw_read(other));
  raw_send(other, "{\"execute\": \"qmp_capabilities\"}");
  m = raw_read(other);
  g_assert_true(json_object_has_member(m, "return"));
  json_object_unref(m);
  raw_free(other);
}

/* ---- listening sockets ---- */

/* One connection's commands run in order, each answered before the next
 * starts; another connection is not held up meanwhile. */
static void
test_server_order(Fixture *f, gconstpointer data)
{
  Raw *r = raw_connect(f->path);
  Raw *other = raw_connect(f->path);
  struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
  JsonObject *m;

  json_object_unref(raw_read(r));
  raw_send(r, "{\"execute\": \"qmp_capabilities\"}{\"execute\": \"hold\", \"id\": 1}"
              "{\"execute\": \"echo\", \"arguments\": {\"text\": \"second\"}, \"id\": 2}");
  json_object_unref(raw_read(r));
  wait_held(f);
  /* The echo waits behind the held command... */
  g_assert_cmpint(poll(&pfd, 1, 200), ==, 0);
  g_assert_cmpuint(r->buf->len, ==, 0);
  /* ...while another connection is served at once. */
  json_object_unref(raw_read(other));
  raw_send(other, "{\"execute\": \"qmp_capabilities\"}{\"execute\": \"echo\", \"id\": 9}");
  json_object_unref(raw_read(other));
  m = raw_read(other);
  g_assert_cmpint(json_object_get_int_member(m, "id"), ==, 9);
  json_object_unref(m);

  answer_held(f);
  m = raw_read(r);
  g_assert_cmpint(json_object_get_int_member(m, "id"), ==, 1);
  json_object_unref(m);
  m = raw_read(r);
  g_assert_cmpint(json_object_get_int_member(m, "id"), ==, 2);
  g_assert_cmpstr(json_object_get_string_member(json_object_get_object_member(m, "return"), "said"),
                  ==, "second");
  json_object_unref(m);
  raw_free(other);
  raw_free(r);
}

static void
test_listen_files(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *path = g_build_filename(dir, "s.sock", NULL);
  g_autofree char *file = g_build_filename(dir, "regular", NULL);
  g_autoptr(GError) error = NULL;
  GSocket *a, *b;

  a = vms_unix_listen(path, &error);
  g_assert_no_error(error);
  /* in use: refused */
  g_assert_null(vms_unix_listen(path, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_BUSY);
  g_clear_error(&error);
  /* stale (nobody listens): replaced */
  g_socket_close(a, NULL);
  g_object_unref(a);
  g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
  b = vms_unix_listen(path, &error);
  g_assert_no_error(error);
  g_object_unref(b);
  /* any other file: refused, untouched */
  vms_test_write_pattern(file, 10, 3);
  g_assert_null(vms_unix_listen(file, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_EXISTS);
  g_assert_true(g_file_test(file, G_FILE_TEST_IS_REGULAR));
  vms_test_rmtree(dir);
}

/* ---- the client, against a scripted fake QEMU ---- */

typedef struct {
  int listen_fd;
  int received_fd;     /* the fd passed with getfd */
  char received_byte;
} FakeQemu;

/* Reads one newline-less QMP request (up to the closing brace), collecting
 * an SCM_RIGHTS fd if one comes along. */
static JsonObject *
fake_read(int fd, FakeQemu *q)
{
  g_autoptr(VmsJsonSplitter) s = vms_json_splitter_new(65536);

  for (;;) {
    g_autofree char *text = NULL;
    char buf[4096];
    union {
      char b[CMSG_SPACE(sizeof(int))];
      struct cmsghdr a;
    } u;
    struct iovec iov = { buf, 1 }; /* byte by byte: never read past one message */
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
                          .msg_controllen = sizeof(u.b) };
    ssize_t n;

    if (vms_json_splitter_next(s, &text, NULL) && text != NULL) {
      g_autoptr(JsonParser) p = json_parser_new();
      g_assert_true(json_parser_load_from_data(p, text, -1, NULL));
      return json_object_ref(json_node_get_object(json_parser_get_root(p)));
    }
    n = recvmsg(fd, &msg, 0);
    if (n <= 0)
      return NULL;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
      if (c->cmsg_type == SCM_RIGHTS)
        memcpy(&q->received_fd, CMSG_DATA(c), sizeof(int));
    vms_json_splitter_feed(s, buf, (gsize)n);
  }
}

static void
fake_write(int fd, const char *text)
{
  g_assert_cmpint(write(fd, text, strlen(text)), ==, (gssize)strlen(text));
}

static gpointer
fake_qemu_thread(gpointer data)
{
  FakeQemu *q = data;
  int fd = accept4(q->listen_fd, NULL, NULL, SOCK_CLOEXEC);
  JsonObject *m;

  fake_write(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, \"capabilities\": []}}\r\n");
  while ((m = fake_read(fd, q)) != NULL) {
    const char *cmd = json_object_get_string_member(m, "execute");
    const char *id = json_object_get_string_member_with_default(m, "id", "");
    g_autofree char *reply = NULL;

    if (strcmp(cmd, "getfd") == 0 && q->received_fd >= 0)
      g_assert_cmpint(pread(q->received_fd, &q->received_byte, 1, 0), ==, 1);
    if (strcmp(cmd, "migrate") == 0) {
      /* an event before the reply, one after: both must be seen */
      fake_write(fd, "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"setup\"}}\r\n");
      reply = g_strdup_printf("{\"return\": {}, \"id\": \"%s\"}\r\n"
                              "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}\r\n",
                              id);
    } else if (strcmp(cmd, "bad") == 0) {
      reply = g_strdup_printf("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no way\"}, "
                              "\"id\": \"%s\"}\r\n", id);
    } else if (strcmp(cmd, "qmp_capabilities") == 0) {
      reply = g_strdup("{\"return\": {}}\r\n");
    } else {
      reply = g_strdup_printf("{\"return\": {\"cmd\": \"%s\"}, \"id\": \"%s\"}\r\n", cmd, id);
    }
    fake_write(fd, reply);
    json_object_unref(m);
  }
  close(fd);
  return NULL;
}

static gboolean
is_completed(const char *event, JsonObject *data, gpointer user_data)
{
  return g_strcmp0(json_object_get_string_member_with_default(data, "status", ""), "completed") == 0;
}

static gpointer
run_loop(gpointer loop)
{
  g_main_loop_run(loop);
  return NULL;
}

static gboolean
quit_cb(gpointer data)
{
  g_main_loop_quit(data);
  return G_SOURCE_REMOVE;
}

static void
test_client(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *path = g_build_filename(dir, "qemu.sock", NULL);
  g_autofree char *file = g_build_filename(dir, "passed", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GMainContext) ctx = g_main_context_new();
  g_autoptr(GMainLoop) loop = g_main_loop_new(ctx, FALSE);
  g_autoptr(GSocket) listener = NULL;
  FakeQemu q = { .received_fd = -1 };
  g_autoptr(VmsQmpClient) c = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonObject) ev = NULL;
  GThread *fake, *svc;
  guint64 seq;
  int fd;

  c = vms_qmp_client_new(path, ctx, NULL, NULL);
  /* nobody listens yet: the connect gives up after its timeout */
  g_assert_false(vms_qmp_client_connect_sync(c, 50, &error));
  g_clear_error(&error);
  listener = vms_unix_listen(path, &error);
  g_assert_no_error(error);
  q.listen_fd = g_socket_get_fd(listener);
  /* GSocket made it non-blocking; the fake accepts with a plain blocking call */
  fcntl(q.listen_fd, F_SETFL, fcntl(q.listen_fd, F_GETFL) & ~O_NONBLOCK);
  fake = g_thread_new("fake-qemu", fake_qemu_thread, &q);
  svc = g_thread_new("svc", run_loop, loop);
  g_assert_true(vms_qmp_client_connect_sync(c, 5000, &error));
  g_assert_no_error(error);
  g_assert_nonnull(vms_qmp_client_get_version(c));

  vms_test_write_pattern(file, 16, 9);
  fd = open(file, O_RDONLY | O_CLOEXEC);
  ret = vms_qmp_client_execute(c, "getfd", NULL, fd, 5000, &error);
  g_assert_no_error(error);
  close(fd);
  g_assert_cmpint(q.received_fd, >=, 0);
  {
    g_autoptr(GBytes) content = vms_test_read_bytes(file);
    g_assert_cmpint(q.received_byte, ==, ((const char *)g_bytes_get_data(content, NULL))[0]);
  }
  g_clear_pointer(&ret, json_node_unref);

  g_assert_null(vms_qmp_client_execute(c, "bad", NULL, -1, 5000, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_QMP);
  g_assert_nonnull(strstr(error->message, "no way"));
  g_clear_error(&error);

  seq = vms_qmp_client_event_seq(c);
  ret = vms_qmp_client_execute(c, "migrate", NULL, -1, 5000, &error);
  g_assert_no_error(error);
  ev = vms_qmp_client_wait_event(c, seq, "MIGRATION", is_completed, NULL, 5000, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(json_object_get_string_member(ev, "status"), ==, "completed");
  /* nothing newer: times out */
  g_assert_null(vms_qmp_client_wait_event(c, vms_qmp_client_event_seq(c), "MIGRATION", NULL,
                                          NULL, 50, &error));
  g_clear_error(&error);

  g_socket_close(listener, NULL);
  g_main_context_invoke(ctx, quit_cb, loop);
  g_thread_join(svc);
  g_clear_pointer(&c, vms_qmp_client_free); /* closes the connection: the fake exits */
  g_thread_join(fake);
  if (q.received_fd >= 0)
    close(q.received_fd);
  vms_test_rmtree(dir);
}

/* A QEMU that, once capabilities are negotiated, sends events until the
 * client hangs up, then closes. */
static gpointer
flood_qemu_thread(gpointer data)
{
  FakeQemu *q = data;
  int fd = accept4(q->listen_fd, NULL, NULL, SOCK_CLOEXEC);
  JsonObject *m;
  const char *ev = "{\"event\": \"TICK\", \"data\": {}}\r\n";

  fake_write(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, \"capabilities\": []}}\r\n");
  m = fake_read(fd, q); /* qmp_capabilities */
  g_assert_nonnull(m);
  json_object_unref(m);
  fake_write(fd, "{\"return\": {}}\r\n");
  while (send(fd, ev, strlen(ev), MSG_NOSIGNAL) == (gssize)strlen(ev))
    ;
  close(fd);
  return NULL;
}

static void
count_event(const char *event, JsonObject *data, gpointer user_data)
{
  g_atomic_int_inc((gint *)user_data);
  g_usleep(50); /* widen the window in which free can race the reader */
}

/* Freeing a client on one thread while its context thread is reading (the
 * CLI's Ctrl-C connection) neither touches freed memory (ASan sees that)
 * nor calls on_event once free has returned. */
static void
test_client_free_while_reading(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *path = g_build_filename(dir, "qemu.sock", NULL);
  g_autoptr(GMainContext) ctx = g_main_context_new();
  g_autoptr(GMainLoop) loop = g_main_loop_new(ctx, FALSE);
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) listener = vms_unix_listen(path, &error);
  GThread *svc = g_thread_new("svc", run_loop, loop);

  g_assert_no_error(error);
  for (int round = 0; round < 20; round++) {
    FakeQemu q = { .received_fd = -1, .listen_fd = g_socket_get_fd(listener) };
    gint events = 0, after_free;
    VmsQmpClient *c = vms_qmp_client_new(path, ctx, count_event, &events);
    GThread *fake;

    fcntl(q.listen_fd, F_SETFL, fcntl(q.listen_fd, F_GETFL) & ~O_NONBLOCK);
    fake = g_thread_new("flood-qemu", flood_qemu_thread, &q);
    g_assert_true(vms_qmp_client_connect_sync(c, 5000, &error));
    g_assert_no_error(error);
    while (g_atomic_int_get(&events) < 1 + round * 10)
      g_usleep(100);
    vms_qmp_client_free(c);
    after_free = g_atomic_int_get(&events);
    g_usleep(2000);
    g_assert_cmpint(g_atomic_int_get(&events), ==, after_free);
    g_thread_join(fake);
  }
  g_socket_close(listener, NULL);
  g_main_context_invoke(ctx, quit_cb, loop);
  g_thread_join(svc);
  vms_test_rmtree(dir);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/qmp/splitter", test_splitter);
  g_test_add_func("/qmp/splitter-oversized", test_splitter_oversized);
  g_test_add_func("/qmp/splitter-edges", test_splitter_edges);
  g_test_add("/qmp/server/protocol", Fixture, NULL, fixture_setup, test_server_protocol,
             fixture_teardown);
  g_test_add("/qmp/server/events", Fixture, NULL, fixture_setup, test_server_events,
             fixture_teardown);
  g_test_add("/qmp/server/client-gone", Fixture, NULL, fixture_setup, test_server_client_gone,
             fixture_teardown);
  g_test_add("/qmp/server/order", Fixture, NULL, fixture_setup, test_server_order,
             fixture_teardown);
  g_test_add_func("/qmp/listen", test_listen_files);
  g_test_add_func("/qmp/client", test_client);
  g_test_add_func("/qmp/client/free-while-reading", test_client_free_while_reading);
  return g_test_run();
}
