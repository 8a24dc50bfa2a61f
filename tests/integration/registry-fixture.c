/* vmsnap integration tests: a private docker-registry (registry-fixture.h). */
#include "registry-fixture.h"

#include <unistd.h>

#include "extents.h"
#include "helpers.h"
#include "snapdir.h"
#include "util.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <string.h>

gboolean
vms_test_have_program(const char *name)
{
  g_autofree char *path = g_find_program_in_path(name);

  return path != NULL;
}

static guint16
free_port(void)
{
  g_autoptr(GSocket) s = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new(lo, 0);
  g_autoptr(GSocketAddress) bound = NULL;

  g_assert_nonnull(s);
  g_assert_true(g_socket_bind(s, any, FALSE, NULL));
  bound = g_socket_get_local_address(s, NULL);
  return g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
}

static void
write_htpasswd(const char *user, const char *password, const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  int status = -1;
  const char *argv[] = { "htpasswd", "-Bbn", user, password, NULL };

  if (!vms_test_have_program("htpasswd"))
    vms_test_cannot_run("htpasswd (apache2-utils) is not installed");
  g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
                             NULL, &status, &error));
  g_assert_no_error(error);
  g_assert_true(g_file_set_contents(path, out, -1, &error));
}

static void
write_auth_file(VmsTestRegistry *r, const char *user, const char *password)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *up = g_strdup_printf("%s:%s", user, password);
  g_autofree char *b64 = g_base64_encode((const guchar *)up, strlen(up));
  g_autofree char *json = g_strdup_printf("{\"auths\": {\"%s\": {\"auth\": \"%s\"}}}\n", r->host, b64);

  g_assert_true(g_file_set_contents(r->auth_file, json, -1, &error));
}

/* The registry dies with the test, even when an assertion aborts it. */
static void
die_with_parent(gpointer unused)
{
  prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static gboolean
answers(const char *host)
{
  g_autoptr(GSocketClient) c = g_socket_client_new();
  g_autoptr(GSocketConnection) conn = NULL;

  g_socket_client_set_timeout(c, 1);
  conn = g_socket_client_connect_to_host(c, host, 0, NULL, NULL);
  return conn != NULL;
}

static VmsTestRegistry *start(const char *dir, const char *auth_yaml, const char *user,
                              const char *file_password);

VmsTestRegistry *
vms_test_registry_start(const char *dir, const char *user, const char *password,
                        const char *file_password)
{
  g_autofree char *htpasswd = g_build_filename(dir, "htpasswd", NULL);
  g_autofree char *auth = NULL;

  if (user != NULL) {
    write_htpasswd(user, password, htpasswd);
    auth = g_strdup_printf("auth:\n  htpasswd:\n    realm: vmsnap-test\n    path: %s\n", htpasswd);
  }
  return start(dir, auth, user, file_password);
}

VmsTestRegistry *
vms_test_registry_start_token(const char *dir, const char *realm, const char *service,
                              const char *issuer, const char *cert, const char *user,
                              const char *file_password)
{
  g_autofree char *auth = g_strdup_printf("auth:\n  token:\n    realm: %s\n    service: %s\n"
                                          "    issuer: %s\n    rootcertbundle: %s\n",
                                          realm, service, issuer, cert);

  return start(dir, auth, user, file_password);
}

static VmsTestRegistry *
start(const char *dir, const char *auth_yaml, const char *user, const char *file_password)
{
  VmsTestRegistry *r = g_new0(VmsTestRegistry, 1);
  g_autoptr(GError) error = NULL;
  g_autofree char *config = g_build_filename(dir, "registry.yml", NULL);
  g_autofree char *log = g_build_filename(dir, "registry.log", NULL);
  g_autoptr(GString) yml = g_string_new(NULL);
  g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);

  if (!vms_test_have_program("docker-registry"))
    vms_test_cannot_run("docker-registry is not installed (scripts/setup.sh)");
  r->dir = g_strdup(dir);
  r->store = g_build_filename(dir, "store", NULL);
  r->host = g_strdup_printf("127.0.0.1:%u", free_port());
  r->auth_file = g_build_filename(dir, "auth.json", NULL);
  g_string_append_printf(yml,
                         "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
                         "    rootdirectory: %s\n  delete:\n    enabled: true\n"
                         "http:\n  addr: %s\n",
                         r->store, r->host);
  if (auth_yaml != NULL)
    g_string_append(yml, auth_yaml);
  if (user != NULL) {
    write_auth_file(r, user, file_password);
  } else {
    g_assert_true(g_file_set_contents(r->auth_file, "{}\n", -1, &error));
  }
  g_assert_true(g_file_set_contents(config, yml->str, -1, &error));
  g_subprocess_launcher_set_stderr_file_path(l, log);
  g_subprocess_launcher_set_stdout_file_path(l, log);
  g_subprocess_launcher_set_child_setup(l, die_with_parent, NULL, NULL);
  r->proc = g_subprocess_launcher_spawn(l, &error, "docker-registry", "serve", config, NULL);
  g_assert_no_error(error);
  for (int i = 0; i < 200 && !answers(r->host); i++) {
    g_assert_nonnull(g_subprocess_get_identifier(r->proc)); /* still running */
    g_usleep(50000);
  }
  g_assert_true(answers(r->host));
  return r;
}

void
vms_test_registry_stop(VmsTestRegistry *r)
{
  if (r->proc == NULL)
    return;
  g_subprocess_send_signal(r->proc, SIGTERM);
  for (int i = 0; i < 100 && g_subprocess_get_identifier(r->proc) != NULL; i++)
    g_usleep(20000);
  g_subprocess_force_exit(r->proc);
  g_subprocess_wait(r->proc, NULL, NULL);
  g_clear_object(&r->proc);
}

void
vms_test_registry_free(VmsTestRegistry *r)
{
  if (r == NULL)
    return;
  vms_test_registry_stop(r);
  g_free(r->dir);
  g_free(r->store);
  g_free(r->host);
  g_free(r->auth_file);
  g_free(r);
}

char *
vms_test_registry_ref(VmsTestRegistry *r, const char *repo_tag)
{
  return g_strdup_printf("%s/%s", r->host, repo_tag);
}

static guint64
tree_bytes(const char *path)
{
  g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
  const char *name;
  guint64 total = 0;

  while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
    g_autofree char *child = g_build_filename(path, name, NULL);
    GStatBuf st;
    if (g_lstat(child, &st) != 0)
      continue;
    total += S_ISDIR(st.st_mode) ? tree_bytes(child) : (guint64)st.st_size;
  }
  return total;
}

guint64
vms_test_registry_stored_bytes(VmsTestRegistry *r)
{
  g_autofree char *blobs = g_build_filename(r->store, "docker", "registry", "v2", "blobs", NULL);

  return tree_bytes(blobs);
}

char *
vms_test_registry_blob_path(VmsTestRegistry *r, const char *digest)
{
  const char *hex = digest + strlen("sha256:");
  g_autofree char *two = g_strndup(hex, 2);

  return g_build_filename(r->store, "docker", "registry", "v2", "blobs", "sha256", two, hex, "data",
                          NULL);
}

int
vms_test_registry_cliv(VmsTestRegistry *r, const char *const *args, char **ret_out, char **ret_err)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new();
  g_autoptr(GSubprocessLauncher) l =
      g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_autoptr(GSubprocess) p = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL, *err = NULL;

  g_ptr_array_add(argv, (char *)vms_test_cli());
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add(argv, (char *)args[i]);
  g_ptr_array_add(argv, NULL);
  g_subprocess_launcher_setenv(l, "REGISTRY_AUTH_FILE", r->auth_file, TRUE);
  p = g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, &error);
  g_assert_no_error(error);
  g_assert_true(g_subprocess_communicate_utf8(p, NULL, NULL, &out, &err, &error));
  g_assert_no_error(error);
  g_test_message("vmsnap %s: %s%s", (char *)argv->pdata[1], out, err);
  if (ret_out != NULL)
    *ret_out = g_steal_pointer(&out);
  if (ret_err != NULL)
    *ret_err = g_steal_pointer(&err);
  return g_subprocess_get_if_exited(p) ? g_subprocess_get_exit_status(p) : 128;
}

guint64
vms_test_number_before(const char *text, const char *key)
{
  const char *k = strstr(text, key);
  const char *p;

  g_assert_nonnull(k);
  for (p = k; p > text && g_ascii_isdigit(p[-1]); p--)
    ;
  g_assert_true(p < k);
  return g_ascii_strtoull(p, NULL, 10);
}

static void
stage_bytes(VmsSnapWriter *w, const char *name, const guint8 *data, gsize len)
{
  g_autoptr(GError) error = NULL;
  vms_autofd fd = vms_snap_writer_stage(w, name, &error);

  g_assert_no_error(error);
  g_assert_cmpint(vms_pwrite_full(fd, data, len, 0), ==, 0);
  g_assert_true(vms_snap_writer_finish(w, name, NULL, NULL, &error));
  g_assert_no_error(error);
}

static void
set_diff_fields(VmsManifest *m, const char *parent_name, const VmsSnapshot *parent,
                const guint8 map_sha[32], const guint8 data_sha[32], const GArray *list)
{
  m->kind = VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
  m->memory_capture = VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF;
  vms_manifest_set_string(&m->parent, parent_name);
  vms_manifest_set_bytes(&m->parent_manifest_sha256, parent->manifest_sha256, 32);
  vms_manifest_set_bytes(&m->page_map_sha256, map_sha, 32);
  vms_manifest_set_bytes(&m->diff_data_sha256, data_sha, 32);
  m->diff_data_bytes = vms_extents_total(list);
  m->diff_extents = list->len;
}

void
vms_test_make_diff_pages(const char *dir, const char *parent_dir, const char *parent_name,
                         guint pages, guint stride, VmsTestFillPage fill, gpointer user)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) parent = vms_snapshot_open(parent_dir, &error);
  guint64 size = parent != NULL ? parent->manifest->memory_size_bytes : 0;
  g_autoptr(VmsSnapWriter) w = vms_snap_writer_new(dir, &error);
  g_autoptr(VmsManifest) m = vms_test_manifest_full(size);
  g_autoptr(GArray) list = vms_extents_new();
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  guint8 page[4096], data_sha[32], map_sha[32], state[4096], state_sha[32];
  gsize dlen = 32;
  vms_autofd mem = -1, map = -1;

  g_assert_no_error(error);
  mem = vms_snap_writer_stage(w, VMS_DIFF_FILE, &error);
  g_assert_cmpint(ftruncate(mem, (off_t)size), ==, 0);
  for (guint64 p = 0, n = 0; n < pages && p < size / 4096; p += stride, n++) {
    fill(page, sizeof page, n, user);
    g_assert_cmpint(vms_pwrite_full(mem, page, sizeof page, p * 4096), ==, 0);
    g_checksum_update(sum, page, sizeof page);
    vms_extents_append(list, p * 4096, 4096);
  }
  g_checksum_get_digest(sum, data_sha, &dlen);
  g_assert_true(vms_snap_writer_finish(w, VMS_DIFF_FILE, NULL, NULL, &error));
  map = vms_snap_writer_stage(w, VMS_MAP_FILE, &error);
  g_assert_true(vms_pagemap_file_write(map, list, 4096, size, map_sha, &error));
  g_assert_true(vms_snap_writer_finish(w, VMS_MAP_FILE, NULL, NULL, &error));
  fill(state, sizeof state, G_MAXUINT32, user);
  stage_bytes(w, VMS_STATE_FILE, state, sizeof state);
  g_checksum_reset(sum);
  g_checksum_update(sum, state, sizeof state);
  g_checksum_get_digest(sum, state_sha, &dlen);
  vms_manifest_set_bytes(&m->state_sha256, state_sha, 32);
  m->state_size = sizeof state;
  set_diff_fields(m, parent_name, parent, map_sha, data_sha, list);
  g_assert_true(vms_snap_writer_commit(w, m, &error));
  g_assert_no_error(error);
  vms_test_add_digests(dir);
}
