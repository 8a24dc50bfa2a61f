/* vmsnap registry: the disk table of a snapshot artifact (doc/format.md
 * "Registry artifacts", "Disks") — which image files of each disk the
 * artifact carries, and where a diff's disk chain joins its parent's.
 *
 * One entry per DiskRecord of manifest.bin, in its order. An entry lists
 * the image files the artifact carries, top-down from the frozen image
 * (each with its format, size and the digests of its chunk-digest and
 * chunk-index layers); with `parent_file` K the chain goes on with file K
 * of the parent snapshot's disk of the same device (file 0: its frozen
 * image, K: its backing file K), which the artifact does not carry.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define VMS_REG_MT_DISK_TABLE "application/vnd.vmsnap.disk-table.v1+json"
#define VMS_REG_MT_DISK_DIGESTS "application/vnd.vmsnap.disk-chunk-digests.v1"
#define VMS_REG_MT_DISK_INDEX "application/vnd.vmsnap.disk-chunk-index.v1"
#define VMS_REG_MT_DISK_CHUNK "application/vnd.vmsnap.disk-chunk.v1+zstd"

/* A disk table larger than this is refused. */
#define VMS_REG_DISK_TABLE_MAX (1u << 20)

typedef struct {
  char *format;      /* QEMU driver of the file: [a-z0-9]+ */
  guint64 size;      /* bytes of the file (st_size) */
  char digests[72];  /* the chunk-digest layer: SHA-256 of each chunk, raw, in order */
  char index[72];    /* the chunk-index layer (artifact.h's format) */
} VmsRegDiskFile;

typedef struct {
  char *device;
  GArray *files;     /* VmsRegDiskFile, top-down */
  gint parent_file;  /* -1: the chain ends with files; else the parent's file it joins */
} VmsRegDiskEntry;

typedef struct {
  guint32 chunk_size;
  GArray *disks;     /* VmsRegDiskEntry */
} VmsRegDiskTable;

VmsRegDiskTable *vms_reg_disk_table_new(guint32 chunk_size);
void vms_reg_disk_table_free(VmsRegDiskTable *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsRegDiskTable, vms_reg_disk_table_free)

/* Appends an entry for @device (no files, parent_file -1); returns it. */
VmsRegDiskEntry *vms_reg_disk_table_add(VmsRegDiskTable *t, const char *device);
/* Appends a file to @e (copies the strings). */
void vms_reg_disk_entry_add_file(VmsRegDiskEntry *e, const char *format, guint64 size,
                                 const char *digests, const char *index);

/* The table as JSON. Deterministic: the same table gives the same bytes. */
GBytes *vms_reg_disk_table_to_json(const VmsRegDiskTable *t);
/* Parses and checks a table: chunk size a power of two in chunks.h's range,
 * devices non-empty, formats [a-z0-9]+, valid digests, parent_file >= 0 or
 * absent. Fails with VMS_ERROR_CORRUPT naming @what. */
VmsRegDiskTable *vms_reg_disk_table_from_json(GBytes *json, const char *what, GError **error);

/* Chunks of a file of @size bytes in @chunk_size chunks. */
guint64 vms_reg_disk_chunk_count(guint64 size, guint32 chunk_size);

G_END_DECLS
