/* vmsnap core: rewriting a saved QEMU command line for a restore (relaunch.h). */
#include "relaunch.h"
#include "relocate.h"

#include <errno.h>
#include <string.h>
#include <json-glib/json-glib.h>

#include "error.h"
#include "json-bounded.h"
#include "snapdir.h"

#define PLUGIN_NAME "libvmsnap.so"

/* ---- dotted option strings ---- */

/* Splits "a=1,b=x,,y" into unescaped elements {"a=1", "b=x,y"}. */
static GPtrArray *
opts_split(const char *opts)
{
  GPtrArray *elems = g_ptr_array_new_with_free_func(g_free);
  GString *cur = g_string_new(NULL);

  for (const char *p = opts; *p != '\0'; p++) {
    if (p[0] == ',' && p[1] == ',') {
      g_string_append_c(cur, ',');
      p++;
    } else if (p[0] == ',') {
      g_ptr_array_add(elems, g_string_free(g_steal_pointer(&cur), FALSE));
      cur = g_string_new(NULL);
    } else {
      g_string_append_c(cur, p[0]);
    }
  }
  g_ptr_array_add(elems, g_string_free(cur, FALSE));
  return elems;
}

static char *
opts_join(GPtrArray *elems)
{
  GString *out = g_string_new(NULL);

  for (guint i = 0; i < elems->len; i++) {
    const char *e = elems->pdata[i];
    if (i > 0)
      g_string_append_c(out, ',');
    for (const char *p = e; *p != '\0'; p++) {
      g_string_append_c(out, *p);
      if (*p == ',')
        g_string_append_c(out, ',');
    }
  }
  return g_string_free(out, FALSE);
}

static gboolean
elem_has_key(const char *elem, const char *key)
{
  gsize n = strlen(key);
  return strncmp(elem, key, n) == 0 && elem[n] == '=';
}

char *
vms_qemu_opt_get(const char *opts, const char *key, const char *implied_key)
{
  g_autoptr(GPtrArray) elems = opts_split(opts);
  char *found = NULL;

  for (guint i = 0; i < elems->len; i++) {
    const char *e = elems->pdata[i];
    if (elem_has_key(e, key)) {
      g_free(found);
      found = g_strdup(e + strlen(key) + 1);
    } else if (i == 0 && implied_key != NULL && strchr(e, '=') == NULL &&
               g_str_equal(key, implied_key)) {
      found = g_strdup(e);
    }
  }
  return found;
}

char *
vms_qemu_opt_set(const char *opts, const char *key, const char *value)
{
  g_autoptr(GPtrArray) elems = opts_split(opts);
  gboolean done = FALSE;

  for (guint i = 0; i < elems->len;) {
    if (!elem_has_key(elems->pdata[i], key)) {
      i++;
    } else if (value == NULL || done) {
      g_ptr_array_remove_index(elems, i);
    } else {
      g_free(elems->pdata[i]);
      elems->pdata[i] = g_strdup_printf("%s=%s", key, value);
      done = TRUE;
      i++;
    }
  }
  if (!done && value != NULL)
    g_ptr_array_add(elems, g_strdup_printf("%s=%s", key, value));
  return opts_join(elems);
}

static gboolean
bad_size(const char *text, GError **error)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "bad size '%s'", text ? text : "(null)");
  return FALSE;
}

/* Bytes per unit of a size suffix letter, 0 if it is not one. */
static guint64
suffix_unit(char c)
{
  switch (g_ascii_toupper(c)) {
  case 'B': return 1;
  case 'K': return G_GUINT64_CONSTANT(1) << 10;
  case 'M': return G_GUINT64_CONSTANT(1) << 20;
  case 'G': return G_GUINT64_CONSTANT(1) << 30;
  case 'T': return G_GUINT64_CONSTANT(1) << 40;
  default: return 0;
  }
}

gboolean
vms_qemu_parse_size(const char *text, guint64 default_unit, guint64 *ret_bytes, GError **error)
{
  char *end = NULL;
  guint64 unit = default_unit;

  if (text == NULL || !g_ascii_isdigit(text[0]) || default_unit == 0)
    return bad_size(text, error);
  errno = 0;
  guint64 n = g_ascii_strtoull(text, &end, 10);
  if (errno == ERANGE)
    return bad_size(text, error);
  if (*end != '\0') {
    unit = suffix_unit(*end);
    if (unit == 0)
      return bad_size(text, error);
    end++;
    if (unit > 1 && (g_ascii_strcasecmp(end, "iB") == 0 || g_ascii_strcasecmp(end, "B") == 0))
      end += strlen(end);
  }
  if (*end != '\0' || n > G_MAXUINT64 / unit)
    return bad_size(text, error);
  *ret_bytes = n * unit;
  return TRUE;
}

/* ---- the guest RAM backend ---- */

/* "--object" and "-object" are the same option to QEMU. */
static const char *
option_name(const char *arg)
{
  return g_str_has_prefix(arg, "--") ? arg + 1 : arg;
}

static JsonObject *
parse_json_object(const char *text)
{
  /* Bounded: the text comes from a manifest (json-bounded.h). */
  g_autoptr(JsonNode) root = vms_json_parse_bounded(text, NULL);

  if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root))
    return NULL;
  return json_object_ref(json_node_get_object(root));
}

typedef struct {
  gint index;     /* of the -object value in argv, -1 if none */
  char *id;
  char *mem_path;
  char *size;     /* as written */
  gboolean share;
} MemBackend;

static void
mem_backend_clear(MemBackend *b)
{
  g_clear_pointer(&b->id, g_free);
  g_clear_pointer(&b->mem_path, g_free);
  g_clear_pointer(&b->size, g_free);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(MemBackend, mem_backend_clear)

/* Reads a -object value; FALSE if it is not a memory-backend-file. */
static gboolean
parse_mem_backend(const char *value, MemBackend *ret)
{
  if (value[0] == '{') {
    g_autoptr(JsonObject) o = parse_json_object(value);
    if (o == NULL || g_strcmp0(json_object_get_string_member_with_default(o, "qom-type", ""),
                               "memory-backend-file") != 0)
      return FALSE;
    JsonNode *size = json_object_get_member(o, "size");
    ret->id = g_strdup(json_object_get_string_member_with_default(o, "id", ""));
    ret->mem_path = g_strdup(json_object_get_string_member_with_default(o, "mem-path", ""));
    ret->size = size == NULL ? NULL
              : json_node_get_value_type(size) == G_TYPE_STRING
                  ? g_strdup(json_node_get_string(size))
                  : g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(size));
    ret->share = json_object_get_boolean_member_with_default(o, "share", FALSE);
    return TRUE;
  }
  g_autofree char *type = vms_qemu_opt_get(value, "qom-type", "qom-type");
  if (g_strcmp0(type, "memory-backend-file") != 0)
    return FALSE;
  g_autofree char *share = vms_qemu_opt_get(value, "share", NULL);
  ret->id = vms_qemu_opt_get(value, "id", NULL);
  ret->mem_path = vms_qemu_opt_get(value, "mem-path", NULL);
  ret->size = vms_qemu_opt_get(value, "size", NULL);
  ret->share = share != NULL && (g_str_equal(share, "on") || g_str_equal(share, "true") ||
                                 g_str_equal(share, "yes"));
  return TRUE;
}

static gboolean
find_backend(const char *const *argv, MemBackend *ret, GError **error)
{
  g_autofree char *want_id = NULL;
  guint found = 0;

  for (guint i = 1; argv[i] != NULL && argv[i + 1] != NULL; i++) {
    const char *opt = option_name(argv[i]);
    if (g_str_equal(opt, "-machine") || g_str_equal(opt, "-M")) {
      char *id = vms_qemu_opt_get(argv[i + 1], "memory-backend", NULL);
      if (id != NULL) {
        g_free(want_id);
        want_id = id;
      }
    }
  }
  for (guint i = 1; argv[i] != NULL && argv[i + 1] != NULL; i++) {
    g_auto(MemBackend) b = { .index = -1 };
    if (!g_str_equal(option_name(argv[i]), "-object") || !parse_mem_backend(argv[i + 1], &b))
      continue;
    if (want_id != NULL && g_strcmp0(b.id, want_id) != 0)
      continue;
    found++;
    mem_backend_clear(ret);
    *ret = b;
    ret->index = (gint)i + 1;
    memset(&b, 0, sizeof(b));
  }
  if (found == 1 && ret->mem_path != NULL && ret->mem_path[0] != '\0')
    return TRUE;
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              found == 0 ? "-object memory-backend-file: the command line has no file-backed guest RAM%s%s"
                         : "-object memory-backend-file: more than one could be the guest RAM%s%s "
                           "(name it with -machine memory-backend=ID)",
              want_id != NULL ? " with id=" : "", want_id != NULL ? want_id : "");
  return FALSE;
}

gboolean
vms_relaunch_find_memory(const char *const *argv, char **ret_mem_path, guint64 *ret_size,
                         gboolean *ret_share, GError **error)
{
  g_auto(MemBackend) b = { .index = -1 };
  guint64 size = 0;

  g_return_val_if_fail(argv != NULL, FALSE);
  if (argv[0] == NULL || !find_backend(argv, &b, error))
    return FALSE;
  if (!vms_qemu_parse_size(b.size, 1, &size, error)) {
    g_prefix_error(error, "-object memory-backend-file size: ");
    return FALSE;
  }
  *ret_mem_path = g_steal_pointer(&b.mem_path);
  *ret_size = size;
  *ret_share = b.share;
  return TRUE;
}

/* ---- rewriting ---- */

typedef struct {
  const VmsRelaunchOptions *opts;
  char *snap_dir;       /* absolute */
  char *mem_file;       /* absolute: opts->memory_path or snap_dir/memory.bin */
  gint ram_index;       /* argv index of the guest RAM's -object value */
  VmsRelocator *rel;    /* sockets and chardev files into the runtime dir */
  gboolean have_plugin;
} Relaunch;

static char *
rewrite_ram_object(Relaunch *r, const char *value)
{
  const char *placeholder = r->opts->overlay_placeholder;
  const char *mem_path = placeholder != NULL ? placeholder : r->mem_file;

  if (value[0] != '{') {
    g_autofree char *a = vms_qemu_opt_set(value, "mem-path", mem_path);
    g_autofree char *b = vms_qemu_opt_set(a, "share", placeholder != NULL ? "on" : "off");
    g_autofree char *c = vms_qemu_opt_set(b, "prealloc", NULL);
    return vms_qemu_opt_set(c, "discard-data", NULL);
  }
  g_autoptr(JsonObject) o = parse_json_object(value);
  json_object_set_string_member(o, "mem-path", mem_path);
  json_object_set_boolean_member(o, "share", placeholder != NULL);
  json_object_remove_member(o, "prealloc");
  json_object_remove_member(o, "discard-data");
  g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), o);
  return json_to_string(node, FALSE);
}

/* The legacy chardev syntax of -qmp, -monitor, -serial, -parallel:
 * "unix:PATH[,opts]" and "file:PATH". */
static char *
rewrite_legacy_chardev(Relaunch *r, const char *value)
{
  const char *prefix = g_str_has_prefix(value, "unix:") ? "unix:"
                     : g_str_has_prefix(value, "file:") ? "file:" : NULL;

  if (prefix == NULL)
    return g_strdup(value);
  g_autoptr(GPtrArray) elems = opts_split(value + strlen(prefix));
  char *old = elems->pdata[0];
  elems->pdata[0] = g_strdup(vms_relocator_path(r->rel, old));
  g_free(old);
  g_autofree char *rest = opts_join(elems);
  return g_strconcat(prefix, rest, NULL);
}

static gboolean
is_our_plugin(const char *value)
{
  g_autofree char *file = vms_qemu_opt_get(value, "file", "file");
  return file != NULL && g_str_has_suffix(file, PLUGIN_NAME);
}

static char *
rewrite_plugin(Relaunch *r, const char *value)
{
  g_autofree char *out = vms_relocate_plugin_sockets(r->rel, value);
  g_autofree char *mem = vms_qemu_opt_get(out, "mem", NULL);
  g_autofree char *with_mem = mem != NULL ? vms_qemu_opt_set(out, "mem", r->mem_file) : g_strdup(out);
  g_autofree char *with_dir = vms_qemu_opt_set(with_mem, "restore", r->snap_dir);
  g_autofree char *with_overlay = vms_qemu_opt_set(
      with_dir, "overlay", r->opts->overlay_placeholder != NULL ? r->mem_file : NULL);
  g_autofree char *with_restore = vms_qemu_opt_set(with_overlay, "resume",
                                                   r->opts->paused ? "off" : NULL);
  if (r->opts->plugin_path == NULL)
    return g_steal_pointer(&with_restore);
  g_autoptr(GPtrArray) elems = opts_split(with_restore);
  char *first = elems->pdata[0];
  elems->pdata[0] = strchr(first, '=') == NULL ? g_strdup(r->opts->plugin_path)
                                               : g_strdup_printf("file=%s", r->opts->plugin_path);
  g_free(first);
  return opts_join(elems);
}

/* Options we drop, with whether they take a value. -S and -incoming are
 * added back by us; the rest would clash with the original VM. */
static gboolean
drop_option(const char *opt, gboolean *ret_has_value)
{
  static const char *const with_value[] = { "-incoming", "-pidfile", "-loadvm" };
  static const char *const flags[] = { "-S", "-daemonize" };

  for (gsize i = 0; i < G_N_ELEMENTS(with_value); i++)
    if (g_str_equal(opt, with_value[i]))
      return (*ret_has_value = TRUE);
  for (gsize i = 0; i < G_N_ELEMENTS(flags); i++)
    if (g_str_equal(opt, flags[i])) {
      *ret_has_value = FALSE;
      return TRUE;
    }
  return FALSE;
}

/* The new value of option @opt at argv index @index, or NULL to keep it. */
static char *
rewrite_value(Relaunch *r, const char *opt, const char *value, guint index)
{
  if ((gint)index == r->ram_index)
    return rewrite_ram_object(r, value);
  if (g_str_equal(opt, "-chardev"))
    return vms_relocate_chardev(r->rel, value);
  if (g_str_equal(opt, "-qmp") || g_str_equal(opt, "-qmp-pretty") || g_str_equal(opt, "-monitor") ||
      g_str_equal(opt, "-serial") || g_str_equal(opt, "-parallel"))
    return rewrite_legacy_chardev(r, value);
  if (g_str_equal(opt, "-plugin") && is_our_plugin(value)) {
    r->have_plugin = TRUE;
    return rewrite_plugin(r, value);
  }
  return NULL;
}

static void
relaunch_clear(Relaunch *r)
{
  g_clear_pointer(&r->snap_dir, g_free);
  g_clear_pointer(&r->mem_file, g_free);
  g_clear_pointer(&r->rel, vms_relocator_free);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Relaunch, relaunch_clear)

char **
vms_relaunch_argv(const char *const *argv, const VmsRelaunchOptions *opts, GError **error)
{
  g_auto(Relaunch) r = { .opts = opts };
  g_auto(MemBackend) ram = { .index = -1 };
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);

  g_return_val_if_fail(argv != NULL && opts != NULL && opts->snapshot_dir != NULL, NULL);
  g_return_val_if_fail(opts->runtime_dir != NULL, NULL);
  if (argv[0] == NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "qemu_argv: the recorded command line is empty");
    return NULL;
  }
  if (!find_backend(argv, &ram, error))
    return NULL;
  r.ram_index = ram.index;
  r.snap_dir = g_canonicalize_filename(opts->snapshot_dir, NULL);
  r.mem_file = opts->memory_path != NULL ? g_canonicalize_filename(opts->memory_path, NULL)
                                          : g_build_filename(r.snap_dir, VMS_MEMORY_FILE, NULL);
  r.rel = vms_relocator_new(opts->runtime_dir);

  g_ptr_array_add(out, g_strdup(argv[0]));
  for (guint i = 1; argv[i] != NULL; i++) {
    const char *opt = option_name(argv[i]);
    gboolean has_value = FALSE;
    if (drop_option(opt, &has_value)) {
      i += has_value && argv[i + 1] != NULL;
      continue;
    }
    g_ptr_array_add(out, g_strdup(argv[i]));
    if (opt[0] != '-' || argv[i + 1] == NULL)
      continue;
    char *value = rewrite_value(&r, opt, argv[i + 1], i + 1);
    if (value != NULL) {
      g_ptr_array_add(out, value);
      i++;
    }
  }
  if (!r.have_plugin) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "-plugin: the recorded command line does not load %s", PLUGIN_NAME);
    return NULL;
  }
  if (!vms_relaunch_disks(out, opts, error))
    return NULL;
  g_ptr_array_add(out, g_strdup("-S"));
  g_ptr_array_add(out, g_strdup("-incoming"));
  g_ptr_array_add(out, g_strdup("defer"));
  for (guint i = 0; opts->extra_args != NULL && opts->extra_args[i] != NULL; i++)
    g_ptr_array_add(out, g_strdup(opts->extra_args[i]));
  g_ptr_array_add(out, NULL);
  return (char **)g_ptr_array_free(g_steal_pointer(&out), FALSE);
}
