/* vmsnap integration tests: start QEMU with the test guest (and the plugin),
 * talk to it, and always reap it.
 *
 * Environment (set by tests/integration/meson.build; each has a default):
 *   VMSNAP_QEMU         the QEMU binary (default: qemu-system-x86_64 in PATH)
 *   VMSNAP_TEST_ARCH    the guest's target, x86_64 (default) or aarch64: the
 *                       machine (pc; virt -cpu cortex-a57) and the guest's
 *                       devices (tests/guest/guest-abi.h); VMSNAP_QEMU and
 *                       VMSNAP_GUEST must match it
 *   VMSNAP_PLUGIN       libvmsnap.so (a VM with with_plugin fails to start without it)
 *   VMSNAP_GUEST        tests/guest/guest.elf
 *   VMSNAP_CLI          the vmsnap tool
 *   VMSNAP_TEST_TMPDIR  where per-test directories go (default /dev/shm)
 *   VMSNAP_TEST_KEEP    if set, per-test directories are kept (debugging)
 *   VMSNAP_TEST_PLUGIN_ARGS  appended to every -plugin argument, e.g.
 *                       "vcpu-events=off" (meson test --setup qmpvcpus)
 *
 * Safety net: every QEMU is started with PR_SET_PDEATHSIG(SIGKILL), is
 * registered for an atexit() kill, and is killed by vms_vm_free(); use
 * VmsVm from a g_test_add() fixture whose teardown frees it, so a failed
 * assertion still reaps it.
 *
 * All functions run on the test's main thread. Functions that return
 * gboolean/pointers fill a GError; the vms_vm_*_or_die() style is left to
 * the test (g_assert_no_error).
 */
#pragma once

#include "common.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "../guest/guest-abi.h"

G_BEGIN_DECLS

#define VMS_TEST_TIMEOUT_MS 30000u

/* ---- test program set-up ---- */

/* g_test_init(), then exits 77 (meson: skipped) if the QEMU binary cannot
 * be found. Installs the atexit safety net. */
void vms_test_init(int *argc, char ***argv);
/* vms_test_init(), then exits 77 too if the plugin (VMSNAP_PLUGIN) is not
 * there: for programs whose every test loads it. */
void vms_test_init_with_plugin(int *argc, char ***argv);
/* The same without GTest (benchmarks, whose output must stay clean). */
void vms_harness_init(void);

/* Paths from the environment (see above). Never NULL; existence is not checked
 * except by vms_test_have_plugin(). */
const char *vms_test_qemu(void);
const char *vms_test_plugin(void);
const char *vms_test_guest(void);
const char *vms_test_cli(void);
/* VMSNAP_TEST_ARCH: "x86_64" or "aarch64" (anything else is fatal). */
const char *vms_test_arch(void);
gboolean vms_test_have_plugin(void);

/* A fresh directory "<tmpdir>/vmsnap-<name>-XXXXXX" (caller frees the
 * string); removed recursively by vms_test_rm_rf() or, unless
 * VMSNAP_TEST_KEEP is set, at a normal exit. A failed assertion aborts
 * without atexit handlers: its directories stay, for inspection. */
char *vms_test_make_dir(const char *name);
/* Removes @path and everything under it (does not follow symlinks). */
void vms_test_rm_rf(const char *path);

/* SHA-256 (hex) of @path's content; NULL with @error if unreadable. */
char *vms_test_file_sha256(const char *path, GError **error);
/* "name sha256\n" for every regular file directly in @dir, sorted: compare
 * two of these to show a snapshot directory did not change at all. */
char *vms_test_dir_digest(const char *dir, GError **error);

/* ---- a raw unix-socket connection with deadlines ---- */

typedef struct _VmsTestConn VmsTestConn;

/* Connects to the unix socket @path, retrying until @timeout_ms while it is
 * missing or refuses (QEMU and the plugin create theirs during start-up). */
VmsTestConn *vms_test_conn_connect(const char *path, guint timeout_ms, GError **error);
void vms_test_conn_free(VmsTestConn *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsTestConn, vms_test_conn_free)
/* Writes all of @text. */
gboolean vms_test_conn_write(VmsTestConn *c, const char *text, GError **error);
/* The next line without its "\n" (and "\r"); caller frees. Fails on timeout or EOF. */
char *vms_test_conn_read_line(VmsTestConn *c, guint timeout_ms, GError **error);
/* Everything up to the next @suffix (consumed, not returned); caller frees. */
char *vms_test_conn_read_until(VmsTestConn *c, const char *suffix, guint timeout_ms,
                               GError **error);
/* The underlying socket (e.g. to close it mid-command). Owned by @c. */
GSocket *vms_test_conn_socket(VmsTestConn *c);

/* ---- a QMP client (QEMU's QMP, and the plugin's control socket) ---- */

typedef struct _VmsTestQmp VmsTestQmp;

/* Connects to @path, retrying until @timeout_ms while the socket is missing
 * or refuses; reads the greeting; sends qmp_capabilities. Messages must be
 * newline-terminated (QEMU's and the plugin's are). */
VmsTestQmp *vms_test_qmp_connect(const char *path, guint timeout_ms, GError **error);
void vms_test_qmp_free(VmsTestQmp *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsTestQmp, vms_test_qmp_free)

/* The greeting object {"QMP": {...}}. Owned by @q. */
JsonObject *vms_test_qmp_greeting(VmsTestQmp *q);

/* Sends {"execute": @command, "arguments": @arguments} (@arguments nullable,
 * not consumed) and waits for the reply, queueing events that arrive first.
 * Returns the "return" member (caller owns) or NULL with an error whose
 * message is the reply's "desc" (G_IO_ERROR_FAILED) or the I/O failure. */
JsonNode *vms_test_qmp_execute(VmsTestQmp *q, const char *command, JsonObject *arguments,
                               GError **error);
/* Like vms_test_qmp_execute() with the arguments given as JSON text built
 * with printf (@args_format NULL: no arguments). Values are not escaped. */
JsonNode *vms_test_qmp_executef(VmsTestQmp *q, const char *command, GError **error,
                                const char *args_format, ...) G_GNUC_PRINTF(4, 5);

/* Sends @text as is (e.g. malformed JSON) followed by "\n". */
gboolean vms_test_qmp_send_raw(VmsTestQmp *q, const char *text, GError **error);
/* Reads the next message that is not an event (events are queued).
 * Caller owns the object. */
JsonObject *vms_test_qmp_read_reply(VmsTestQmp *q, guint timeout_ms, GError **error);

/* Waits for event @name (queued or new, oldest first) and removes it from
 * the queue. Returns the whole event object (caller owns). */
JsonObject *vms_test_qmp_wait_event(VmsTestQmp *q, const char *name, guint timeout_ms,
                                    GError **error);
/* Drops every queued event. */
void vms_test_qmp_clear_events(VmsTestQmp *q);

/* ---- the plugin's monitor console ---- */

typedef struct _VmsTestMonitor VmsTestMonitor;

/* Connects (retrying like the QMP client) and reads up to the first prompt. */
VmsTestMonitor *vms_test_monitor_connect(const char *path, guint timeout_ms, GError **error);
void vms_test_monitor_free(VmsTestMonitor *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsTestMonitor, vms_test_monitor_free)

#define VMS_TEST_MONITOR_PROMPT "(vmsnap) "

/* Sends @line and "\n"; returns everything printed before the next prompt
 * (the prompt itself removed). */
char *vms_test_monitor_command(VmsTestMonitor *m, const char *line, guint timeout_ms,
                               GError **error);

/* ---- a VM ---- */

typedef struct {
  /* Configuration: defaults from vms_vm_new(); change before vms_vm_start(). */
  guint mem_mib;          /* 64 */
  guint smp;              /* 1 */
  gboolean share;         /* memory-backend-file share=on (TRUE) */
  char *mem_path;         /* "<dir>/guest.ram" */
  const char *arch;       /* the guest's target, "x86_64" or "aarch64" (vms_test_arch()) */
  gboolean with_plugin;   /* load VMSNAP_PLUGIN with qmp=, control=, monitor= (TRUE) */
  char *plugin_extra;     /* appended to the -plugin argument, e.g. "restore=/x,resume=off" (NULL) */
  gboolean incoming_defer; /* add "-incoming defer" (FALSE) */
  GPtrArray *extra_args;  /* appended to QEMU's argv (empty) */
  gboolean mem_anonymous; /* memory-backend-ram (id ram0) instead of the file, e.g. for
                           * QEMU's own migration as a baseline (FALSE) */
  char *kernel;           /* -kernel instead of VMSNAP_GUEST, e.g. the Linux guest (NULL) */
  char *initrd;           /* -initrd (NULL: none) */
  char *append;           /* -append (NULL: none) */

  /* Paths, all inside @dir, fixed by vms_vm_new(). */
  char *dir;
  char *qmp_path;         /* "plugin-qmp.sock": the QMP socket QEMU serves for the plugin */
  char *control_path;     /* "control.sock": the plugin's control socket */
  char *monitor_path;     /* "monitor.sock": the plugin's monitor console */
  char *test_qmp_path;    /* "test-qmp.sock": QEMU's QMP for the test itself */
  char *serial_path;      /* "serial.sock": the guest's command UART */
  char *debugcon_path;    /* "debugcon.log": the guest's debug console */
  char *stderr_path;      /* "qemu.stderr": QEMU's stderr (and stdout) */

  /* While running. */
  GPtrArray *argv;        /* as launched */
  GSubprocess *proc;
  VmsTestQmp *qmp;        /* connected to test_qmp_path by vms_vm_start() */
  VmsTestConn *serial;    /* COM1, connected by the first vms_vm_guest_command() */
} VmsVm;

/* A VM whose files live in @dir (must exist; not removed by vms_vm_free). */
VmsVm *vms_vm_new(const char *dir);
/* Kills QEMU (SIGKILL) if it runs, reaps it, frees everything. NULL is fine. */
void vms_vm_free(VmsVm *vm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsVm, vms_vm_free)

/* @vm->arch is aarch64 (guest RAM at VMS_GUEST_RAM_BASE_AARCH64). */
gboolean vms_vm_is_aarch64(const VmsVm *vm);

/* The QEMU argv for @vm's configuration (caller owns, NULL-terminated). */
GPtrArray *vms_vm_build_argv(VmsVm *vm);

/* Launches QEMU with vms_vm_build_argv() and connects vm->qmp. Does not wait
 * for the guest (see vms_vm_wait_ready). If QEMU exits before its QMP
 * socket answers, fails with its stderr in the message. */
gboolean vms_vm_start(VmsVm *vm, GError **error);
/* Launches @argv (e.g. `vmsnap restore ... --runtime-dir vm->dir`, which
 * execs QEMU) with the safety net and stderr to vm->stderr_path. Does not
 * connect anything. */
gboolean vms_vm_spawn(VmsVm *vm, const char *const *argv, GError **error);
/* Connects vm->qmp to vm->test_qmp_path (after vms_vm_spawn). */
gboolean vms_vm_connect(VmsVm *vm, guint timeout_ms, GError **error);

/* Waits until QEMU exits; *@ret_status is its exit status, or 128+signal.
 * Fails on timeout (QEMU keeps running). */
gboolean vms_vm_wait_exit(VmsVm *vm, guint timeout_ms, int *ret_status, GError **error);
/* Kills and reaps QEMU now (SIGKILL); no-op if not running. */
void vms_vm_kill(VmsVm *vm);
/* QEMU's stderr so far (caller frees; "" if none). */
char *vms_vm_stderr(VmsVm *vm);

/* Waits until the debugcon log, from byte @from on, contains @text.
 * *@ret_end (nullable) receives the offset just after the match. */
gboolean vms_vm_wait_debugcon(VmsVm *vm, const char *text, gsize from, guint timeout_ms,
                              gsize *ret_end, GError **error);
/* Current size of the debugcon log. */
gsize vms_vm_debugcon_size(VmsVm *vm);
/* Waits for "vmsnap-guest: ready" on debugcon. */
gboolean vms_vm_wait_ready(VmsVm *vm, guint timeout_ms, GError **error);

/* Reads guest RAM at @addr, an offset from the start of guest RAM as in
 * guest-abi.h (the physical address on x86), through the test QMP
 * (pmemsave into a temp file in vm->dir). Works while the VM runs or is
 * paused. */
GBytes *vms_vm_read_phys(VmsVm *vm, guint64 addr, gsize len, GError **error);
/* The guest's counter (VMS_GUEST_COUNTER_ADDR) and its whole state page. */
gboolean vms_vm_read_counter(VmsVm *vm, guint64 *ret_counter, GError **error);
gboolean vms_vm_read_state(VmsVm *vm, VmsGuestState *ret_state, GError **error);
/* Polls the counter until it exceeds @above. */
gboolean vms_vm_wait_counter_above(VmsVm *vm, guint64 above, guint timeout_ms, GError **error);

/* Connects to the plugin's control socket and waits until the plugin is
 * ready (query-vmsnap succeeds: QMP connected, memory found), retrying for
 * up to @timeout_ms. Returns the connection (caller frees). */
VmsTestQmp *vms_vm_control(VmsVm *vm, guint timeout_ms, GError **error);

/* Polls query-status on vm->qmp until the VM runs; fails after @timeout_ms. */
gboolean vms_vm_wait_running(VmsVm *vm, guint timeout_ms, GError **error);

/* Writes @line to the guest's serial port, connecting first (and, for a
 * restored VM, waiting until it runs: UART bytes sent while the incoming
 * migration loads would be lost). */
gboolean vms_vm_serial_send(VmsVm *vm, const char *line, guint timeout_ms, GError **error);

/* Sends a command line to the guest on COM1 (connecting the serial socket on
 * first use, after waiting until QMP says the VM runs: bytes sent while a
 * restore is still loading the UART's state would be lost) and returns its
 * reply line without "\n" (caller frees): "ok ...", "bad ..." or "err ...".
 * Does not check which it is. */
char *vms_vm_guest_command(VmsVm *vm, const char *command, guint timeout_ms, GError **error);

/* query-vmsnap on the plugin's control socket @ctl, retried (up to ~5 s)
 * while the plugin has not yet found the guest memory ("memory": null).
 * Returns the reply object (caller unrefs); aborts the test otherwise. */
JsonObject *vms_test_query_ready(VmsTestQmp *ctl);

/* Runs the vmsnap CLI (vms_test_cli()) with @args (NULL-terminated, without
 * argv[0]) and returns its exit status; stdout and stderr in *@ret_out and
 * *@ret_err (each nullable). A failure to spawn fails the test. */
int vms_test_run_cli(const char *const *args, char **ret_out, char **ret_err);

G_END_DECLS
