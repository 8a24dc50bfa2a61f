/* Unit tests: the monitor console (plugin/qemu/monitor*.c) over a real
 * socket with a scripted dispatch — words, help, escaping of control
 * bytes, NULs, quit — and its line editor through a pty. */
#include <glib.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "helpers.h"
#include "monitor.h"
#include "qmp-fixture.h"

#define PROMPT "(vmsnap) "

static void
monitor_setup(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;

  fixture_start(f);
  f->front = vms_monitor_new(f->path, f->ctx, NULL, fixture_dispatch, f, &error);
  g_assert_no_error(error);
  f->front_free = (GDestroyNotify)vms_monitor_free;
}

static Raw *
console(Fixture *f)
{
  Raw *r = raw_connect(f->path);
  g_autofree char *banner = raw_read_until(r, PROMPT);

  g_assert_nonnull(strstr(banner, "help"));
  return r;
}

/* Sends @line (with its newline) and returns the answer before the prompt. */
static char *
ask(Raw *r, const char *line)
{
  g_autofree char *text = g_strconcat(line, "\n", NULL);
  char *out;

  raw_send(r, text);
  out = raw_read_until(r, PROMPT);
  g_assert_nonnull(out);
  out[strlen(out) - strlen(PROMPT)] = '\0';
  return out;
}

static gboolean
has_control_bytes(const char *s)
{
  for (const char *p = s; *p != '\0'; p++)
    if ((guchar)*p < 0x20 && *p != '\n')
      return TRUE;
  return FALSE;
}

static void
test_words(Fixture *f, gconstpointer data)
{
  Raw *r = console(f);
  g_autofree char *help = ask(r, "help");
  g_autofree char *help_save = ask(r, "help save");
  g_autofree char *info = ask(r, "info");
  g_autofree char *bad = ask(r, "info nothing");
  g_autofree char *empty = ask(r, "");
  g_autofree char *usage = ask(r, "save");
  g_autofree char *unknown = ask(r, "frobnicate");

  g_assert_nonnull(strstr(help, "info SUBCOMMAND"));
  g_assert_nonnull(strstr(help, "save DIR"));
  g_assert_nonnull(strstr(help, "quit"));
  /* one table: the modes help names come from save-modes.c */
  g_assert_nonnull(strstr(help_save, "memory=link|copy|diff"));
  g_assert_nonnull(strstr(help_save, "then=pause|resume|quit"));
  g_assert_null(strstr(help_save, "info status"));
  g_assert_nonnull(strstr(info, "info status"));
  g_assert_nonnull(strstr(info, "info snapshot DIR"));
  g_assert_true(g_str_has_prefix(bad, "error: info: unknown subcommand 'nothing'"));
  g_assert_cmpstr(empty, ==, "");
  g_assert_true(g_str_has_prefix(usage, "error: usage: save DIR"));
  g_assert_true(g_str_has_prefix(unknown, "error: unknown command: 'frobnicate'"));
  raw_free(r);
}

/* Issue 10 "hostile peers" 6: nothing a peer or a file name holds reaches
 * the terminal raw — not in an error that quotes the line, not in an
 * answer. */
static void
test_escapes(Fixture *f, gconstpointer data)
{
  Raw *r = console(f);
  g_autofree char *quoted = ask(r, "\x1b[31mred\x1b[0m \x07");
  g_autofree char *failed = ask(r, "save \"/snaps/\x1b]0;pwned\x07\" memory=\x1b[2J");
  g_autofree char *e = vms_monitor_escape("a\x1b[Ab\rc\x7f\xff\n\\");

  g_assert_false(has_control_bytes(quoted));
  g_assert_nonnull(strstr(quoted, "\\x1b[31mred"));
  g_assert_false(has_control_bytes(failed));
  g_assert_cmpstr(e, ==, "a\\x1b[Ab\\x0dc\\x7f\\xff\n\\\\");
  raw_free(r);
}

/* Issue 10 "hostile peers" 5: a NUL no longer cuts `info snapshot /a\0b`
 * to /a: the line is refused and nothing is dispatched. */
static void
test_nul(Fixture *f, gconstpointer data)
{
  Raw *r = console(f);
  static const char line[] = "info snapshot /snaps/a\0b\n";
  g_autofree char *out = NULL;

  raw_send_len(r, line, sizeof(line) - 1);
  out = raw_read_until(r, PROMPT);
  g_assert_nonnull(strstr(out, "NUL"));
  g_assert_cmpuint(f->dispatched, ==, 0);
  raw_free(r);
}

static void
test_quit(Fixture *f, gconstpointer data)
{
  Raw *r = console(f);
  char c;

  raw_send(r, "quit\n");
  g_assert_cmpint(read(r->fd, &c, 1), ==, 0); /* closed, nothing more said */
  raw_free(r);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
#define ADD(name, fn) g_test_add("/monitor/" name, Fixture, NULL, monitor_setup, fn, \
                                 fixture_teardown)
  ADD("words", test_words);
  ADD("escapes", test_escapes);
  ADD("nul", test_nul);
  ADD("quit", test_quit);
#undef ADD
  return g_test_run();
}
