/* Unit tests: the monitor console (plugin/qemu/monitor*.c) over a real
 * socket with a scripted dispatch — words, help, escaping of control
 * bytes, NULs, quit — and its line editor through a pty. */
#include <fcntl.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <poll.h>
#include <stdlib.h>
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
 * the terminal raw — not the keys it sends (a line with ESC switches to the
 * line editor, which swallows what it does not know), not an error that
 * quotes the line, not an answer. Only the editor's own sequences (erase
 * to the end of line, cursor left) are left once those are taken out. */
static void
test_escapes(Fixture *f, gconstpointer data)
{
  Raw *r = console(f);
  g_autofree char *out = NULL, *clean = NULL, *formatted = NULL;
  g_autoptr(GRegex) ours = g_regex_new("\x1b\\[(K|[0-9]+D)", 0, 0, NULL);
  g_autofree char *e = vms_monitor_escape("a\x1b[Ab\rc\x7f\xff\n\\");
  g_autoptr(JsonNode) answer = json_from_string("{\"dir\": \"/a\\u001b]0;pwned\\u0007\", "
                                                "\"kind\": \"\\u001b[2J\"}", NULL);

  raw_send(r, "\x1b[31mred\x1b[0m \x07 \x1b]0;title\x07\r");
  out = raw_read_until(r, "\r\n" PROMPT);
  g_assert_nonnull(out);
  clean = g_regex_replace(ours, out, -1, 0, "", 0, NULL);
  for (const char *p = clean; *p != '\0'; p++)
    g_assert_true((guchar)*p >= 0x20 || *p == '\n' || *p == '\r');
  g_assert_cmpstr(e, ==, "a\\x1b[Ab\\x0dc\\x7f\\xff\n\\\\");
  formatted = vms_monitor_format("snapshot-info", answer);
  g_assert_false(has_control_bytes(formatted));
  g_assert_nonnull(strstr(formatted, "\\x1b]0;pwned\\x07"));
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

/* ---- a person at a raw terminal: socat -,raw,echo=0 in a pty ---- */

typedef struct {
  int master;
  GSubprocess *socat;
  GString *seen;   /* everything the terminal showed */
  gsize mark;      /* where the current step's output starts */
} Term;

/* @argv (NULL-terminated) on a new pty: its stdin and stdout. */
static Term *
term_spawn(const char *const *argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
  Term *t;
  int slave;

  t = g_new0(Term, 1);
  t->seen = g_string_new(NULL);
  t->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  g_assert_cmpint(t->master, >=, 0);
  g_assert_cmpint(grantpt(t->master), ==, 0);
  g_assert_cmpint(unlockpt(t->master), ==, 0);
  slave = open(ptsname(t->master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  g_assert_cmpint(slave, >=, 0);
  fcntl(t->master, F_SETFL, fcntl(t->master, F_GETFL) | O_NONBLOCK);
  g_subprocess_launcher_take_stdin_fd(l, dup(slave));
  g_subprocess_launcher_take_stdout_fd(l, slave);
  t->socat = g_subprocess_launcher_spawnv(l, argv, &error);
  g_assert_no_error(error);
  return t;
}

/* What people use with QEMU's HMP: socat with the terminal raw. */
static Term *
term_open(Fixture *f)
{
  g_autofree char *target = g_strdup_printf("UNIX-CONNECT:%s", f->path);
  g_autofree char *socat = g_find_program_in_path("socat");

  if (socat == NULL)
    return NULL;
  return term_spawn((const char *const[]){ socat, "-,raw,echo=0", target, NULL });
}

static void
term_close(Term *t)
{
  g_subprocess_force_exit(t->socat);
  g_subprocess_wait(t->socat, NULL, NULL);
  g_object_unref(t->socat);
  close(t->master);
  g_string_free(t->seen, TRUE);
  g_free(t);
}

/* Reads until the output since the mark holds @text (10 s at most). */
static gboolean
term_wait(Term *t, const char *text)
{
  gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

  for (;;) {
    char buf[4096];
    gssize n;

    if (strstr(t->seen->str + t->mark, text) != NULL)
      return TRUE;
    if (g_get_monotonic_time() > deadline) {
      g_autofree char *shown = g_strescape(t->seen->str + t->mark, NULL);
      g_test_message("waited for '%s'; the terminal showed: %s", text, shown);
      return FALSE;
    }
    n = read(t->master, buf, sizeof(buf));
    if (n > 0)
      g_string_append_len(t->seen, buf, n);
    else
      g_usleep(5000);
  }
}

/* Types @keys one byte at a time, as a person does, from a new mark. */
static void
term_type(Term *t, const char *keys)
{
  t->mark = t->seen->len;
  for (const char *k = keys; *k != '\0'; k++) {
    g_assert_cmpint(write(t->master, k, 1), ==, 1);
    g_usleep(2000);
  }
}

/* The terminal's view of the current line: the text after the last "\r". */
static char *
term_line(Term *t)
{
  const char *cr = strrchr(t->seen->str, '\r');
  g_autofree char *line = g_strdup(cr != NULL ? cr + 1 : t->seen->str);
  char *esc = strstr(line, "\033[K");

  if (esc != NULL)
    *esc = '\0';
  return g_steal_pointer(&line);
}

static void
test_terminal(Fixture *f, gconstpointer data)
{
  Term *t = term_open(f);
  g_autofree char *l1 = NULL, *l2 = NULL, *l3 = NULL;

  if (t == NULL) {
    vms_test_cannot_run("needs socat (scripts/setup.sh)");
    return;
  }
  g_assert_true(term_wait(t, PROMPT));
  /* completion: a command, then an info subcommand */
  term_type(t, "inf\t");
  g_assert_true(term_wait(t, PROMPT "info "));
  term_type(t, "st\t");
  g_assert_true(term_wait(t, PROMPT "info status "));
  term_type(t, "\r");
  g_assert_true(term_wait(t, "query-vmsnap has not been found\r\n" PROMPT));
  /* the answer's lines end in CR LF on a raw terminal */
  /* editing: Left twice, insert, Home, ^K */
  term_type(t, "hlp\033[D\033[De");
  g_assert_true(term_wait(t, PROMPT "help\033[K\033[2D")); /* the cursor stays after "he" */
  l1 = term_line(t);
  g_assert_cmpstr(l1, ==, PROMPT "help");
  term_type(t, "\r");
  g_assert_true(term_wait(t, "Commands:\r\n"));
  g_assert_true(term_wait(t, "info status"));
  /* history: Up brings back the last line, Up again the one before */
  term_type(t, "\033[A");
  g_assert_true(term_wait(t, PROMPT "help"));
  term_type(t, "\033[A");
  g_assert_true(term_wait(t, PROMPT "info status \033[K"));
  l2 = term_line(t);
  g_assert_cmpstr(l2, ==, PROMPT "info status ");
  /* keys with no meaning here (F5, a mouse report, a bell) are never echoed */
  term_type(t, "\033[15~\033[M abc\007\003");
  g_assert_true(term_wait(t, "^C\r\n"));
  g_assert_null(strstr(t->seen->str, "[15~"));
  g_assert_null(strstr(t->seen->str, "[A"));
  g_assert_null(strstr(t->seen->str, "\007"));
  /* a bare info lists the subcommands; then the list of matches for Tab */
  term_type(t, "info\r");
  g_assert_true(term_wait(t, "info snapshot DIR"));
  term_type(t, "save /x \t");
  g_assert_true(term_wait(t, "memory=  then="));
  term_type(t, "m\tc\t");
  g_assert_true(term_wait(t, PROMPT "save /x memory=copy \033[K"));
  l3 = term_line(t);
  g_assert_cmpstr(l3, ==, PROMPT "save /x memory=copy ");
  /* ^D on an empty line ends the console */
  term_type(t, "\025\004");
  g_assert_true(g_subprocess_wait(t->socat, NULL, NULL));
  term_close(t);
}

/* `vmsnap monitor SOCK` on a terminal: the same editor without socat. */
static void
test_cli_monitor(Fixture *f, gconstpointer data)
{
  const char *vmsnap = g_getenv("VMSNAP_BIN");
  Term *t;

  g_assert_nonnull(vmsnap);
  t = term_spawn((const char *const[]){ vmsnap, "monitor", f->path, NULL });
  g_assert_true(term_wait(t, PROMPT));
  term_type(t, "inf\tst\t\r");
  g_assert_true(term_wait(t, "query-vmsnap has not been found"));
  term_type(t, "\033[A");
  g_assert_true(term_wait(t, PROMPT "info status"));
  term_type(t, "\003\004");
  g_assert_true(g_subprocess_wait(t->socat, NULL, NULL));
  g_assert_true(g_subprocess_get_if_exited(t->socat));
  g_assert_cmpint(g_subprocess_get_exit_status(t->socat), ==, 0);
  term_close(t);
}

/* Tab on a DIR argument lists the plugin's file system. */
static void
test_complete_path(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *snaps = g_build_filename(dir, "snaps", NULL);
  g_autofree char *file = g_build_filename(dir, "snapfile", NULL);
  g_autofree char *line = g_strdup_printf("save %s/snaps", dir);
  g_autofree char *info = g_strdup_printf("info snapshot %s/sn", dir);
  g_autofree char *want = g_strdup_printf("%s/snaps/", dir);
  g_auto(GStrv) one = NULL, two = NULL, none = NULL;

  g_assert_cmpint(g_mkdir(snaps, 0700), ==, 0);
  vms_test_write_pattern(file, 1, 1);
  one = vms_monitor_complete(line);
  g_assert_cmpuint(g_strv_length(one), ==, 1);
  g_assert_cmpstr(one[0], ==, want);
  two = vms_monitor_complete(info);
  g_assert_cmpuint(g_strv_length(two), ==, 2);
  none = vms_monitor_complete("info status /");
  g_assert_cmpuint(g_strv_length(none), ==, 0);
  vms_test_rmtree(dir);
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
  ADD("terminal", test_terminal);
  ADD("cli", test_cli_monitor);
  g_test_add_func("/monitor/complete-path", test_complete_path);
#undef ADD
  return g_test_run();
}
