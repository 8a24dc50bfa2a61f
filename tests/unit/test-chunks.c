/* Unit tests: chunk digests (plugin/core/format/chunks.h) — the stream of a
 * full file and of a diff's page list, zero chunks, memory.chunks binding
 * and self-checksum, verify naming the chunk and offset, read/write of a
 * chunk for push/pull. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunks.h"
#include "error.h"
#include "extents.h"
#include "helpers.h"
#include "util.h"

#define CS VMS_CHUNK_SIZE_MIN /* 64 KiB chunks keep the files small */

static int
open_file(const char *path, int flags)
{
  int fd = open(path, flags | O_CLOEXEC, 0600);
  g_assert_cmpint(fd, >=, 0);
  return fd;
}

/* A file of @len bytes: a pattern in [pat_start, pat_end), holes elsewhere. */
static void
write_sparse(const char *path, gsize len, gsize pat_start, gsize pat_end)
{
  vms_autofd fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
  g_autofree guint8 *buf = g_malloc(pat_end - pat_start);

  for (gsize i = 0; i < pat_end - pat_start; i++)
    buf[i] = (guint8)(i * 7 + 1);
  g_assert_cmpint(ftruncate(fd, (off_t)len), ==, 0);
  g_assert_cmpint(vms_pwrite_full(fd, buf, pat_end - pat_start, pat_start), ==, 0);
}

static void
flip_byte(const char *path, guint64 offset)
{
  vms_autofd fd = open_file(path, O_RDWR);
  guint8 b;

  g_assert_cmpint(vms_pread_full(fd, &b, 1, offset), ==, 1);
  b ^= 0x10;
  g_assert_cmpint(vms_pwrite_full(fd, &b, 1, offset), ==, 0);
}

/* A full file: chunk digests are SHA-256 of each chunk; a hole chunk and a
 * written-but-zero chunk are both zero chunks; the last chunk is short. */
static void
test_full_digests(void)
{
  g_autofree char *tmp = vms_test_tmpdir(NULL);
  g_autofree char *path = g_build_filename(tmp, "memory.bin", NULL);
  gsize len = 5 * CS + 4096;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsChunkIndex) idx = NULL;
  g_autofree guint8 *buf = g_malloc(CS);
  guint8 want[32];

  write_sparse(path, len, CS + 100, 2 * CS + 5);
  {
    vms_autofd fd = open_file(path, O_RDWR);
    g_autofree guint8 *zeros = g_malloc0(CS);
    g_assert_cmpint(vms_pwrite_full(fd, zeros, CS, 3 * CS), ==, 0); /* data, all zero */
  }
  vms_autofd fd = open_file(path, O_RDONLY);
  g_autoptr(VmsChunkSource) src = vms_chunk_source_new(fd, NULL, len, &error);
  g_assert_no_error(error);
  g_assert_true(vms_chunks_compute(src, CS, &idx, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(idx->count, ==, 6);
  g_assert_cmpuint(vms_chunk_index_length(idx, 5), ==, 4096);
  g_assert_true(vms_chunk_index_is_zero(idx, 0));
  g_assert_false(vms_chunk_index_is_zero(idx, 1));
  g_assert_false(vms_chunk_index_is_zero(idx, 2));
  g_assert_true(vms_chunk_index_is_zero(idx, 3));
  g_assert_true(vms_chunk_index_is_zero(idx, 5));
  for (guint64 i = 0; i < idx->count; i++) {
    g_assert_true(vms_chunk_read(src, idx, i, buf, &error));
    vms_chunk_digest(buf, vms_chunk_index_length(idx, i), want);
    g_assert_cmpmem(want, 32, idx->digests[i], 32);
  }
  g_assert_true(vms_chunks_verify_range(src, idx, path, 0, G_MAXUINT64, &error));
  g_assert_no_error(error);
  flip_byte(path, 2 * CS + 1);
  g_assert_false(vms_chunks_verify_range(src, idx, path, 0, G_MAXUINT64, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_assert_nonnull(strstr(error->message, "chunk 2 (bytes 131072-196607)"));
  g_assert_nonnull(strstr(error->message, path));
  g_clear_error(&error);
  /* The range check covers only what it is asked to. */
  g_assert_true(vms_chunks_verify_range(src, idx, path, 3, 3, &error));
  g_assert_no_error(error);
  vms_test_rmtree(tmp);
}

/* A diff's stream is its pages in map order: chunk boundaries fall inside
 * extents, a flipped byte is named by stream bytes and file offset, and a
 * chunk written back lands at the pages' offsets. */
static void
test_diff_stream(void)
{
  g_autofree char *tmp = vms_test_tmpdir(NULL);
  g_autofree char *path = g_build_filename(tmp, "memory.diff", NULL);
  g_autofree char *copy = g_build_filename(tmp, "copy.diff", NULL);
  g_autoptr(GArray) list = vms_extents_new();
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsChunkIndex) idx = NULL;
  gsize len = 64 * CS;

  write_sparse(path, len, 0, len);
  vms_extents_append(list, 3 * CS + 4096, CS / 2);    /* stream [0, 32K) */
  vms_extents_append(list, 10 * CS, CS);              /* stream [32K, 96K) */
  vms_extents_append(list, 40 * CS, 8192);            /* stream [96K, 104K) */
  vms_autofd fd = open_file(path, O_RDONLY);
  g_autoptr(VmsChunkSource) src = vms_chunk_source_new(fd, list, len, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(vms_chunk_source_size(src), ==, CS / 2 + CS + 8192);
  g_assert_true(vms_chunks_compute(src, CS, &idx, &error));
  g_assert_cmpuint(idx->count, ==, 2);

  /* Chunk 1 starts at stream 64K = file offset 10*CS + 32K. */
  g_autofree guint8 *buf = g_malloc(CS);
  g_autofree guint8 *want = g_malloc(CS);
  g_assert_true(vms_chunk_read(src, idx, 1, buf, &error));
  g_assert_cmpint(vms_pread_full(fd, want, CS / 2, 10 * CS + CS / 2), ==, CS / 2);
  g_assert_cmpint(vms_pread_full(fd, want + CS / 2, 8192, 40 * CS), ==, 8192);
  g_assert_cmpmem(buf, CS / 2 + 8192, want, CS / 2 + 8192);

  /* Pull: write both chunks into an empty sparse file, same layout. */
  vms_autofd out = open_file(copy, O_RDWR | O_CREAT | O_TRUNC);
  g_assert_cmpint(ftruncate(out, (off_t)len), ==, 0);
  for (guint64 i = 0; i < idx->count; i++) {
    g_assert_true(vms_chunk_read(src, idx, i, buf, &error));
    g_assert_true(vms_chunk_write(src, idx, i, out, buf, &error));
  }
  g_autoptr(VmsChunkSource) src2 = vms_chunk_source_new(out, list, len, &error);
  g_assert_true(vms_chunks_verify_range(src2, idx, copy, 0, G_MAXUINT64, &error));
  g_assert_no_error(error);

  flip_byte(path, 10 * CS + CS / 2 + 3);
  g_assert_false(vms_chunks_verify_range(src, idx, path, 0, G_MAXUINT64, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_assert_nonnull(strstr(error->message, "chunk 1 (diff data bytes 65536-106495, starting "
                                          "at file offset 688128)"));
  g_clear_error(&error);
  /* An extent past the file is refused when the source is built. */
  vms_extents_append(list, len, 4096);
  g_assert_null(vms_chunk_source_new(fd, list, len, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  vms_test_rmtree(tmp);
}

/* memory.chunks round-trips; a missing file is VMS_ERROR_NO_DIGESTS; a file
 * bound to another manifest, of another data size, or with any single bit
 * flipped is refused. */
static void
test_chunks_file(void)
{
  g_autofree char *tmp = vms_test_tmpdir(NULL);
  g_autofree char *file = g_build_filename(tmp, VMS_CHUNKS_FILE, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsChunkIndex) idx = vms_chunk_index_new(CS, 3 * CS + 17);
  g_autoptr(VmsChunkIndex) back = NULL;
  guint8 msha[32], other[32];
  struct stat st;
  vms_autofd dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  memset(msha, 0xab, 32);
  memset(other, 0xcd, 32);
  for (guint64 i = 0; i < idx->count; i++)
    memset(idx->digests[i], (int)i + 1, 32);
  g_assert_false(vms_chunks_read_at(dirfd, msha, 3 * CS + 17, &back, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_NO_DIGESTS);
  g_clear_error(&error);
  mode_t old = umask(0);
  g_assert_true(vms_chunks_write_at(dirfd, idx, msha, &error));
  umask(old);
  g_assert_no_error(error);
  g_assert_cmpint(stat(file, &st), ==, 0);
  g_assert_cmpint(st.st_mode & 0777, ==, 0600);
  g_assert_cmpint(st.st_size, ==, 64 + 4 * 32 + 32);
  g_assert_true(vms_chunks_read_at(dirfd, msha, 3 * CS + 17, &back, &error));
  g_assert_no_error(error);
  g_assert_cmpmem(back->digests, 4 * 32, idx->digests, 4 * 32);
  g_assert_false(vms_chunk_index_is_zero(back, 3));
  g_clear_pointer(&back, vms_chunk_index_free);

  g_assert_false(vms_chunks_read_at(dirfd, other, 3 * CS + 17, &back, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_assert_nonnull(strstr(error->message, "another manifest.bin"));
  g_clear_error(&error);
  g_assert_false(vms_chunks_read_at(dirfd, msha, 3 * CS, &back, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_clear_error(&error);

  g_autoptr(GBytes) orig = vms_test_read_bytes(file);
  gsize len = 0;
  const guint8 *data = g_bytes_get_data(orig, &len);
  g_autofree guint8 *mut = g_memdup2(data, len);
  for (gsize bit = 0; bit < len * 8; bit++) {
    mut[bit / 8] ^= (guint8)(1u << (bit % 8));
    {
      vms_autofd wfd = open_file(file, O_WRONLY);
      g_assert_cmpint(vms_pwrite_full(wfd, mut, len, 0), ==, 0);
    }
    g_assert_false(vms_chunks_read_at(dirfd, msha, 3 * CS + 17, &back, &error));
    g_assert_nonnull(error);
    g_clear_error(&error);
    mut[bit / 8] ^= (guint8)(1u << (bit % 8));
  }
  vms_test_rmtree(tmp);
}

/* A committed snapshot: write, verify, a flipped byte names memory.bin. */
static void
test_snapshot_chunks(void)
{
  g_autofree char *tmp = vms_test_tmpdir(NULL);
  g_autofree char *dir = g_build_filename(tmp, "snap", NULL);
  g_autofree char *mem = g_build_filename(tmp, "ram", NULL);
  g_autofree char *membin = g_build_filename(dir, "memory.bin", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsManifest) m = vms_test_make_full_snapshot(dir, mem, 3 * VMS_CHUNK_SIZE, 100);
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(dir, &error);

  g_assert_no_error(error);
  g_autofree char *chunks = g_build_filename(dir, VMS_CHUNKS_FILE, NULL);
  g_assert_cmpint(unlink(chunks), ==, 0); /* the helper wrote them, as a save does */
  g_assert_false(vms_snapshot_verify_chunks(s, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_NO_DIGESTS);
  g_assert_nonnull(strstr(error->message, "no memory digests"));
  g_clear_error(&error);
  g_assert_true(vms_snapshot_write_chunks(s, &error));
  g_assert_no_error(error);
  g_assert_true(vms_snapshot_verify_chunks(s, &error));
  g_assert_no_error(error);
  flip_byte(membin, 2 * VMS_CHUNK_SIZE + 5);
  g_assert_false(vms_snapshot_verify_chunks(s, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_assert_nonnull(strstr(error->message, "memory.bin is corrupt: chunk 2 (bytes 2097152-"));
  vms_test_rmtree(tmp);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/chunks/full-digests", test_full_digests);
  g_test_add_func("/chunks/diff-stream", test_diff_stream);
  g_test_add_func("/chunks/file", test_chunks_file);
  g_test_add_func("/chunks/snapshot", test_snapshot_chunks);
  return g_test_run();
}
