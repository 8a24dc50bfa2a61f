/* vmsnap push/pull against the forkd way (doc/performance.md "Push and
 * pull"): a 1 GiB snapshot (a quarter real data — bytes of this system's
 * binaries and libraries, in 16 MiB runs — zeros elsewhere) and a 1%-dirty
 * diff of it, to one local docker-registry, side by side in one run with
 *   tar --sparse -c | zstd -T0, then a monolithic upload of the result
 *   (POST + PUT ?digest=), and GET + zstd -d | tar -x for the pull;
 *   skopeo copy of that tar.zst as a one-layer OCI image, where skopeo is
 *   installed.
 * Each repetition starts a fresh registry, so every first push is cold.
 * Medians of --reps runs; the output is Markdown. */
#include "bench-stats.h"
#include "registry-fixture.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "snapdir.h"
#include "util.h"

#define MIB (1024u * 1024u)
#define MAX_REPS 9

enum { PUSH_FULL, PULL_FULL, PUSH_DIFF, PULL_DIFF, PUSH_AGAIN, N_OPS };
static const char *const op_names[N_OPS] = { "push 1 GiB full", "pull 1 GiB full",
                                             "push 1% diff", "pull 1% diff (beside its parent)",
                                             "push the full snapshot again" };

typedef struct {
  double vms_s[MAX_REPS], tar_s[MAX_REPS], skopeo_s[MAX_REPS];
  guint64 vms_bytes, tar_bytes, skopeo_bytes;
  double vms_reg_cpu, tar_reg_cpu; /* the registry's CPU seconds in the last run */
  double vms_cpu[MAX_REPS], tar_cpu[MAX_REPS]; /* client + registry CPU seconds */
} Op;

static guint8 *pool;
static gsize pool_len;

static void
check(gboolean ok, const char *what)
{
  if (!ok) {
    g_printerr("bench-registry: %s failed\n", what);
    exit(1);
  }
}

/* Real data: the system's libraries and programs, concatenated. */
static void
load_pool(gsize want)
{
  const char *dirs[] = { "/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/lib", "/usr/share" };

  pool = g_malloc(want);
  for (gsize d = 0; d < G_N_ELEMENTS(dirs) && pool_len < want; d++) {
    g_autoptr(GDir) dir = g_dir_open(dirs[d], 0, NULL);
    for (const char *n; dir != NULL && pool_len < want && (n = g_dir_read_name(dir)) != NULL;) {
      g_autofree char *path = g_build_filename(dirs[d], n, NULL);
      vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      struct stat st;
      if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 65536)
        continue;
      gssize r = vms_pread_full(fd, pool + pool_len, MIN((gsize)st.st_size, want - pool_len), 0);
      if (r > 0)
        pool_len += (gsize)r;
    }
  }
  check(pool_len == want, "reading real data from /usr");
}

static char *
make_base(const char *root, guint mib)
{
  g_autofree char *dir = g_build_filename(root, "base", NULL);
  g_autofree char *mem = g_build_filename(dir, VMS_MEMORY_FILE, NULL);
  vms_autofd fd = -1;
  g_autoptr(VmsManifest) m = NULL;

  check(g_mkdir_with_parents(dir, 0700) == 0, dir);
  fd = open(mem, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  check(fd >= 0 && ftruncate(fd, (off_t)mib * MIB) == 0, mem);
  /* 16 MiB of real data at the start of every 64 MiB. */
  for (guint64 off = 0, k = 0; off < (guint64)mib * MIB; off += 64 * MIB, k++)
    check(vms_pwrite_full(fd, pool + (k * 16 * MIB) % (pool_len - 16 * MIB), 16 * MIB, off) == 0, mem);
  m = vms_test_make_full_snapshot(dir, mem, (guint64)mib * MIB, 256u << 10);
  return g_steal_pointer(&dir);
}

static void
fill_from_pool(guint8 *page, gsize len, guint64 n, gpointer user)
{
  memcpy(page, pool + ((n * 7919 * 4096) % (pool_len - len)), len);
}

static double
now_s(void)
{
  return (double)g_get_monotonic_time() / 1e6;
}

/* Runs vmsnap; its wall time; the bytes it reports after @key into *@ret_bytes. */
static double
run_vmsnap(VmsTestRegistry *reg, const char *const *args, const char *key, guint64 *ret_bytes)
{
  g_autofree char *out = NULL, *err = NULL;
  double t0 = now_s();
  int st = vms_test_registry_cliv(reg, args, &out, &err);
  double t = now_s() - t0;

  if (st != 0) {
    g_printerr("bench-registry: vmsnap %s: %s\n", args[0], err);
    exit(1);
  }
  if (g_getenv("VMSNAP_BENCH_VERBOSE") != NULL) /* with G_MESSAGES_DEBUG=vmsnap: every request */
    g_printerr("vmsnap %s (%.3f s): %s%s", args[0], t, out, err);
  *ret_bytes = vms_test_number_before(out, key);
  return t;
}

static void
sh(const char *cmd)
{
  g_autoptr(GError) error = NULL;
  int status = -1;
  const char *argv[] = { "sh", "-c", cmd, NULL };

  check(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
                     &status, &error) && g_spawn_check_wait_status(status, NULL), cmd);
}

static size_t
read_fd(char *buf, size_t size, size_t n, void *user)
{
  gssize r = read(GPOINTER_TO_INT(user), buf, size * n);

  return r < 0 ? CURL_READFUNC_ABORT : (size_t)r;
}

static size_t
on_header(char *data, size_t size, size_t n, void *user)
{
  char **loc = user;

  if (g_ascii_strncasecmp(data, "Location:", 9) == 0) {
    g_free(*loc);
    *loc = g_strstrip(g_strndup(data + 9, size * n - 9));
  }
  return size * n;
}

static size_t
write_fd(char *buf, size_t size, size_t n, void *user)
{
  return vms_write_full(GPOINTER_TO_INT(user), buf, size * n) == 0 ? size * n : 0;
}

static char *
file_digest(const char *path, guint64 *ret_size)
{
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  g_autofree guint8 *buf = g_malloc(4 * MIB);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  guint8 md[32];
  char hex[65];
  gssize r;

  check(fd >= 0, path);
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  *ret_size = 0;
  while ((r = read(fd, buf, 4 * MIB)) > 0) {
    EVP_DigestUpdate(ctx, buf, (gsize)r);
    *ret_size += (guint64)r;
  }
  EVP_DigestFinal_ex(ctx, md, NULL);
  EVP_MD_CTX_free(ctx);
  vms_sha256_hex(md, hex);
  return g_strconcat("sha256:", hex, NULL);
}

/* The forkd way's upload: one blob, POST then a monolithic PUT. */
static void
mono_upload(const char *host, const char *repo, const char *path, const char *digest, guint64 size)
{
  CURL *e = curl_easy_init();
  g_autofree char *loc = NULL;
  g_autofree char *post = g_strdup_printf("http://%s/v2/%s/blobs/uploads/", host, repo);
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  long code = 0;
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/octet-stream");

  curl_easy_setopt(e, CURLOPT_URL, post);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &loc);
  check(curl_easy_perform(e) == CURLE_OK && loc != NULL, "POST of the upload");
  g_autofree char *put = g_strdup_printf("%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", digest);
  curl_easy_reset(e);
  curl_easy_setopt(e, CURLOPT_URL, put);
  curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
  curl_easy_setopt(e, CURLOPT_READFUNCTION, read_fd);
  curl_easy_setopt(e, CURLOPT_READDATA, GINT_TO_POINTER(fd));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  check(curl_easy_perform(e) == CURLE_OK, "PUT of the blob");
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  check(code == 201, "PUT of the blob (status 201)");
  curl_slist_free_all(h);
  curl_easy_cleanup(e);
}

static void
mono_download(const char *host, const char *repo, const char *digest, const char *path)
{
  CURL *e = curl_easy_init();
  g_autofree char *url = g_strdup_printf("http://%s/v2/%s/blobs/%s", host, repo, digest);
  vms_autofd fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  long code = 0;

  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_fd);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, GINT_TO_POINTER(fd));
  check(curl_easy_perform(e) == CURLE_OK, "GET of the blob");
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  check(code == 200, "GET of the blob (status 200)");
  curl_easy_cleanup(e);
}

/* tar --sparse | zstd -T0 of @name in @root, then the upload. Returns the
 * time; the blob's digest and size in *@ret_digest, *@ret_size. */
static double
tar_push(VmsTestRegistry *reg, const char *root, const char *name, const char *work,
         char **ret_digest, guint64 *ret_size)
{
  g_autofree char *out = g_build_filename(work, "snap.tar.zst", NULL);
  g_autofree char *cmd = g_strdup_printf("tar --sparse -cf - -C '%s' '%s' | zstd -T0 -q -c > '%s'",
                                         root, name, out);
  double t0 = now_s();

  sh(cmd);
  *ret_digest = file_digest(out, ret_size);
  mono_upload(reg->host, "tar/snap", out, *ret_digest, *ret_size);
  double t = now_s() - t0;
  unlink(out);
  return t;
}

static double
tar_pull(VmsTestRegistry *reg, const char *digest, const char *work, const char *into)
{
  g_autofree char *blob = g_build_filename(work, "got.tar.zst", NULL);
  g_autofree char *cmd = g_strdup_printf("mkdir -p '%s' && zstd -T0 -q -dc '%s' | tar --sparse -xf - -C '%s'",
                                         into, blob, into);
  double t0 = now_s();

  mono_download(reg->host, "tar/snap", digest, blob);
  sh(cmd);
  double t = now_s() - t0;
  unlink(blob);
  return t;
}

static void
put_json_blob(const char *blobs, const char *json, char ret_digest[72], gsize *ret_len)
{
  guint8 md[32];
  char hex[65];
  unsigned int n = 32;
  g_autoptr(GError) error = NULL;

  EVP_Digest(json, strlen(json), md, &n, EVP_sha256(), NULL);
  vms_sha256_hex(md, hex);
  g_snprintf(ret_digest, 72, "sha256:%s", hex);
  g_autofree char *path = g_build_filename(blobs, hex, NULL);
  check(g_file_set_contents(path, json, -1, &error), path);
  *ret_len = strlen(json);
}

/* skopeo copy of the same tar.zst as a one-layer OCI image, from an OCI
 * layout built here (its time included). */
static double
skopeo_push(VmsTestRegistry *reg, const char *root, const char *name, const char *work,
            const char *tag, guint64 *ret_size)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *oci = g_build_filename(work, "oci", NULL);
  g_autofree char *blobs = g_build_filename(oci, "blobs", "sha256", NULL);
  g_autofree char *layer = g_build_filename(work, "layer.tar.zst", NULL);
  g_autofree char *cmd = g_strdup_printf("tar --sparse -cf - -C '%s' '%s' | zstd -T0 -q -c > '%s'",
                                         root, name, layer);
  char cfg_digest[72], man_digest[72];
  gsize cfg_len, man_len;
  double t0 = now_s();

  check(g_mkdir_with_parents(blobs, 0700) == 0, blobs);
  sh(cmd);
  g_autofree char *ldigest = file_digest(layer, ret_size);
  g_autofree char *lpath = g_build_filename(blobs, ldigest + 7, NULL);
  check(rename(layer, lpath) == 0, lpath);
  put_json_blob(blobs, "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}",
                cfg_digest, &cfg_len);
  g_autofree char *man = g_strdup_printf(
      "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
      "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%" G_GSIZE_FORMAT "},"
      "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"%s\",\"size\":%" G_GUINT64_FORMAT "}]}",
      cfg_digest, cfg_len, ldigest, *ret_size);
  put_json_blob(blobs, man, man_digest, &man_len);
  g_autofree char *index = g_strdup_printf(
      "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
      "\"digest\":\"%s\",\"size\":%" G_GSIZE_FORMAT ",\"annotations\":{\"org.opencontainers.image.ref.name\":\"snap\"}}]}",
      man_digest, man_len);
  g_autofree char *ipath = g_build_filename(oci, "index.json", NULL);
  g_autofree char *lay = g_build_filename(oci, "oci-layout", NULL);
  check(g_file_set_contents(ipath, index, -1, &error), ipath);
  check(g_file_set_contents(lay, "{\"imageLayoutVersion\":\"1.0.0\"}", -1, &error), lay);
  g_autofree char *copy = g_strdup_printf("skopeo --insecure-policy copy -q --dest-tls-verify=false "
                                          "'oci:%s:snap' 'docker://%s/skopeo/snap:%s'", oci, reg->host, tag);
  sh(copy);
  double t = now_s() - t0;
  vms_test_rm_rf(oci);
  return t;
}

static double
skopeo_pull(VmsTestRegistry *reg, const char *work, const char *tag, const char *into)
{
  g_autofree char *oci = g_build_filename(work, "oci-pulled", NULL);
  g_autofree char *copy = g_strdup_printf("skopeo --insecure-policy copy -q --src-tls-verify=false "
                                          "'docker://%s/skopeo/snap:%s' 'oci:%s:snap'", reg->host, tag, oci);
  /* The one layer is the biggest blob; unpack it as tar_pull does. */
  g_autofree char *unpack = g_strdup_printf(
      "mkdir -p '%s' && zstd -T0 -q -dc \"$(ls -S '%s'/blobs/sha256/* | head -1)\" | tar --sparse -xf - -C '%s'",
      into, oci, into);
  double t0 = now_s();

  sh(copy);
  sh(unpack);
  double t = now_s() - t0;
  vms_test_rm_rf(oci);
  return t;
}

typedef struct {
  const char *root;
  gboolean skopeo;
  guint64 diff_data;
  Op ops[N_OPS];
} Bench;

/* CPU seconds of this program's finished children (vmsnap, tar, zstd...). */
static double
children_cpu(void)
{
  struct rusage ru;

  getrusage(RUSAGE_CHILDREN, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* CPU seconds the registry process has used (utime + stime). */
static double
registry_cpu(VmsTestRegistry *reg)
{
  g_autofree char *path = g_strdup_printf("/proc/%s/stat", g_subprocess_get_identifier(reg->proc));
  g_autofree char *text = NULL;
  unsigned long ut = 0, st = 0;

  if (!g_file_get_contents(path, &text, NULL, NULL))
    return 0;
  const char *p = strrchr(text, ')');
  if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return 0;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void
measure_push(Bench *b, VmsTestRegistry *reg, guint r, int op, const char *name, const char *tag,
             const char *work, char **ret_tar_digest)
{
  g_autofree char *dir = g_build_filename(b->root, name, NULL);
  g_autofree char *ref = vms_test_registry_ref(reg, tag);
  const char *const args[] = { "push", "--insecure", dir, ref, NULL };
  Op *o = &b->ops[op];

  double c0 = registry_cpu(reg), k0 = children_cpu();
  o->vms_s[r] = run_vmsnap(reg, args, " bytes sent", &o->vms_bytes);
  double c1 = registry_cpu(reg), k1 = children_cpu();
  o->tar_s[r] = tar_push(reg, b->root, name, work, ret_tar_digest, &o->tar_bytes);
  double c2 = registry_cpu(reg), k2 = children_cpu();
  o->vms_reg_cpu = c1 - c0;
  o->tar_reg_cpu = c2 - c1;
  o->vms_cpu[r] = (k1 - k0) + (c1 - c0);
  o->tar_cpu[r] = (k2 - k1) + (c2 - c1); /* the upload runs in this process: not counted */
  if (b->skopeo)
    o->skopeo_s[r] = skopeo_push(reg, b->root, name, work, strchr(tag, ':') + 1, &o->skopeo_bytes);
}

static void
measure_pull(Bench *b, VmsTestRegistry *reg, guint r, int op, const char *name, const char *tag,
             const char *work, const char *tar_digest)
{
  g_autofree char *ref = vms_test_registry_ref(reg, tag);
  g_autofree char *into = g_build_filename(work, "vmsnap", name, NULL);
  g_autofree char *tar_into = g_build_filename(work, "tar", NULL);
  g_autofree char *sk_into = g_build_filename(work, "skopeo", NULL);
  const char *const args[] = { "pull", "--insecure", ref, into, NULL };
  Op *o = &b->ops[op];

  double c0 = registry_cpu(reg), k0 = children_cpu();
  o->vms_s[r] = run_vmsnap(reg, args, " bytes received", &o->vms_bytes);
  double c1 = registry_cpu(reg), k1 = children_cpu();
  o->tar_s[r] = tar_pull(reg, tar_digest, work, tar_into);
  double c2 = registry_cpu(reg), k2 = children_cpu();
  o->vms_reg_cpu = c1 - c0;
  o->tar_reg_cpu = c2 - c1;
  o->vms_cpu[r] = (k1 - k0) + (c1 - c0);
  o->tar_cpu[r] = (k2 - k1) + (c2 - c1);
  o->tar_bytes = b->ops[op - 1].tar_bytes;
  if (b->skopeo) {
    o->skopeo_s[r] = skopeo_pull(reg, work, strchr(tag, ':') + 1, sk_into);
    o->skopeo_bytes = b->ops[op - 1].skopeo_bytes;
  }
}

static void
run_rep(Bench *b, guint r)
{
  g_autofree char *regdir = g_strdup_printf("%s/reg-%u", b->root, r);
  g_autofree char *work = g_strdup_printf("%s/work-%u", b->root, r);
  g_autofree char *d_base = NULL, *d_diff = NULL, *d_again = NULL;

  check(g_mkdir_with_parents(regdir, 0700) == 0 && g_mkdir_with_parents(work, 0700) == 0, work);
  g_autoptr(VmsTestRegistry) reg = vms_test_registry_start(regdir, NULL, NULL, NULL);
  measure_push(b, reg, r, PUSH_FULL, "base", "vm/snap:base", work, &d_base);
  measure_push(b, reg, r, PUSH_DIFF, "diff", "vm/snap:diff", work, &d_diff);
  measure_pull(b, reg, r, PULL_FULL, "base", "vm/snap:base", work, d_base);
  measure_pull(b, reg, r, PULL_DIFF, "diff", "vm/snap:diff", work, d_diff);
  measure_push(b, reg, r, PUSH_AGAIN, "base", "vm/snap:again", work, &d_again);
  vms_test_registry_stop(reg);
  vms_test_rm_rf(regdir);
  vms_test_rm_rf(work);
  for (int i = 0; i < N_OPS; i++)
    g_printerr("bench-registry: rep %u: %s: vmsnap %.2f s (registry CPU %.2f s), tar+zstd %.2f s "
               "(registry CPU %.2f s)\n", r, op_names[i], b->ops[i].vms_s[r], b->ops[i].vms_reg_cpu,
               b->ops[i].tar_s[r], b->ops[i].tar_reg_cpu);
}

static void
report(const Bench *b, guint reps)
{
  double mib = MIB;

  printf("| operation | vmsnap | tar --sparse \\| zstd -T0 + monolithic upload | vmsnap speed-up |%s"
         " CPU s, vmsnap / tar+zstd (with the registry's) | vmsnap bytes moved | tar+zstd bytes moved |\n",
         b->skopeo ? " skopeo copy |" : "");
  printf("| --- | --- | --- | --- |%s --- | --- | --- |\n", b->skopeo ? " --- |" : "");
  for (int i = 0; i < N_OPS; i++) {
    const Op *o = &b->ops[i];
    double v = bench_median(o->vms_s, reps), t = bench_median(o->tar_s, reps);
    g_autofree char *sk = b->skopeo ? g_strdup_printf(" %.2f s |", bench_median(o->skopeo_s, reps))
                                    : g_strdup("");
    printf("| %s | %.2f s | %.2f s | %.1fx |%s %.2f / %.2f | %.2f MiB | %.2f MiB |\n", op_names[i], v, t,
           t / v, sk, bench_median(o->vms_cpu, reps), bench_median(o->tar_cpu, reps),
           o->vms_bytes / mib, o->tar_bytes / mib);
  }
  double e2e_v = bench_median(b->ops[PUSH_FULL].vms_s, reps) + bench_median(b->ops[PULL_FULL].vms_s, reps);
  double e2e_t = bench_median(b->ops[PUSH_FULL].tar_s, reps) + bench_median(b->ops[PULL_FULL].tar_s, reps);
  printf("\nEnd to end (push + pull of the full snapshot): vmsnap %.2f s, tar+zstd %.2f s: %.1fx "
         "(target >= 2x).\n", e2e_v, e2e_t, e2e_t / e2e_v);
  printf("Diff push moved %.2f MiB for %.2f MiB of diff data: %.2fx (target <= 2x).\n",
         b->ops[PUSH_DIFF].vms_bytes / mib, b->diff_data / mib,
         (double)b->ops[PUSH_DIFF].vms_bytes / (double)b->diff_data);
  printf("Repeated push moved %.1f KiB (target < 1 MiB).\n", b->ops[PUSH_AGAIN].vms_bytes / 1024.0);
}

int
main(int argc, char **argv)
{
  g_autofree char *dir = g_strdup("/dev/shm");
  gint reps = 3, mib = 1024;
  GOptionEntry entries[] = {
    { "reps", 0, 0, G_OPTION_ARG_INT, &reps, "runs (median reported)", "N" },
    { "size-mib", 0, 0, G_OPTION_ARG_INT, &mib, "snapshot size in MiB (default 1024)", "MIB" },
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "where snapshots and the registry go", "DIR" },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- push/pull against tar+zstd and skopeo");
  g_autoptr(GError) error = NULL;
  Bench b = { 0 };

  g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, &argc, &argv, &error) || reps < 1 || reps > MAX_REPS || mib < 128) {
    g_printerr("bench-registry: %s\n", error != NULL ? error->message : "--reps 1..9, --size-mib >= 128");
    return 1;
  }
  vms_harness_init();
  curl_global_init(CURL_GLOBAL_DEFAULT);
  g_autofree char *tmpl = g_build_filename(dir, "vmsnap-bench-registry-XXXXXX", NULL);
  check(g_mkdtemp(tmpl) != NULL, tmpl);
  b.root = tmpl;
  b.skopeo = vms_test_have_program("skopeo");
  load_pool((gsize)mib / 4 * MIB); /* every run of real data is different */
  g_autofree char *base = make_base(tmpl, (guint)mib);
  g_autofree char *diff = g_build_filename(tmpl, "diff", NULL);
  guint pages = (guint)((guint64)mib * MIB / 4096 / 100);
  vms_test_make_diff_pages(diff, base, "../base", pages, 100, fill_from_pool, NULL);
  b.diff_data = (guint64)pages * 4096;
  for (guint r = 0; r < (guint)reps; r++)
    run_rep(&b, r);
  g_autofree char *load = NULL;
  g_file_get_contents("/proc/loadavg", &load, NULL, NULL);
  printf("<!-- bench-registry: %d MiB (a quarter real data), diff %u pages (1%%), %d reps, median;"
         " %u CPUs, load at the end %.14s -->\n", mib, pages, reps, g_get_num_processors(),
         load != NULL ? load : "?");
  report(&b, (guint)reps);
  vms_test_rm_rf(tmpl);
  return 0;
}
