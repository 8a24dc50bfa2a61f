/* vmsnap CLI: libvirt domains (doc/libvirt.md).
 *
 * vmsnap drives `virsh` rather than linking libvirt: the tool keeps no
 * dependency on libvirt0 (a management host has virsh anyway), --connect
 * URI is virsh's -c, and virsh's own error messages reach the user. Domain
 * XML is read and edited with libxml2.
 *
 * A vmsnap-enabled domain loads the plugin through <qemu:commandline>
 * (`-plugin .../libvmsnap.so,qmp=...,control=...,libvirt=on`); its RAM is
 * file-backed (<memoryBacking><source type='file'/>).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The name of the file beside manifest.bin that keeps the domain XML. */
#define VMS_LIBVIRT_XML_FILE "libvirt-domain.xml"

/* A writable disk of the clone: the image the saved domain's XML names and
 * the clone's own qcow2 overlay on the snapshot's frozen copy of it. */
typedef struct {
  const char *image;   /* DiskRecord identity path: the <source file> saved */
  const char *overlay; /* absolute */
} VmsLibvirtDisk;

/* What makes a clone's domain XML. */
typedef struct {
  const char *name;         /* the clone's domain name */
  const char *snapshot_dir; /* absolute: the plugin's restore= */
  const char *memory;       /* absolute: the plugin's overlay= (the snapshot's memory, or
                             * for a diff its flattening's) */
  const char *runtime_dir;  /* absolute: the clone's sockets and chardev files go here */
  const VmsLibvirtDisk *disks; /* @n_disks writable disks */
  gsize n_disks;
} VmsCloneSpec;

/* Runs `virsh -q [-c @uri] ARGS...` (NULL-terminated, after @error). On
 * success *@ret_out (nullable) receives its stdout. On failure the error
 * holds virsh's stderr. */
gboolean vms_virsh(const char *uri, char **ret_out, GError **error, ...) G_GNUC_NULL_TERMINATED;

/* The plugin's control= socket in domain XML @xml (the -plugin argument of
 * its <qemu:commandline> that loads libvmsnap.so). Fails naming the domain
 * element that is missing. Caller frees. */
char *vms_libvirt_control_socket(const char *xml, GError **error);

/* The XML of a new domain that runs a clone of the snapshot of @xml's
 * domain (doc/libvirt.md, "What the clone's XML changes"): @spec's name, no
 * uuid, a new <genid/> if the domain had one (*@ret_genid says so), the
 * plugin with restore=, overlay= and libvirt=on, every socket and
 * file of the plugin, -chardev and serial/console/channel devices moved
 * into @spec's runtime dir, and `-incoming defer` (a saved clone's own
 * restore= and -incoming replaced). Refuses a domain whose
 * RAM is not file-backed and shared (libvirt's file becomes the RAM
 * overlay's placeholder) or that loads no plugin. Each writable file disk
 * is pointed at its overlay in @spec (driver qcow2; libvirt reads the
 * backing chain from the overlay); one without an overlay is refused (a
 * clone never shares a writable image). Caller frees. */
char *vms_libvirt_clone_xml(const char *xml, const VmsCloneSpec *spec, gboolean *ret_genid,
                            GError **error);

/* @clone_xml (of vms_libvirt_clone_xml) without its restore: no restore=
 * or overlay= on the plugin, no -incoming; with @uuid, the uuid libvirt gave
 * the running clone (a definition replaces it). The persistent definition of a
 * clone once it runs, so a later `virsh start` boots it from its own disks
 * instead of restoring the snapshot's memory over disks it has written. */
char *vms_libvirt_booting_xml(const char *clone_xml, const char *uuid, GError **error);

/* @xml with every writable file disk pointed at its overlay in @disks (as
 * vms_libvirt_clone_xml does). Caller frees. */
char *vms_libvirt_repoint_disks(const char *xml, const VmsLibvirtDisk *disks, gsize n_disks,
                                GError **error);

/* After `vmsnap save --libvirt` of @domain froze its disks and QEMU runs
 * on (or will run on) new overlays that libvirt does not know of: points
 * the domain's persistent definition at the overlay each disk's device now
 * uses (query-block through libvirt), so its next start writes the overlay,
 * not the frozen image (read-only now, and the snapshot's). */
gboolean vms_libvirt_follow_disks(const char *domain, const char *uri, const char *dir,
                                  GError **error);

/* Writes @xml as @dir/libvirt-domain.xml: a temp file, mode 0600, renamed
 * into place. */
gboolean vms_libvirt_keep_xml(const char *dir, const char *xml, GError **error);

/* `vmsnap restore DIR --libvirt NAME`: see cmd-libvirt.c. Returns the exit
 * status. */
int vms_cli_restore_libvirt(const char *dir, const char *memory, const char *name,
                            const char *uri, const char *runtime_dir, gboolean dry_run);

G_END_DECLS
