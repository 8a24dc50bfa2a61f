/* relaunch.c: QEMU option strings and the argv rewrite for a restore. */
#include <string.h>

#include "error.h"
#include "relaunch.h"

static const char *const base_argv[] = {
  "qemu-system-x86_64", "-accel", "tcg", "-m", "512M", "-smp", "2",
  "-object", "memory-backend-file,id=ram0,size=512M,mem-path=/dev/shm/vm0.ram,share=on,prealloc=on",
  "-machine", "pc,memory-backend=ram0",
  "-chardev", "socket,id=vmsnap-qmp,path=/run/vm0/qmp.sock,server=on,wait=off",
  "-mon", "chardev=vmsnap-qmp,mode=control",
  "-chardev", "file,id=log,path=/var/log/vm0/serial.log",
  "-chardev", "socket,id=tcp,host=127.0.0.1,port=4444,server=on",
  "-qmp", "unix:/run/vm0/qmp-mgmt.sock,server=on,wait=off",
  "-monitor", "unix:/other/qmp.sock,server=on,wait=off",
  "-plugin", "/usr/lib/vmsnap/libvmsnap.so,qmp=/run/vm0/qmp.sock,control=/run/vm0/vmsnap.sock,"
             "monitor=/run/vm0/vmsnap-monitor.sock,restore=/old/snap,mem=/dev/shm/vm0.ram",
  "-plugin", "/usr/lib/other/libhotblocks.so,path=/run/vm0/qmp.sock",
  "-daemonize", "-pidfile", "/run/vm0/pid", "-S", "-incoming", "tcp:0:4444", "-loadvm", "x",
  "--name", "vm0",
  NULL,
};

static const VmsRelaunchOptions base_opts = {
  .snapshot_dir = "/snaps/s1",
  .runtime_dir = "/run/clone",
};

static gint
index_of(char **argv, const char *word)
{
  for (gint i = 0; argv[i] != NULL; i++)
    if (g_str_equal(argv[i], word))
      return i;
  return -1;
}

static guint
count_of(char **argv, const char *word)
{
  guint n = 0;
  for (gint i = 0; argv[i] != NULL; i++)
    n += g_str_equal(argv[i], word);
  return n;
}

static void
test_opt_get_set(void)
{
  g_autofree char *a = vms_qemu_opt_get("file,id=x,path=/a,,b", "path", "backend");
  g_autofree char *b = vms_qemu_opt_get("file,id=x,path=/a,,b", "backend", "backend");
  g_autofree char *c = vms_qemu_opt_get("file,id=x", "path", NULL);
  g_autofree char *d = vms_qemu_opt_set("file,id=x,path=/a,,b", "path", "/c,d");
  g_autofree char *e = vms_qemu_opt_set("a=1,b=2,a=3", "a", NULL);
  g_autofree char *f = vms_qemu_opt_set("a=1", "b", "2");
  g_autofree char *g = vms_qemu_opt_set("a=1,a=3", "a", "9");
  g_autofree char *h = vms_qemu_opt_get("ab=1,a=2", "a", NULL);

  g_assert_cmpstr(a, ==, "/a,b");
  g_assert_cmpstr(b, ==, "file");
  g_assert_null(c);
  g_assert_cmpstr(d, ==, "file,id=x,path=/c,,d");
  g_assert_cmpstr(e, ==, "b=2");
  g_assert_cmpstr(f, ==, "a=1,b=2");
  g_assert_cmpstr(g, ==, "a=9");
  g_assert_cmpstr(h, ==, "2");
}

static void
test_parse_size(void)
{
  struct { const char *text; guint64 unit; guint64 want; gboolean ok; } cases[] = {
    { "512M", 1, 512ull << 20, TRUE },  { "4G", 1, 4ull << 30, TRUE },
    { "4096", 1, 4096, TRUE },          { "64", 1 << 20, 64ull << 20, TRUE },
    { "1k", 1, 1024, TRUE },            { "2GiB", 1, 2ull << 30, TRUE },
    { "3MB", 1, 3ull << 20, TRUE },     { "2.5G", 1, 0, FALSE },
    { "", 1, 0, FALSE },                { "G", 1, 0, FALSE },
    { "12X", 1, 0, FALSE },             { "99999999999999999999", 1, 0, FALSE },
    { "20000000000T", 1, 0, FALSE },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autoptr(GError) error = NULL;
    guint64 v = 7;
    gboolean ok = vms_qemu_parse_size(cases[i].text, cases[i].unit, &v, &error);
    g_assert_cmpint(ok, ==, cases[i].ok);
    if (ok)
      g_assert_cmpuint(v, ==, cases[i].want);
    else
      g_assert_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT);
  }
}

static void
test_find_memory(void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;
  guint64 size = 0;
  gboolean share = FALSE;

  g_assert_true(vms_relaunch_find_memory(base_argv, &path, &size, &share, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(path, ==, "/dev/shm/vm0.ram");
  g_assert_cmpuint(size, ==, 512ull << 20);
  g_assert_true(share);
}

static void
test_rewrite(void)
{
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) out = vms_relaunch_argv(base_argv, &base_opts, &error);

  g_assert_no_error(error);
  g_assert_cmpstr(out[0], ==, "qemu-system-x86_64");
  gint obj = index_of(out, "-object");
  g_assert_cmpstr(out[obj + 1], ==, "memory-backend-file,id=ram0,size=512M,"
                                    "mem-path=/snaps/s1/memory.bin,share=off");
  g_assert_cmpint(index_of(out, "socket,id=vmsnap-qmp,path=/run/clone/qmp.sock,server=on,wait=off"), >, 0);
  g_assert_cmpint(index_of(out, "file,id=log,path=/run/clone/serial.log"), >, 0);
  /* A TCP socket cannot be moved: kept as it was. */
  g_assert_cmpint(index_of(out, "socket,id=tcp,host=127.0.0.1,port=4444,server=on"), >, 0);
  g_assert_cmpint(index_of(out, "unix:/run/clone/qmp-mgmt.sock,server=on,wait=off"), >, 0);
  /* Another qmp.sock: same basename, different path, so a different name. */
  g_assert_cmpint(index_of(out, "unix:/run/clone/2-qmp.sock,server=on,wait=off"), >, 0);
  /* The plugin's qmp= is the same socket as the chardev serving it. */
  g_assert_cmpint(index_of(out, "/usr/lib/vmsnap/libvmsnap.so,qmp=/run/clone/qmp.sock,"
                                "control=/run/clone/vmsnap.sock,monitor=/run/clone/vmsnap-monitor.sock,"
                                "restore=/snaps/s1,mem=/snaps/s1/memory.bin"), >, 0);
  /* Other plugins are not ours to change. */
  g_assert_cmpint(index_of(out, "/usr/lib/other/libhotblocks.so,path=/run/vm0/qmp.sock"), >, 0);
  g_assert_cmpint(index_of(out, "-daemonize"), ==, -1);
  g_assert_cmpint(index_of(out, "-pidfile"), ==, -1);
  g_assert_cmpint(index_of(out, "-loadvm"), ==, -1);
  g_assert_cmpint(index_of(out, "tcp:0:4444"), ==, -1);
  g_assert_cmpuint(count_of(out, "-S"), ==, 1);
  g_assert_cmpuint(count_of(out, "-incoming"), ==, 1);
  g_assert_cmpstr(out[index_of(out, "-incoming") + 1], ==, "defer");
  g_assert_cmpstr(out[index_of(out, "--name") + 1], ==, "vm0");
}

static void
test_plugin_path_and_extra(void)
{
  g_autoptr(GError) error = NULL;
  const char *const extra[] = { "-name", "clone", NULL };
  VmsRelaunchOptions opts = base_opts;
  opts.plugin_path = "/build/libvmsnap.so";
  opts.extra_args = extra;
  g_auto(GStrv) out = vms_relaunch_argv(base_argv, &opts, &error);

  g_assert_no_error(error);
  gint i = 0;
  while (out[i] != NULL && !g_str_has_prefix(out[i], "/build/libvmsnap.so,qmp="))
    i++;
  g_assert_nonnull(out[i]);
  guint n = g_strv_length(out);
  g_assert_cmpstr(out[n - 2], ==, "-name");
  g_assert_cmpstr(out[n - 1], ==, "clone");
}

static void
test_json_object(void)
{
  const char *const argv[] = {
    "qemu", "-object",
    "{\"qom-type\":\"memory-backend-file\",\"id\":\"pc.ram\",\"mem-path\":\"/ram\",\"size\":1073741824,"
    "\"share\":true,\"prealloc\":true,\"discard-data\":true}",
    "-plugin", "libvmsnap.so,qmp=/q.sock", NULL,
  };
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;
  guint64 size = 0;
  gboolean share = FALSE;

  g_assert_true(vms_relaunch_find_memory(argv, &path, &size, &share, &error));
  g_assert_cmpstr(path, ==, "/ram");
  g_assert_cmpuint(size, ==, 1ull << 30);
  g_assert_true(share);
  g_auto(GStrv) out = vms_relaunch_argv(argv, &base_opts, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(out[2], ==, "{\"qom-type\":\"memory-backend-file\",\"id\":\"pc.ram\","
                              "\"mem-path\":\"/snaps/s1/memory.bin\",\"size\":1073741824,\"share\":false}");
}

/* A recorded -object value nested a million levels deep is not parsed by
 * json-glib (which recurses once a level and would overflow the stack):
 * relaunch treats it as a value that is not a memory backend. */
static void
test_deep_json_object(void)
{
  const gsize depth = 1000000;
  g_autoptr(GString) deep = g_string_new("{\"qom-type\":");
  for (gsize i = 0; i < depth; i++)
    g_string_append_c(deep, '[');
  for (gsize i = 0; i < depth; i++)
    g_string_append_c(deep, ']');
  g_string_append_c(deep, '}');
  const char *const argv[] = {
    "qemu", "-object", deep->str,
    "-object", "memory-backend-file,id=m,size=1G,mem-path=/r,share=on",
    "-plugin", "libvmsnap.so,qmp=/q.sock", NULL,
  };
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) out = vms_relaunch_argv(argv, &base_opts, &error);

  g_assert_no_error(error);
  g_assert_cmpstr(out[2], ==, deep->str);
  g_assert_cmpstr(out[4], ==, "memory-backend-file,id=m,size=1G,mem-path=/snaps/s1/memory.bin,share=off");
}

static void
test_refusals(void)
{
  const char *const no_plugin[] = { "qemu", "-object", "memory-backend-file,id=m,size=1G,mem-path=/r", NULL };
  const char *const no_mem[] = { "qemu", "-m", "1G", "-plugin", "libvmsnap.so,qmp=/q", NULL };
  const char *const two_mem[] = {
    "qemu", "-object", "memory-backend-file,id=a,size=1G,mem-path=/a",
    "-object", "memory-backend-file,id=b,size=1G,mem-path=/b", "-plugin", "libvmsnap.so,qmp=/q", NULL,
  };
  const char *const two_mem_named[] = {
    "qemu", "-object", "memory-backend-file,id=a,size=1G,mem-path=/a",
    "-object", "memory-backend-file,id=b,size=1G,mem-path=/b", "-machine", "q35,memory-backend=b",
    "-plugin", "libvmsnap.so,qmp=/q", NULL,
  };
  const char *const empty[] = { NULL };
  struct { const char *const *argv; const char *want; } cases[] = {
    { no_plugin, "-plugin" }, { no_mem, "memory-backend-file" },
    { two_mem, "more than one" }, { empty, "qemu_argv" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) out = vms_relaunch_argv(cases[i].argv, &base_opts, &error);
    g_assert_null(out);
    g_assert_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull(strstr(error->message, cases[i].want));
  }
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) out = vms_relaunch_argv(two_mem_named, &base_opts, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(out[2], ==, "memory-backend-file,id=a,size=1G,mem-path=/a");
  g_assert_cmpstr(out[4], ==, "memory-backend-file,id=b,size=1G,mem-path=/snaps/s1/memory.bin,share=off");
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/relaunch/opt-get-set", test_opt_get_set);
  g_test_add_func("/relaunch/parse-size", test_parse_size);
  g_test_add_func("/relaunch/find-memory", test_find_memory);
  g_test_add_func("/relaunch/rewrite", test_rewrite);
  g_test_add_func("/relaunch/deep-json-object", test_deep_json_object);
  g_test_add_func("/relaunch/plugin-path-and-extra", test_plugin_path_and_extra);
  g_test_add_func("/relaunch/json-object", test_json_object);
  g_test_add_func("/relaunch/refusals", test_refusals);
  return g_test_run();
}
