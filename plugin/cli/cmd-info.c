/* vmsnap CLI: `vmsnap info DIR [--json]` and `vmsnap verify DIR`. */
#include "cli.h"

#include <stdio.h>
#include <json-glib/json-glib.h>

#include "chain.h"
#include "disk-local.h"
#include "error.h"
#include "manifest.h"
#include "snapdir.h"
#include "util.h"

/* Exactly one positional argument, the snapshot directory. */
/* The one snapshot directory argument, opened; NULL after printing why
 * (a wrong argument count, or the snapshot cannot be read). */
static VmsSnapshot *
open_dir_argument(int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  VmsSnapshot *s;

  if (argc != 2) {
    vms_cli_error(argc < 2 ? "missing snapshot directory (see --help)"
                           : "too many arguments (see --help)");
    return NULL;
  }
  s = vms_snapshot_open(argv[1], &error);
  if (s == NULL)
    vms_cli_error("%s", error->message);
  return s;
}

static void
print_row(const char *label, const char *value)
{
  printf("%-20s %s\n", label, value);
}

static void
print_hash_row(const char *label, const ProtobufCBinaryData *b)
{
  char hex[65];

  if (b->len != VMS_SHA256_LEN) {
    print_row(label, "-");
    return;
  }
  vms_sha256_hex(b->data, hex);
  print_row(label, hex);
}

static void
print_size_row(const char *label, guint64 bytes)
{
  g_autofree char *human = g_format_size_full(bytes, G_FORMAT_SIZE_IEC_UNITS);
  g_autofree char *text = g_strdup_printf("%" G_GUINT64_FORMAT " bytes (%s)", bytes, human);

  print_row(label, text);
}

static void
print_created(const VmsManifest *m)
{
  g_autoptr(GDateTime) t = NULL;
  g_autofree char *iso = NULL;

  if (m->created_at == NULL) {
    print_row("created", "-");
    return;
  }
  t = g_date_time_new_from_unix_utc(m->created_at->seconds);
  iso = t != NULL ? g_date_time_format(t, "%Y-%m-%dT%H:%M:%S") : g_strdup("?");
  printf("%-20s %s.%09dZ\n", "created", iso, m->created_at->nanos);
}

static void
print_diff_rows(const VmsManifest *m)
{
  g_autofree char *extents = g_strdup_printf("%" G_GUINT64_FORMAT, m->diff_extents);

  print_row("parent", m->parent);
  print_hash_row("parent manifest", &m->parent_manifest_sha256);
  print_size_row("diff data", m->diff_data_bytes);
  print_row("diff extents", extents);
  print_hash_row("diff data sha256", &m->diff_data_sha256);
  print_hash_row("page map sha256", &m->page_map_sha256);
}

static void
print_human(VmsSnapshot *s)
{
  const VmsManifest *m = s->manifest;
  g_autofree char *version = g_strdup_printf("%u", m->version);
  g_autofree char *vps = g_strdup_printf("%u", m->vp_count);
  g_autofree char *page = g_strdup_printf("%u", m->page_size);
  g_autoptr(GString) argv = g_string_new(NULL);

  print_row("snapshot", s->path);
  print_row("id", m->id);
  print_row("manifest version", version);
  print_created(m);
  print_row("kind", vms_manifest_kind_name(m->kind));
  print_row("memory capture", vms_manifest_capture_name(m->memory_capture));
  print_row("memory file", vms_snapshot_memory_file(s));
  print_size_row("memory size", m->memory_size_bytes);
  print_row("page size", page);
  print_row("VP count", vps);
  print_row("architecture", m->architecture);
  print_row("machine type", m->machine_type[0] != '\0' ? m->machine_type : "-");
  print_row("hypervisor", m->hypervisor_version[0] != '\0' ? m->hypervisor_version : "-");
  print_row("plugin version", m->plugin_version[0] != '\0' ? m->plugin_version : "-");
  print_size_row("state size", m->state_size);
  print_hash_row("state sha256", &m->state_sha256);
  if (m->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF)
    print_diff_rows(m);
  for (gsize i = 0; i < m->n_qemu_argv; i++) {
    g_autofree char *quoted = g_shell_quote(m->qemu_argv[i]);
    g_string_append_printf(argv, "%s%s", i > 0 ? " " : "", quoted);
  }
  print_row("qemu argv", argv->len > 0 ? argv->str : "-");
}

static void
print_json(VmsSnapshot *s)
{
  g_autoptr(JsonObject) obj = vms_manifest_to_json(s->manifest);
  g_autoptr(JsonNode) node = json_node_new(JSON_NODE_OBJECT);
  g_autoptr(JsonGenerator) gen = json_generator_new();
  g_autofree char *text = NULL;

  json_node_set_object(node, obj);
  json_generator_set_root(gen, node);
  json_generator_set_pretty(gen, TRUE);
  text = json_generator_to_data(gen, NULL);
  printf("%s\n", text);
}

/* `vmsnap info DIR [--json]`: print the manifest of a committed snapshot. */
int
vms_cli_info(int argc, char **argv)
{
  gboolean json = FALSE;
  const GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print the manifest as JSON", NULL },
    { NULL },
  };
  g_autoptr(VmsSnapshot) s = NULL;

  if (!vms_cli_parse(&argc, &argv, entries, "DIR", "Print a snapshot's manifest."))
    return 1;
  s = open_dir_argument(argc, argv);
  if (s == NULL)
    return 1;
  if (json)
    print_json(s);
  else
    print_human(s);
  return 0;
}

/* `vmsnap verify DIR`: the manifest, state.bin size and SHA-256, the memory
 * file's size, every chunk digest of the memory, and for a diff the same
 * for the whole chain of parents down to its full snapshot
 * (vms_chain_verify). A snapshot without digests is reported as such and
 * fails: it is never called verified. */
int
vms_cli_verify(int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = NULL;
  const char *dir;
  gboolean is_diff;

  if (!vms_cli_parse(&argc, &argv, NULL, "DIR",
                     "Check a snapshot: its manifest, state.bin size and SHA-256, the memory\n"
                     "file's size and every chunk digest of its memory (memory.chunks), and\n"
                     "for a diff snapshot the same for its whole parent chain."))
    return 1;
  s = open_dir_argument(argc, argv);
  if (s == NULL)
    return 1;
  dir = argv[1];
  is_diff = s->manifest->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
  if (!vms_chain_verify(dir, &error)) {
    if (g_error_matches(error, VMS_ERROR, VMS_ERROR_NO_DIGESTS))
      return vms_cli_error("%s: NOT VERIFIED: %s", dir, error->message);
    return vms_cli_error("%s", error->message);
  }
  guint disks = vms_manifest_frozen_disk_count(s->manifest);
  g_autofree char *local = g_build_filename(dir, VMS_DISKS_LOCAL_FILE, NULL);
  g_autofree char *disk_note = disks == 0 ? g_strdup("") : g_strdup_printf(
    ", %u disk(s) checked%s", disks,
    g_file_test(local, G_FILE_TEST_EXISTS) ? " (pulled: identities of this host, disks.local)" : "");
  printf("%s: OK (%s snapshot, %s, state.bin %" G_GUINT64_FORMAT " bytes, memory digests "
         "checked%s%s)\n", dir, vms_manifest_kind_name(s->manifest->kind),
         vms_snapshot_memory_file(s), s->manifest->state_size,
         is_diff ? ", parent chain checked" : "", disk_note);
  return 0;
}
