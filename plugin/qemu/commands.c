/* vmsnap plugin: the command table (query-vmsnap, query-commands,
 * snapshot-save, snapshot-cancel, snapshot-info). */
#include "commands.h"

#include <string.h>

#include "error.h"
#include "manifest.h"
#include "save.h"
#include "snapdir.h"

typedef struct {
  const char *name;
  gboolean required;
  const char *const *choices; /* nullable: any string */
} ArgSpec;

typedef void (*CommandFunc)(VmsService *svc, JsonObject *args, VmsReplyFunc reply,
                            gpointer user_data);

typedef struct {
  const char *name;
  CommandFunc run;
  ArgSpec args[4]; /* every argument is a string; ends at name == NULL */
} Command;


static void
reply_object(VmsReplyFunc reply, gpointer user_data, JsonObject *obj)
{
  reply(json_node_init_object(json_node_alloc(), obj), NULL, user_data);
  json_object_unref(obj);
}

static void
cmd_query_vmsnap(VmsService *svc, JsonObject *args, VmsReplyFunc reply, gpointer user_data)
{
  reply_object(reply, user_data, vms_service_query(svc));
}

/* Every key of every reply is kebab-case, as in QEMU (doc/spec.md 11); the
 * manifest's JSON (manifest.c, shared with `vmsnap info --json`) spells
 * the proto's snake_case names. */
static JsonObject *
kebab_keys(JsonObject *obj)
{
  g_autoptr(GList) members = json_object_get_members(obj);
  JsonObject *out = json_object_new();

  for (GList *l = members; l != NULL; l = l->next) {
    JsonNode *v = json_object_dup_member(obj, l->data);
    g_autofree char *key = g_strdelimit(g_strdup(l->data), "_", '-');

    if (JSON_NODE_HOLDS_OBJECT(v)) {
      JsonObject *inner = kebab_keys(json_node_get_object(v));
      json_node_take_object(v, inner);
    }
    json_object_set_member(out, key, v);
  }
  json_object_unref(obj);
  return out;
}

static void
cmd_snapshot_info(VmsService *svc, JsonObject *args, VmsReplyFunc reply, gpointer user_data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) snap = vms_snapshot_open(json_object_get_string_member(args, "dir"),
                                                  &error);

  if (snap == NULL) {
    reply(NULL, error, user_data);
    return;
  }
  reply_object(reply, user_data, kebab_keys(vms_manifest_to_json(snap->manifest)));
}

/* snapshot-cancel: the running save stops at its next step (a migration
 * capturing state is cancelled in QEMU) and commits nothing. */
static void
cmd_snapshot_cancel(VmsService *svc, JsonObject *args, VmsReplyFunc reply, gpointer user_data)
{
  JsonObject *ret = json_object_new();

  json_object_set_boolean_member(ret, "cancelled", vms_service_cancel_save(svc));
  reply_object(reply, user_data, ret);
}

static void cmd_query_commands(VmsService *svc, JsonObject *args, VmsReplyFunc reply,
                               gpointer user_data);

typedef struct {
  VmsService *svc;
  char *dir;
  VmsSaveMemory memory;
  VmsSaveThen then;
  VmsReplyFunc reply;
  gpointer user_data;
} SaveJob;

static void
save_job_free(gpointer p)
{
  SaveJob *job = p;

  g_free(job->dir);
  g_free(job);
}

/* A save sent right after QEMU started waits for the plugin's start-up
 * (QMP connect, memory discovery) instead of failing. */
#define SAVE_WAIT_READY_MS 60000

/* The worker: waits for start-up, checks, runs the save, frees the "saving"
 * slot before answering (so a client that sends the next save right after
 * the reply is not refused), answers, and only then quits QEMU for
 * then=quit. */
static void
save_job_thread(GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  SaveJob *job = task_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) ret = NULL;

  if (vms_service_wait_ready(job->svc, SAVE_WAIT_READY_MS, &error) &&
      vms_save_check(job->svc, job->memory, job->then, &error))
    ret = vms_save_run(job->svc, job->dir, job->memory, job->then, &error);
  vms_service_end_save(job->svc);
  if (ret == NULL) {
    job->reply(NULL, error, job->user_data);
  } else {
    job->reply(json_node_init_object(json_node_alloc(), ret), NULL, job->user_data);
    if (job->then == VMS_SAVE_THEN_QUIT)
      vms_save_quit(job->svc);
  }
  g_task_return_boolean(task, TRUE);
}

static void
cmd_snapshot_save(VmsService *svc, JsonObject *args, VmsReplyFunc reply, gpointer user_data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GTask) task = NULL;
  SaveJob *job;

  if (!vms_service_begin_save(svc)) {
    g_set_error_literal(&error, VMS_ERROR, VMS_ERROR_BUSY,
                        "a snapshot-save is already running; try again when it has finished");
    reply(NULL, error, user_data);
    return;
  }
  job = g_new0(SaveJob, 1);
  job->svc = svc;
  job->dir = g_strdup(json_object_get_string_member(args, "dir"));
  job->reply = reply;
  job->user_data = user_data;
  vms_save_memory_from_string(json_object_get_string_member_with_default(
                                  args, "memory", vms_save_memory_names[0]),
                              &job->memory);
  vms_save_then_from_string(json_object_get_string_member_with_default(
                                args, "then", vms_save_then_names[0]),
                            &job->then);
  task = g_task_new(NULL, NULL, NULL, NULL);
  g_task_set_task_data(task, job, save_job_free);
  g_task_run_in_thread(task, save_job_thread);
}

static const Command commands[] = {
  { "query-vmsnap", cmd_query_vmsnap, { { NULL } } },
  { "snapshot-save", cmd_snapshot_save,
    { { "dir", TRUE, NULL }, { "memory", FALSE, vms_save_memory_names }, { "then", FALSE, vms_save_then_names },
      { NULL } } },
  { "snapshot-info", cmd_snapshot_info, { { "dir", TRUE, NULL }, { NULL } } },
  { "snapshot-cancel", cmd_snapshot_cancel, { { NULL } } },
  { "query-commands", cmd_query_commands, { { NULL } } },
};

/* QEMU's shape: [{"name": ...}], qmp_capabilities included. */
static void
cmd_query_commands(VmsService *svc, JsonObject *args, VmsReplyFunc reply, gpointer user_data)
{
  JsonArray *list = json_array_new();
  JsonNode *ret = json_node_new(JSON_NODE_ARRAY);
  JsonObject *caps = json_object_new();

  json_object_set_string_member(caps, "name", "qmp_capabilities");
  json_array_add_object_element(list, caps);
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "name", commands[i].name);
    json_array_add_object_element(list, o);
  }
  json_node_take_array(ret, list);
  reply(ret, NULL, user_data);
}

static const ArgSpec *
find_arg(const Command *cmd, const char *name)
{
  for (const ArgSpec *a = cmd->args; a->name != NULL; a++)
    if (strcmp(a->name, name) == 0)
      return a;
  return NULL;
}

static gboolean
check_choice(const ArgSpec *spec, const char *value, GError **error)
{
  g_autofree char *list = NULL;

  if (spec->choices == NULL || g_strv_contains(spec->choices, value))
    return TRUE;
  list = g_strjoinv(", ", (char **)spec->choices);
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "Parameter '%s' expects one of %s (got '%s')", spec->name, list, value);
  return FALSE;
}

/* QEMU's rules and wording: unknown, mistyped and missing arguments. */
static gboolean
check_args(const Command *cmd, JsonObject *args, GError **error)
{
  g_autoptr(GList) members = json_object_get_members(args);

  for (GList *l = members; l != NULL; l = l->next) {
    const ArgSpec *spec = find_arg(cmd, l->data);
    JsonNode *value = json_object_get_member(args, l->data);

    if (spec == NULL) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                  "Parameter '%s' is unexpected", (const char *)l->data);
      return FALSE;
    }
    if (json_node_get_value_type(value) != G_TYPE_STRING) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                  "Invalid parameter type for '%s', expected: string", spec->name);
      return FALSE;
    }
    if (!check_choice(spec, json_node_get_string(value), error))
      return FALSE;
  }
  for (const ArgSpec *a = cmd->args; a->name != NULL; a++) {
    if (a->required && !json_object_has_member(args, a->name)) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "Parameter '%s' is missing",
                  a->name);
      return FALSE;
    }
  }
  return TRUE;
}

void
vms_commands_dispatch(const char *command, JsonObject *args, VmsReplyFunc reply,
                      gpointer reply_data, gpointer svc)
{
  g_autoptr(GError) error = NULL;
  gpointer user_data = reply_data;

  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
    if (strcmp(commands[i].name, command) != 0)
      continue;
    if (!check_args(&commands[i], args, &error)) {
      reply(NULL, error, user_data);
      return;
    }
    commands[i].run(svc, args, reply, user_data);
    return;
  }
  g_set_error(&error, VMS_ERROR, VMS_ERROR_COMMAND_NOT_FOUND, "The command %s has not been found",
              command);
  reply(NULL, error, user_data);
}
