/* vmsnap CLI: reading and editing libvirt domain XML (libvirt.h). */
#include "libvirt.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "error.h"
#include "relaunch.h"
#include "relocate.h"
#include "util.h"

#define QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"
#define PLUGIN_NAME "libvmsnap.so"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlDoc, xmlFreeDoc)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlXPathContext, xmlXPathFreeContext)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlXPathObject, xmlXPathFreeObject)

static xmlDoc *
parse_xml(const char *xml, GError **error)
{
  xmlDoc *doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  const xmlError *e = xmlGetLastError();

  if (doc == NULL || xmlDocGetRootElement(doc) == NULL ||
      !xmlStrEqual(xmlDocGetRootElement(doc)->name, BAD_CAST "domain")) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "domain XML: %s",
                doc == NULL && e != NULL && e->message != NULL ? g_strchomp(e->message)
                                                               : "no <domain> element");
    if (doc != NULL)
      xmlFreeDoc(doc);
    return NULL;
  }
  return doc;
}

static xmlXPathContext *
xpath_context(xmlDoc *doc)
{
  xmlXPathContext *ctx = xmlXPathNewContext(doc);
  xmlXPathRegisterNs(ctx, BAD_CAST "qemu", BAD_CAST QEMU_NS);
  return ctx;
}

/* The nodes matching @expr (an empty set when none). */
static xmlXPathObject *
xpath(xmlXPathContext *ctx, const char *expr)
{
  xmlXPathObject *o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
  g_assert(o != NULL); /* our expressions are constant and valid */
  return o;
}

static int
xpath_count(xmlXPathObject *o)
{
  return o->nodesetval != NULL ? o->nodesetval->nodeNr : 0;
}

static char *
prop(xmlNode *node, const char *name)
{
  xmlChar *v = xmlGetProp(node, BAD_CAST name);
  char *copy = g_strdup((const char *)v);
  xmlFree(v);
  return copy;
}

static gboolean
is_our_plugin(const char *value)
{
  g_autofree char *file = vms_qemu_opt_get(value, "file", "file");
  return file != NULL && g_str_has_suffix(file, PLUGIN_NAME);
}

/* The <qemu:arg> node holding the -plugin value that loads libvmsnap.so. */
static xmlNode *
find_plugin_arg(xmlXPathContext *ctx, GError **error)
{
  g_autoptr(xmlXPathObject) args = xpath(ctx, "/domain/qemu:commandline/qemu:arg");
  g_autofree char *prev = NULL;

  for (int i = 0; i < xpath_count(args); i++) {
    xmlNode *n = args->nodesetval->nodeTab[i];
    g_autofree char *value = prop(n, "value");
    if (value != NULL && g_strcmp0(prev, "-plugin") == 0 && is_our_plugin(value))
      return n;
    g_free(prev);
    prev = g_steal_pointer(&value);
  }
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "domain XML: no <qemu:commandline> argument -plugin .../%s (doc/libvirt.md shows "
              "how a domain loads it)", PLUGIN_NAME);
  return NULL;
}

char *
vms_libvirt_control_socket(const char *xml, GError **error)
{
  g_autoptr(xmlDoc) doc = parse_xml(xml, error);
  if (doc == NULL)
    return NULL;
  g_autoptr(xmlXPathContext) ctx = xpath_context(doc);
  xmlNode *arg = find_plugin_arg(ctx, error);
  if (arg == NULL)
    return NULL;
  g_autofree char *value = prop(arg, "value");
  char *control = vms_qemu_opt_get(value, "control", NULL);
  if (control == NULL)
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "domain XML: the plugin has no control=PATH argument (-plugin %s)", value);
  return control;
}

/* ---- the clone ---- */

typedef struct {
  const VmsCloneSpec *spec;
  VmsRelocator *rel; /* sockets and chardev files into the runtime dir */
} Clone;

static char *
clone_plugin_arg(Clone *c, const char *value)
{
  g_autofree char *out = vms_relocate_plugin_sockets(c->rel, value);
  g_autofree char *with_restore = vms_qemu_opt_set(out, "restore", c->spec->snapshot_dir);
  g_autofree char *with_overlay = vms_qemu_opt_set(with_restore, "overlay", c->spec->memory);
  return vms_qemu_opt_set(with_overlay, "libvirt", "on");
}

static char *
clone_chardev_arg(Clone *c, const char *value)
{
  return vms_relocate_chardev(c->rel, value);
}

static void
add_qemu_arg(xmlNode *commandline, const char *value)
{
  xmlNode *arg = xmlNewChild(commandline, commandline->ns, BAD_CAST "arg", NULL);
  xmlNewProp(arg, BAD_CAST "value", BAD_CAST value);
}

static void
remove_nodes(xmlXPathContext *ctx, const char *expr)
{
  g_autoptr(xmlXPathObject) nodes = xpath(ctx, expr);
  for (int i = 0; i < xpath_count(nodes); i++) {
    xmlUnlinkNode(nodes->nodesetval->nodeTab[i]);
    xmlFreeNode(nodes->nodesetval->nodeTab[i]);
  }
}

/* Drops every "-incoming X" pair of the command line and restore=/overlay=
 * of the plugin: what a saved clone's XML carries from its own restore. */
static void
strip_restore(xmlXPathContext *ctx)
{
  g_autoptr(xmlXPathObject) args = xpath(ctx, "/domain/qemu:commandline/qemu:arg");
  g_autofree char *prev = NULL;

  for (int i = 0; i < xpath_count(args); i++) {
    xmlNode *n = args->nodesetval->nodeTab[i];
    g_autofree char *value = prop(n, "value");
    if (value == NULL)
      continue;
    if (g_str_equal(value, "-incoming") && i + 1 < xpath_count(args)) {
      for (int k = i; k <= i + 1; k++) {
        xmlUnlinkNode(args->nodesetval->nodeTab[k]);
        xmlFreeNode(args->nodesetval->nodeTab[k]);
      }
      i++; /* the value, gone with it */
      continue;
    }
    if (g_strcmp0(prev, "-plugin") == 0 && is_our_plugin(value)) {
      g_autofree char *a = vms_qemu_opt_set(value, "restore", NULL);
      g_autofree char *b = vms_qemu_opt_set(a, "overlay", NULL);
      xmlSetProp(n, BAD_CAST "value", BAD_CAST b);
    }
    g_free(prev);
    prev = g_steal_pointer(&value);
  }
}

/* The plugin restores and sockets move; -incoming defer is added. */
static gboolean
clone_commandline(Clone *c, xmlXPathContext *ctx, GError **error)
{
  if (find_plugin_arg(ctx, error) == NULL)
    return FALSE;
  strip_restore(ctx);
  g_autoptr(xmlXPathObject) args = xpath(ctx, "/domain/qemu:commandline/qemu:arg");
  g_autofree char *prev = NULL;

  for (int i = 0; i < xpath_count(args); i++) {
    xmlNode *n = args->nodesetval->nodeTab[i];
    g_autofree char *value = prop(n, "value");
    g_autofree char *next = NULL;
    if (value == NULL)
      continue;
    if (g_strcmp0(prev, "-plugin") == 0 && is_our_plugin(value))
      next = clone_plugin_arg(c, value);
    else if (g_strcmp0(prev, "-chardev") == 0)
      next = clone_chardev_arg(c, value);
    if (next != NULL)
      xmlSetProp(n, BAD_CAST "value", BAD_CAST next);
    g_free(prev);
    prev = g_steal_pointer(&value);
  }
  xmlNode *cmdline = args->nodesetval->nodeTab[0]->parent;
  add_qemu_arg(cmdline, "-incoming");
  add_qemu_arg(cmdline, "defer");
  return TRUE;
}

static char *
dump_xml(xmlDoc *doc)
{
  xmlChar *out = NULL;
  int len = 0;

  xmlDocDumpMemory(doc, &out, &len);
  char *text = g_strndup((const char *)out, (gsize)len);
  xmlFree(out);
  return text;
}

char *
vms_libvirt_booting_xml(const char *clone_xml, const char *uuid, GError **error)
{
  g_autoptr(xmlDoc) doc = parse_xml(clone_xml, error);
  if (doc == NULL)
    return NULL;
  g_autoptr(xmlXPathContext) ctx = xpath_context(doc);
  if (find_plugin_arg(ctx, error) == NULL)
    return NULL;
  strip_restore(ctx);
  remove_nodes(ctx, "/domain/uuid");
  xmlNewTextChild(xmlDocGetRootElement(doc), NULL, BAD_CAST "uuid", BAD_CAST uuid);
  return dump_xml(doc);
}

/* Character devices and their logs with a path on the host. */
static void
clone_device_paths(Clone *c, xmlXPathContext *ctx)
{
  static const char *const exprs[] = {
    "/domain/devices/*[self::serial or self::console or self::channel or self::parallel]"
    "/source[@path]",
    "/domain/devices/*/log[@file]",
  };
  static const char *const attrs[] = { "path", "file" };

  for (gsize e = 0; e < G_N_ELEMENTS(exprs); e++) {
    g_autoptr(xmlXPathObject) nodes = xpath(ctx, exprs[e]);
    for (int i = 0; i < xpath_count(nodes); i++) {
      xmlNode *n = nodes->nodesetval->nodeTab[i];
      g_autofree char *path = prop(n, attrs[e]);
      xmlSetProp(n, BAD_CAST attrs[e], BAD_CAST vms_relocator_path(c->rel, path));
    }
  }
}

/* RAM file-backed and shared: in the clone, libvirt's file (which it names
 * memory_backing_dir/<id>-<name>/pc.ram) is the placeholder the plugin maps
 * the snapshot's memory over (overlay=), and a shared block keeps guest RAM
 * out of the clone's own snapshots' state. */
static gboolean
check_memory(xmlXPathContext *ctx, GError **error)
{
  g_autoptr(xmlXPathObject) backing =
      xpath(ctx, "/domain/memoryBacking[source/@type='file' and access/@mode='shared']");

  if (xpath_count(backing) > 0)
    return TRUE;
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "domain XML: the guest RAM is not file-backed and shared (the domain needs "
              "<memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>)");
  return FALSE;
}

static const VmsLibvirtDisk *
find_disk(const VmsCloneSpec *spec, const char *image)
{
  for (gsize i = 0; image != NULL && i < spec->n_disks; i++)
    if (g_str_equal(spec->disks[i].image, image))
      return &spec->disks[i];
  return NULL;
}

/* Each writable disk onto its overlay; one without an overlay is refused. */
static gboolean
repoint_disks(xmlXPathContext *ctx, const VmsCloneSpec *spec, GError **error)
{
  g_autoptr(xmlXPathObject) disks =
      xpath(ctx, "/domain/devices/disk[not(readonly) and not(shareable) and "
                 "(@device='disk' or not(@device))]");

  for (int i = 0; i < xpath_count(disks); i++) {
    xmlNode *disk = disks->nodesetval->nodeTab[i];
    ctx->node = disk;
    g_autoptr(xmlXPathObject) source = xmlXPathEvalExpression(BAD_CAST "source[@file]", ctx);
    g_autoptr(xmlXPathObject) target = xmlXPathEvalExpression(BAD_CAST "target", ctx);
    g_autoptr(xmlXPathObject) driver = xmlXPathEvalExpression(BAD_CAST "driver", ctx);
    xmlNode *src = xpath_count(source) > 0 ? source->nodesetval->nodeTab[0] : NULL;
    g_autofree char *file = src != NULL ? prop(src, "file") : NULL;
    g_autofree char *dev = xpath_count(target) > 0 ? prop(target->nodesetval->nodeTab[0], "dev")
                                                   : g_strdup("?");
    const VmsLibvirtDisk *d = find_disk(spec, file);
    if (d == NULL) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                  "disk %s: the snapshot holds no frozen image of %s, and a clone never shares "
                  "a writable image with the original", dev, file != NULL ? file : "(no file)");
      return FALSE;
    }
    xmlSetProp(src, BAD_CAST "file", BAD_CAST d->overlay);
    if (xpath_count(driver) > 0)
      xmlSetProp(driver->nodesetval->nodeTab[0], BAD_CAST "type", BAD_CAST "qcow2");
    else
      xmlSetProp(xmlNewChild(disk, NULL, BAD_CAST "driver", NULL), BAD_CAST "type", BAD_CAST "qcow2");
    /* libvirt probes the chain from the overlay (its backing: the frozen image). */
    for (xmlNode *c = disk->children, *next; c != NULL; c = next) {
      next = c->next;
      if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "backingStore")) {
        xmlUnlinkNode(c);
        xmlFreeNode(c);
      }
    }
  }
  ctx->node = NULL;
  return TRUE;
}

/* Name, uuid and id are the new domain's; an empty <genid/> makes libvirt
 * generate a new VM generation ID. */
static void
clone_identity(xmlDoc *doc, xmlXPathContext *ctx, const char *name, gboolean *ret_genid)
{
  g_autoptr(xmlXPathObject) name_node = xpath(ctx, "/domain/name");
  g_autoptr(xmlXPathObject) genid = xpath(ctx, "/domain/genid");
  xmlNode *root = xmlDocGetRootElement(doc);

  if (xpath_count(name_node) > 0)
    xmlNodeSetContent(name_node->nodesetval->nodeTab[0], BAD_CAST name);
  else
    xmlNewTextChild(root, NULL, BAD_CAST "name", BAD_CAST name);
  remove_nodes(ctx, "/domain/uuid");
  xmlUnsetProp(root, BAD_CAST "id");
  *ret_genid = xpath_count(genid) > 0;
  if (*ret_genid)
    xmlNodeSetContent(genid->nodesetval->nodeTab[0], NULL);
}

char *
vms_libvirt_clone_xml(const char *xml, const VmsCloneSpec *spec, gboolean *ret_genid,
                      GError **error)
{
  g_autoptr(xmlDoc) doc = parse_xml(xml, error);
  if (doc == NULL)
    return NULL;
  g_autoptr(xmlXPathContext) ctx = xpath_context(doc);
  g_autoptr(VmsRelocator) rel = vms_relocator_new(spec->runtime_dir);
  Clone c = { .spec = spec, .rel = rel };
  gboolean genid = FALSE;

  if (!check_memory(ctx, error) || !repoint_disks(ctx, spec, error) ||
      !clone_commandline(&c, ctx, error))
    return NULL;
  clone_device_paths(&c, ctx);
  clone_identity(doc, ctx, spec->name, &genid);
  *ret_genid = genid;
  return dump_xml(doc);
}

gboolean
vms_libvirt_keep_xml(const char *dir, const char *xml, GError **error)
{
  g_autofree char *path = g_build_filename(dir, VMS_LIBVIRT_XML_FILE, NULL);
  g_autofree char *tmp = g_strconcat(path, ".tmp", NULL);
  vms_autofd fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  int r;

  if (fd < 0)
    return vms_set_error_errno(error, errno, "failed to create %s", tmp);
  if ((r = vms_write_full(fd, xml, strlen(xml))) < 0 || fsync(fd) < 0) {
    int err = r < 0 ? -r : errno;
    (void)unlink(tmp);
    return vms_set_error_errno(error, err, "failed to write %s", tmp);
  }
  if (rename(tmp, path) < 0) {
    int err = errno;
    (void)unlink(tmp);
    return vms_set_error_errno(error, err, "failed to rename %s to %s", tmp, path);
  }
  return TRUE;
}

char *
vms_libvirt_repoint_disks(const char *xml, const VmsLibvirtDisk *disks, gsize n_disks,
                          GError **error)
{
  g_autoptr(xmlDoc) doc = parse_xml(xml, error);
  if (doc == NULL)
    return NULL;
  g_autoptr(xmlXPathContext) ctx = xpath_context(doc);
  VmsCloneSpec spec = { .disks = disks, .n_disks = n_disks };
  if (!repoint_disks(ctx, &spec, error))
    return NULL;
  return dump_xml(doc);
}
