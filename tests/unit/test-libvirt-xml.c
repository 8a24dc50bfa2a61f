/* vmsnap unit tests: libvirt domain XML (plugin/cli/libvirt-xml.c) — the
 * control socket, a clone's XML, its booting definition, the refusals. */
#include <string.h>

#include "libvirt.h"

#define RUN "/run/v"

static const char domain_xml[] =
  "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0' id='3'>\n"
  "  <name>vm0</name>\n"
  "  <uuid>0a82a509-ed45-4177-8a1c-c7306652d159</uuid>\n"
  "  <genid>b31ba556-14c7-429f-8ab8-f1f6a9398e96</genid>\n"
  "  <memory unit='KiB'>65536</memory>\n"
  "  <memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>\n"
  "  <devices>\n"
  "    <disk type='file' device='disk'><driver name='qemu' type='raw'/>\n"
  "      <source file='" RUN "/vm0/disk.img'/><target dev='vda' bus='virtio'/></disk>\n"
  "    <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/>"
  "<readonly/></disk>\n"
  "    <serial type='unix'><source mode='bind' path='" RUN "/vm0/com1.sock'/></serial>\n"
  "    <console type='unix'><source mode='bind' path='" RUN "/vm0/com1.sock'/></console>\n"
  "  </devices>\n"
  "  <qemu:commandline>\n"
  "    <qemu:arg value='-chardev'/>\n"
  "    <qemu:arg value='file,id=log,path=" RUN "/vm0/debugcon.log'/>\n"
  "    <qemu:arg value='-chardev'/>\n"
  "    <qemu:arg value='socket,id=vmsnap-qmp,path=" RUN "/vm0/qmp.sock,server=on,wait=off'/>\n"
  "    <qemu:arg value='-mon'/>\n"
  "    <qemu:arg value='chardev=vmsnap-qmp,mode=control'/>\n"
  "    <qemu:arg value='-plugin'/>\n"
  "    <qemu:arg value='/usr/lib/qemu/libvmsnap.so,qmp=" RUN "/vm0/qmp.sock,control=" RUN
  "/vm0/control.sock,libvirt=on'/>\n"
  "  </qemu:commandline>\n"
  "</domain>\n";

static const VmsLibvirtDisk disks[] = {
  { .image = RUN "/vm0/disk.img", .overlay = RUN "/c1/disk-vda.qcow2" },
};

static const VmsCloneSpec spec = {
  .name = "c1", .snapshot_dir = "/snap/a", .memory = "/snap/a/memory.bin",
  .runtime_dir = RUN "/c1", .disks = disks, .n_disks = G_N_ELEMENTS(disks),
};

static guint
count(const char *haystack, const char *needle)
{
  guint n = 0;
  for (const char *p = strstr(haystack, needle); p != NULL; p = strstr(p + 1, needle))
    n++;
  return n;
}

static char *
replace(const char *text, const char *from, const char *to)
{
  g_auto(GStrv) parts = g_strsplit(text, from, -1);
  return g_strjoinv(to, parts);
}

static void
test_control_socket(void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *control = vms_libvirt_control_socket(domain_xml, &error);
  g_autofree char *no_plugin = replace(domain_xml, "libvmsnap.so", "other.so");

  g_assert_no_error(error);
  g_assert_cmpstr(control, ==, RUN "/vm0/control.sock");
  g_assert_null(vms_libvirt_control_socket(no_plugin, &error));
  g_assert_nonnull(strstr(error->message, "-plugin"));
  g_clear_error(&error);
  g_assert_null(vms_libvirt_control_socket("<notadomain/>", &error));
  g_assert_nonnull(strstr(error->message, "domain XML"));
}

static void
test_clone(void)
{
  g_autoptr(GError) error = NULL;
  gboolean genid = FALSE;
  g_autofree char *xml = vms_libvirt_clone_xml(domain_xml, &spec, &genid, &error);

  g_assert_no_error(error);
  g_assert_true(genid);
  g_assert_nonnull(strstr(xml, "<name>c1</name>"));
  g_assert_null(strstr(xml, "<uuid>"));
  g_assert_null(strstr(xml, "id=\"3\""));
  g_assert_nonnull(strstr(xml, "<genid/>"));
  g_assert_nonnull(strstr(xml, "qmp=" RUN "/c1/qmp.sock,control=" RUN "/c1/control.sock,"
                               "libvirt=on,restore=/snap/a,overlay=/snap/a/memory.bin"));
  g_assert_nonnull(strstr(xml, "path=" RUN "/c1/qmp.sock,server=on"));
  g_assert_nonnull(strstr(xml, "path=" RUN "/c1/debugcon.log"));
  /* The serial device and its console stay one socket. */
  g_assert_cmpuint(count(xml, RUN "/c1/com1.sock"), ==, 2);
  g_assert_null(strstr(xml, RUN "/vm0/"));
  g_assert_cmpuint(count(xml, "\"-incoming\""), ==, 1);
  g_assert_nonnull(strstr(xml, "<qemu:arg value=\"-incoming\"/><qemu:arg value=\"defer\"/>"));
  g_assert_nonnull(strstr(xml, RUN "/c1/disk-vda.qcow2"));
  g_assert_nonnull(strstr(xml, "type=\"qcow2\""));
  g_assert_nonnull(strstr(xml, "/iso/x.iso")); /* read-only: as saved */
  g_assert_nonnull(strstr(xml, "<access mode=\"shared\"/>"));
}

/* A saved clone's XML cloned again: one -incoming, the new restore=. */
static void
test_clone_of_clone(void)
{
  g_autoptr(GError) error = NULL;
  gboolean genid = FALSE;
  g_autofree char *first = vms_libvirt_clone_xml(domain_xml, &spec, &genid, &error);
  VmsLibvirtDisk d2 = { .image = RUN "/c1/disk-vda.qcow2", .overlay = RUN "/c2/disk-vda.qcow2" };
  VmsCloneSpec spec2 = { .name = "c2", .snapshot_dir = "/snap/b", .memory = "/snap/b/memory.bin",
                         .runtime_dir = RUN "/c2", .disks = &d2, .n_disks = 1 };
  g_autofree char *second = vms_libvirt_clone_xml(first, &spec2, &genid, &error);

  g_assert_no_error(error);
  g_assert_cmpuint(count(second, "\"-incoming\""), ==, 1);
  g_assert_cmpuint(count(second, "restore="), ==, 1);
  g_assert_nonnull(strstr(second, "restore=/snap/b,overlay=/snap/b/memory.bin"));
  g_assert_nonnull(strstr(second, RUN "/c2/disk-vda.qcow2"));
}

static void
test_booting(void)
{
  g_autoptr(GError) error = NULL;
  gboolean genid = FALSE;
  g_autofree char *clone = vms_libvirt_clone_xml(domain_xml, &spec, &genid, &error);
  g_autofree char *boot = vms_libvirt_booting_xml(clone, "11111111-2222-3333-4444-555555555555",
                                                  &error);

  g_assert_no_error(error);
  g_assert_null(strstr(boot, "restore="));
  g_assert_null(strstr(boot, "overlay="));
  g_assert_null(strstr(boot, "-incoming"));
  g_assert_nonnull(strstr(boot, "<uuid>11111111-2222-3333-4444-555555555555</uuid>"));
  g_assert_nonnull(strstr(boot, "control=" RUN "/c1/control.sock"));
  g_assert_nonnull(strstr(boot, RUN "/c1/disk-vda.qcow2"));
}

static void
test_refusals(void)
{
  g_autofree char *private_ram = replace(domain_xml, "mode='shared'", "mode='private'");
  g_autofree char *anon_ram = replace(domain_xml, "<source type='file'/>", "");
  VmsCloneSpec no_disks = spec;
  gboolean genid = FALSE;

  no_disks.n_disks = 0;
  const struct { const char *xml; const VmsCloneSpec *spec; const char *want; } cases[] = {
    { private_ram, &spec, "file-backed and shared" },
    { anon_ram, &spec, "file-backed and shared" },
    { domain_xml, &no_disks, "disk vda" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autoptr(GError) error = NULL;
    g_autofree char *xml = vms_libvirt_clone_xml(cases[i].xml, cases[i].spec, &genid, &error);
    g_assert_null(xml);
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, cases[i].want));
  }
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/libvirt-xml/control-socket", test_control_socket);
  g_test_add_func("/libvirt-xml/clone", test_clone);
  g_test_add_func("/libvirt-xml/clone-of-clone", test_clone_of_clone);
  g_test_add_func("/libvirt-xml/booting", test_booting);
  g_test_add_func("/libvirt-xml/refusals", test_refusals);
  return g_test_run();
}
