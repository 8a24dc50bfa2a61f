/* vmsnap CLI: `vmsnap save --control SOCK DIR [--memory M] [--then T] [--json]`.
 *
 * A QMP client of the plugin's control socket: sends snapshot-save and
 * prints the result. On a terminal, VMSNAP_SNAPSHOT_PROGRESS events drive a
 * progress line (done, rate, ETA, whether the guest is paused). Ctrl-C
 * sends snapshot-cancel on a second connection (the save's own is not read
 * while the save runs), so the save stops and commits nothing; a second
 * Ctrl-C leaves at once. The QMP client reads on its own thread (it needs
 * a running GMainContext other than the one of the thread that waits for
 * the reply).
 */
#include "cli.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <json-glib/json-glib.h>

#include "libvirt.h"
#include "qmp.h"

/* A save of many GiB copies for a while; the plugin refuses nothing slowly. */
#define SAVE_TIMEOUT_MS (60u * 60u * 1000u)
#define CONNECT_TIMEOUT_MS 2000u

typedef struct {
  gboolean tty;
  gboolean progress_shown;
  const char *control;
  GMainContext *ctx;
  GMutex lock;         /* guards the two below */
  gboolean finished;   /* the save replied: Ctrl-C starts no cancel now */
  GThread *cancel;     /* the Ctrl-C cancel, joined before the loop stops */
  gint64 t_last;       /* monotonic us of the previous progress event */
  guint64 done_last;
  double rate;         /* bytes/s, smoothed */
} SaveUi;

static void
show_progress(SaveUi *ui, JsonObject *data)
{
  guint64 done = (guint64)json_object_get_int_member_with_default(data, "done", 0);
  guint64 total = (guint64)json_object_get_int_member_with_default(data, "total", 0);
  gboolean running = json_object_get_boolean_member_with_default(data, "running", FALSE);
  gint64 now = g_get_monotonic_time();
  g_autofree char *d = g_format_size_full(done, G_FORMAT_SIZE_IEC_UNITS);
  g_autofree char *t = g_format_size_full(total, G_FORMAT_SIZE_IEC_UNITS);
  g_autofree char *r = NULL;
  g_autofree char *eta = NULL;

  if (ui->t_last != 0 && now > ui->t_last && done >= ui->done_last) {
    double inst = (double)(done - ui->done_last) * 1e6 / (double)(now - ui->t_last);
    ui->rate = ui->rate == 0 ? inst : 0.7 * ui->rate + 0.3 * inst;
  }
  ui->t_last = now;
  ui->done_last = done;
  r = ui->rate > 0 ? g_format_size_full((guint64)ui->rate, G_FORMAT_SIZE_IEC_UNITS)
                   : g_strdup("-");
  eta = ui->rate > 0 && total > done ? g_strdup_printf("%.0f s", (double)(total - done) / ui->rate)
                                     : g_strdup(done >= total ? "done" : "-");
  fprintf(stderr, "\r\033[Ksaving %s: %3d%% (%s of %s), %s/s, ETA %s, guest %s",
          json_object_get_string_member_with_default(data, "dir", "?"),
          total > 0 ? (int)(done * 100 / total) : 100, d, t, r, eta,
          running ? "running" : "paused");
  ui->progress_shown = TRUE;
}

static void
on_event(const char *event, JsonObject *data, gpointer user_data)
{
  SaveUi *ui = user_data;

  if (ui->tty && data != NULL && strcmp(event, "VMSNAP_SNAPSHOT_PROGRESS") == 0)
    show_progress(ui, data);
}

/* Ctrl-C: snapshot-cancel from a thread of its own (a QMP call must not
 * run on the context thread that reads its reply). */
static gpointer
cancel_thread(gpointer user_data)
{
  SaveUi *ui = user_data;
  g_autoptr(VmsQmpClient) c = vms_qmp_client_new(ui->control, ui->ctx, NULL, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = NULL;

  if (vms_qmp_client_connect_sync(c, CONNECT_TIMEOUT_MS, &error))
    ret = vms_qmp_client_execute(c, "snapshot-cancel", NULL, -1, CONNECT_TIMEOUT_MS, &error);
  if (ret == NULL)
    fprintf(stderr, "\nvmsnap: cannot cancel the save: %s\n", error->message);
  else if (!json_object_get_boolean_member_with_default(json_node_get_object(ret), "cancelled",
                                                        FALSE))
    fprintf(stderr, "\nvmsnap: too late to cancel: the save is committing\n");
  else
    fprintf(stderr, "vmsnap: the save stops at its next step\n");
  return NULL;
}

static gboolean
on_sigint(gpointer user_data)
{
  SaveUi *ui = user_data;

  g_mutex_lock(&ui->lock);
  if (!ui->finished) {
    fprintf(stderr, "\nvmsnap: cancelling the save (Ctrl-C again to leave it running)\n");
    ui->cancel = g_thread_new("vmsnap-cancel", cancel_thread, ui);
  }
  g_mutex_unlock(&ui->lock);
  return G_SOURCE_REMOVE; /* the next Ctrl-C ends the program */
}

static gpointer
run_context(gpointer user_data)
{
  GMainLoop *loop = user_data;

  g_main_context_push_thread_default(g_main_loop_get_context(loop));
  g_main_loop_run(loop);
  g_main_context_pop_thread_default(g_main_loop_get_context(loop));
  return NULL;
}

static gboolean
quit_loop(gpointer user_data)
{
  g_main_loop_quit(user_data);
  return G_SOURCE_REMOVE;
}

static void
print_result(JsonNode *ret, gboolean json)
{
  JsonObject *o = json_node_get_object(ret);

  if (json) {
    g_autofree char *text = json_to_string(ret, TRUE);
    printf("%s\n", text);
    return;
  }
  printf("snapshot saved in %s\n", json_object_get_string_member_with_default(o, "dir", "?"));
  printf("  kind            %s\n", json_object_get_string_member_with_default(o, "kind", "?"));
  printf("  memory capture  %s\n",
         json_object_get_string_member_with_default(o, "memory-capture", "?"));
  printf("  state           %" G_GINT64_FORMAT " bytes\n",
         json_object_get_int_member_with_default(o, "state-bytes", 0));
  printf("  memory written  %" G_GINT64_FORMAT " bytes\n",
         json_object_get_int_member_with_default(o, "memory-bytes-written", 0));
  printf("  downtime        %.1f ms\n",
         json_object_get_double_member_with_default(o, "downtime-ms", 0));
  printf("  total           %.1f ms\n", json_object_get_double_member_with_default(o, "total-ms", 0));
}

static JsonObject *
save_arguments(const char *dir, const char *memory, const char *then)
{
  JsonObject *args = json_object_new();
  g_autofree char *abs = g_canonicalize_filename(dir, NULL);

  /* The plugin runs in QEMU's working directory, not ours. */
  json_object_set_string_member(args, "dir", abs);
  if (memory != NULL)
    json_object_set_string_member(args, "memory", memory);
  if (then != NULL)
    json_object_set_string_member(args, "then", then);
  return args;
}

/* --libvirt DOMAIN: its XML (what runs now) and the control socket in it. */
static gboolean
libvirt_control(const char *domain, const char *uri, char **ret_control, char **ret_xml)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *xml = NULL;

  if (*ret_control != NULL)
    return vms_cli_error("give --control SOCK or --libvirt DOMAIN, not both"), FALSE;
  if (!vms_virsh(uri, &xml, &error, "dumpxml", "--migratable", domain, NULL))
    return vms_cli_error("%s", error->message), FALSE;
  *ret_control = vms_libvirt_control_socket(xml, &error);
  if (*ret_control == NULL)
    return vms_cli_error("domain %s: %s", domain, error->message), FALSE;
  *ret_xml = g_steal_pointer(&xml);
  return TRUE;
}

int
vms_cli_save(int argc, char **argv)
{
  g_autofree char *control = NULL, *memory = NULL, *then = NULL;
  g_autofree char *domain = NULL, *uri = NULL, *domain_xml = NULL;
  gboolean json = FALSE;
  const GOptionEntry entries[] = {
    { "control", 'c', 0, G_OPTION_ARG_FILENAME, &control, "the plugin's control socket", "SOCK" },
    { "libvirt", 0, 0, G_OPTION_ARG_STRING, &domain,
      "save this libvirt domain (its control socket from its XML, which the snapshot keeps)",
      "DOMAIN" },
    { "connect", 0, 0, G_OPTION_ARG_STRING, &uri, "with --libvirt: the libvirt URI (virsh -c)",
      "URI" },
    { "memory", 'm', 0, G_OPTION_ARG_STRING, &memory, "link (default), copy or diff", "M" },
    { "then", 't', 0, G_OPTION_ARG_STRING, &then, "pause (default), resume or quit", "T" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print the result as JSON", NULL },
    { NULL },
  };
  g_autoptr(GMainContext) ctx = NULL;
  g_autoptr(GMainLoop) loop = NULL;
  g_autoptr(VmsQmpClient) client = NULL;
  g_autoptr(JsonObject) args = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;
  GThread *thread;
  SaveUi ui = { .tty = isatty(STDERR_FILENO) };
  g_autoptr(GSource) sigint = NULL;

  if (!vms_cli_parse(&argc, &argv, entries, "DIR",
                     "Ask a running VM's plugin (through its control socket) for a snapshot."))
    return 1;
  if (argc != 2)
    return vms_cli_error(argc < 2 ? "missing snapshot directory (see --help)"
                                  : "too many arguments (see --help)");
  if (domain != NULL && !libvirt_control(domain, uri, &control, &domain_xml))
    return 1;
  if (control == NULL)
    return vms_cli_error(uri != NULL ? "--connect needs --libvirt DOMAIN"
                                     : "missing --control SOCK (the plugin's control= socket) or "
                                       "--libvirt DOMAIN");
  ctx = g_main_context_new();
  loop = g_main_loop_new(ctx, FALSE);
  client = vms_qmp_client_new(control, ctx, on_event, &ui);
  ui.control = control;
  ui.ctx = ctx;
  g_mutex_init(&ui.lock);
  sigint = g_unix_signal_source_new(SIGINT);
  g_source_set_callback(sigint, on_sigint, &ui, NULL);
  g_source_attach(sigint, ctx);
  thread = g_thread_new("vmsnap-qmp", run_context, loop);
  args = save_arguments(argv[1], memory, then);
  if (vms_qmp_client_connect_sync(client, CONNECT_TIMEOUT_MS, &error))
    ret = vms_qmp_client_execute(client, "snapshot-save", args, -1, SAVE_TIMEOUT_MS, &error);
  /* A cancel already under way reads its reply on the loop: let it finish. */
  g_mutex_lock(&ui.lock);
  ui.finished = TRUE;
  g_mutex_unlock(&ui.lock);
  if (ui.cancel != NULL)
    g_thread_join(ui.cancel);
  /* Quit from inside the loop: a quit before it started would be lost. */
  g_main_context_invoke(ctx, quit_loop, loop);
  g_thread_join(thread);
  g_source_destroy(sigint);
  g_mutex_clear(&ui.lock);
  if (ui.progress_shown)
    fputc('\n', stderr);
  if (ret == NULL) {
    const char *msg = error->message;
    /* The client prefixes the command; the plugin's message already names it. */
    if (g_str_has_prefix(msg, "QMP snapshot-save: "))
      msg += strlen("QMP snapshot-save: ");
    return vms_cli_error("%s", msg);
  }
  print_result(ret, json);
  if (domain_xml != NULL && !vms_libvirt_keep_xml(argv[1], domain_xml, &error))
    return vms_cli_error("the snapshot is committed, but the domain XML was not kept: %s",
                         error->message);
  if (domain_xml != NULL && g_strcmp0(then, "quit") != 0 &&
      !vms_libvirt_follow_disks(domain, uri, argv[1], &error))
    return vms_cli_error("the snapshot is committed, but domain %s's definition still names its "
                         "frozen disk images: %s", domain, error->message);
  return 0;
}
