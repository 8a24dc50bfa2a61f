/* vmsnap CLI: `vmsnap monitor SOCK` — the plugin's monitor console from a
 * terminal, without socat.
 *
 * On a terminal the keys go to the console as they are typed (the local
 * terminal in raw mode, output still turning LF into CR LF), so the
 * console's own line editor gives echo, history and completion — the same
 * as `socat -,raw,echo=0 UNIX-CONNECT:SOCK`. ^C and ^D are the console's
 * (drop the line; leave on an empty line), as is `quit`. Without a terminal
 * (a pipe, a script) bytes are relayed as they come, line by line.
 */
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

static int
connect_unix(const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd;

  if (strlen(path) >= sizeof(sa.sun_path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(sa.sun_path, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

/* Copies what @from has to @to; FALSE at EOF or an error. */
static gboolean
relay(int from, int to)
{
  char buf[4096];
  gssize n = read(from, buf, sizeof(buf));

  if (n < 0 && errno == EINTR)
    return TRUE;
  if (n <= 0)
    return FALSE;
  for (gssize done = 0; done < n;) {
    gssize w = write(to, buf + done, (size_t)(n - done));
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return FALSE;
    done += w;
  }
  return TRUE;
}

/* Until the console closes: keys up, answers down. */
static void
run_session(int sock)
{
  struct pollfd fds[2] = { { .fd = STDIN_FILENO, .events = POLLIN }, { .fd = sock, .events = POLLIN } };
  gboolean input_open = TRUE;

  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    if (fds[1].revents != 0 && !relay(sock, STDOUT_FILENO))
      return;
    if (input_open && fds[0].revents != 0 && !relay(STDIN_FILENO, sock)) {
      /* no more keys: the console answers what it has, then closes */
      input_open = FALSE;
      fds[0].fd = -1;
      shutdown(sock, SHUT_WR);
    }
  }
}

int
vms_cli_monitor(int argc, char **argv)
{
  const GOptionEntry entries[] = { { NULL } };
  struct termios saved, raw;
  gboolean tty;
  int sock;

  if (!vms_cli_parse(&argc, &argv, entries, "SOCK",
                     "Talk to a running VM's plugin through its monitor console (monitor=SOCK): "
                     "line editing, history (Up/Down) and Tab completion on a terminal; "
                     "`help` lists the commands, `quit` or ^D leaves."))
    return 1;
  if (argc != 2)
    return vms_cli_error(argc < 2 ? "missing the console socket (the plugin's monitor=SOCK)"
                                  : "too many arguments (see --help)");
  sock = connect_unix(argv[1]);
  if (sock < 0)
    return vms_cli_error("cannot connect to the monitor console %s: %s", argv[1],
                         g_strerror(errno));
  tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
  if (tty) {
    raw = saved;
    cfmakeraw(&raw);
    raw.c_oflag |= OPOST | ONLCR; /* the banner comes before the console knows it is a terminal */
    tcsetattr(STDIN_FILENO, TCSANOW, &raw);
  }
  run_session(sock);
  if (tty) {
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    write(STDOUT_FILENO, "\r\n", 2);
  }
  close(sock);
  return 0;
}
