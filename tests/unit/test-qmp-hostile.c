/* Unit tests: the control socket against hostile peers (issue 10, "Hostile
 * peers" 1-5, 7, 8): nesting bombs, clients that never read, pipelined
 * floods, ids that do not survive re-encoding, NULs, the fd limit, and
 * unbalanced garbage. Each drives the real server over a real socket. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "helpers.h"
#include "qmp-fixture.h"
#include "qmp.h"

static Raw *
negotiated(Fixture *f)
{
  Raw *r = raw_connect(f->path);

  json_object_unref(raw_read(r));
  raw_send(r, "{\"execute\": \"qmp_capabilities\"}");
  json_object_unref(raw_read(r));
  return r;
}

static void
assert_echo_works(Raw *r)
{
  g_autoptr(JsonObject) m = NULL;

  raw_send(r, "{\"execute\": \"echo\", \"arguments\": {\"text\": \"alive\"}}");
  m = raw_read(r);
  g_assert_cmpstr(json_object_get_string_member(json_object_get_object_member(m, "return"), "said"),
                  ==, "alive");
}

/* 1. Depth 100 000 once crashed QEMU (json-glib recursion): refused before
 * parsing, as QEMU refuses depth over 1024; the connection carries on. */
static void
test_depth(Fixture *f, gconstpointer data)
{
  Raw *r = negotiated(f);
  g_autofree char *open = g_strnfill(100000, '[');
  g_autofree char *close = g_strnfill(100000, ']');
  g_autofree char *bomb = g_strdup_printf("{\"execute\": \"echo\", \"arguments\": {\"deep\": %s%s}}",
                                          open, close);
  g_autofree char *ok = NULL, *over = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(JsonObject) m = NULL;

  raw_send(r, bomb);
  m = raw_read(r);
  g_assert_nonnull(strstr(error_desc(m), "nesting depth limit exceeded"));
  assert_echo_works(r);
  raw_free(r);
  /* the helper relaunch and others use: 1024 levels pass, 1025 do not */
  ok = g_strdup_printf("%.*s%.*s", 1024, open, 1024, close);
  over = g_strdup_printf("%.*s%.*s", 1025, open, 1025, close);
  node = vms_json_parse_bounded(ok, &error);
  g_assert_no_error(error);
  g_assert_nonnull(node);
  g_assert_null(vms_json_parse_bounded(over, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT);
  g_assert_true(vms_json_check_depth(ok, strlen(ok), 1024, NULL));
  g_assert_false(vms_json_check_depth(over, strlen(over), 1024, NULL));
}

/* 2. A client that never reads once held every other client ~10 s per
 * send: sends never block now; the offender alone is dropped once its
 * unread output passes the cap. */
static void
test_slow_reader(Fixture *f, gconstpointer data)
{
  Raw *stuck = negotiated(f);
  Raw *other = NULL;
  g_autofree char *big = g_strnfill(64 * 1024, 'x');
  gint64 t0 = g_get_monotonic_time();
  guint64 got = 0;
  char buf[65536];
  gssize n;

  /* 200 events of 64 KiB: 12.5 MiB, more than the 8 MiB cap */
  for (int i = 0; i < 200; i++) {
    JsonObject *ev = json_object_new();
    json_object_set_string_member(ev, "pad", big);
    vms_qmp_server_emit(f->server, "VMSNAP_TEST", ev);
  }
  g_assert_cmpint(g_get_monotonic_time() - t0, <, 2 * G_USEC_PER_SEC);
  other = negotiated(f);
  t0 = g_get_monotonic_time();
  assert_echo_works(other);
  g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC);
  /* the stuck client reads what the kernel had, then EOF: dropped */
  while ((n = read(stuck->fd, buf, sizeof(buf))) > 0)
    got += (guint64)n;
  g_assert_cmpint(n, ==, 0);
  g_assert_cmpuint(got, <, 200u * 64 * 1024);
  raw_free(stuck);
  raw_free(other);
}

typedef struct {
  int fd;
  guint count;
} Flood;

static gpointer
flood_thread(gpointer data)
{
  Flood *fl = data;
  GString *s = g_string_new(NULL);
  gsize done = 0;

  for (guint i = 0; i < fl->count; i++)
    g_string_append_printf(s, "{\"execute\": \"echo\", \"id\": %u}", i);
  while (done < s->len) {
    gssize n = write(fl->fd, s->str + done, s->len - done);
    g_assert_cmpint(n, >, 0);
    done += (gsize)n;
  }
  g_string_free(s, TRUE);
  return NULL;
}

/* 3. Pipelined commands were dropped past 256 queued: now the server stops
 * reading while it is busy or its output is backed up, and answers every
 * one, in order. */
static void
test_pipeline(Fixture *f, gconstpointer data)
{
  Raw *r = negotiated(f);
  Flood fl = { .fd = r->fd, .count = 20000 };
  GThread *writer = g_thread_new("flood", flood_thread, &fl);
  g_autoptr(GString) tiny = g_string_new(NULL);

  for (guint i = 0; i < fl.count; i++) {
    g_autoptr(JsonObject) m = raw_read(r);
    g_assert_true(json_object_has_member(m, "return"));
    g_assert_cmpint(json_object_get_int_member(m, "id"), ==, i);
  }
  g_thread_join(writer);
  /* 10 000 tiny objects in one write: each answered */
  for (guint i = 0; i < 10000; i++)
    g_string_append(tiny, "{}");
  raw_send(r, tiny->str);
  for (guint i = 0; i < 10000; i++) {
    g_autoptr(JsonObject) m = raw_read(r);
    g_assert_nonnull(strstr(error_desc(m), "lacks member 'execute'"));
  }
  assert_echo_works(r);
  raw_free(r);
}

/* 4. The id comes back exactly as sent: json-glib would turn 1e400 into
 * "inf.0", a 30-digit number into -1, 2^63 into a negative. */
static void
test_id_echo(Fixture *f, gconstpointer data)
{
  static const char *const ids[] = {
    "1e400", "123456789012345678901234567890", "9223372036854775808", "-0.0",
    "\"\\u00e9t\\u00e9\"", "{\"a\":[1,2.50,null]}",
  };
  Raw *r = negotiated(f);

  for (gsize i = 0; i < G_N_ELEMENTS(ids); i++) {
    g_autofree char *cmd = g_strdup_printf("{\"execute\": \"echo\", \"id\": %s}", ids[i]);
    g_autofree char *bad = g_strdup_printf("{\"execute\": \"nope\", \"id\": %s}", ids[i]);
    g_autofree char *tail = g_strdup_printf(",\"id\":%s}", ids[i]);
    g_autofree char *line = NULL, *line2 = NULL;

    raw_send(r, cmd);
    line = raw_read_line(r);
    g_assert_true(g_str_has_suffix(line, tail));
    raw_send(r, bad);
    line2 = raw_read_line(r);
    g_assert_true(g_str_has_prefix(line2, "{\"error\""));
    g_assert_true(g_str_has_suffix(line2, tail));
  }
  /* whitespace outside strings is dropped, so a reply stays one line */
  raw_send(r, "{\"execute\": \"echo\", \"id\": {\"k\":\n [1,\t2]}}");
  {
    g_autofree char *line = raw_read_line(r);
    g_assert_true(g_str_has_suffix(line, ",\"id\":{\"k\":[1,2]}}"));
  }
  raw_free(r);
}

/* 5. "\u0000" would end the C string ("echo\u0000x" ran echo, a dir was cut
 * short): refused, and nothing is dispatched. An escaped backslash before
 * u0000 is just text. */
static void
test_nul(Fixture *f, gconstpointer data)
{
  Raw *r = negotiated(f);
  guint before = f->dispatched;
  g_autoptr(JsonObject) m1 = NULL, m2 = NULL, m3 = NULL;

  raw_send(r, "{\"execute\": \"echo\\u0000x\"}");
  m1 = raw_read(r);
  g_assert_nonnull(strstr(error_desc(m1), "\\u0000 is not supported"));
  raw_send(r, "{\"execute\": \"echo\", \"arguments\": {\"text\": \"/snaps/z\\u0000/etc\"}}");
  m2 = raw_read(r);
  g_assert_nonnull(strstr(error_desc(m2), "\\u0000"));
  g_assert_cmpuint(f->dispatched, ==, before);
  raw_send(r, "{\"execute\": \"echo\", \"arguments\": {\"text\": \"a\\\\u0000\"}}");
  m3 = raw_read(r);
  g_assert_cmpstr(json_object_get_string_member(json_object_get_object_member(m3, "return"),
                                                "said"), ==, "a\\u0000");
  raw_free(r);
}

static double
cpu_seconds(void)
{
  struct rusage ru;

  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* 7. At the fd limit the accept source spun at ~56% of a core: accepting
 * pauses and retries; the waiting client is served once fds free up. */
static void
test_emfile(Fixture *f, gconstpointer data)
{
  struct rlimit old, low;
  g_autoptr(GArray) fillers = g_array_new(FALSE, FALSE, sizeof(int));
  Raw *waiting;
  double cpu0;
  int fd;

  g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &old), ==, 0);
  low = old;
  low.rlim_cur = 256;
  g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
  while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
    g_array_append_val(fillers, fd);
  g_assert_cmpint(errno, ==, EMFILE);
  /* free one fd for the client's socket: the server's accept has none */
  close(g_array_index(fillers, int, fillers->len - 1));
  g_array_set_size(fillers, fillers->len - 1);
  waiting = raw_connect(f->path);
  g_usleep(100 * 1000);
  cpu0 = cpu_seconds();
  g_usleep(G_USEC_PER_SEC);
  g_test_message("CPU while a peer waits at the fd limit: %.3f s in 1 s", cpu_seconds() - cpu0);
  g_assert_cmpfloat(cpu_seconds() - cpu0, <, 0.25);
  for (guint i = 0; i < fillers->len; i++)
    close(g_array_index(fillers, int, i));
  g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &old), ==, 0);
  json_object_unref(raw_read(waiting)); /* the greeting, once accepted */
  raw_free(waiting);
}

/* 8. Unbalanced garbage: like QEMU, an open bracket waits for its close
 * (up to the 1 MiB message limit), then gets one parse error; a byte that
 * cannot be JSON ends the value at once with "stray". */
static void
test_unbalanced(Fixture *f, gconstpointer data)
{
  Raw *r = negotiated(f);
  struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
  g_autoptr(JsonObject) m = NULL, s = NULL;

  raw_send(r, "{{{ not json");
  g_assert_cmpint(poll(&pfd, 1, 300), ==, 0);
  raw_send(r, "}}}");
  m = raw_read(r);
  g_assert_true(g_str_has_prefix(error_desc(m), "JSON parse error"));
  raw_send(r, "{\"a\": #}");
  s = raw_read(r);
  g_assert_nonnull(strstr(error_desc(s), "stray '#'"));
  /* what followed the stray byte ("}") is garbage of its own */
  json_object_unref(raw_read(r));
  assert_echo_works(r);
  raw_free(r);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
#define ADD(name, fn) g_test_add("/qmp/hostile/" name, Fixture, NULL, fixture_setup, fn, \
                                 fixture_teardown)
  ADD("depth", test_depth);
  ADD("slow-reader", test_slow_reader);
  ADD("pipeline", test_pipeline);
  ADD("id-echo", test_id_echo);
  ADD("nul", test_nul);
  ADD("emfile", test_emfile);
  ADD("unbalanced", test_unbalanced);
#undef ADD
  return g_test_run();
}
