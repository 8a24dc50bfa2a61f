/* vmsnap plugin: the one table of snapshot-save's `memory` and `then`
 * values. Argument checks (commands.c), the monitor's help, parsing and
 * completion (monitor-text.c) and save.c all read it, so a name is spelled
 * once. Pure data, no includes of the service. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  VMS_SAVE_MEMORY_LINK,
  VMS_SAVE_MEMORY_COPY,
  VMS_SAVE_MEMORY_DIFF,
} VmsSaveMemory;

typedef enum {
  VMS_SAVE_THEN_PAUSE,
  VMS_SAVE_THEN_RESUME,
  VMS_SAVE_THEN_QUIT,
} VmsSaveThen;

/* NULL-terminated; index i names enum value i; the first is the default. */
extern const char *const vms_save_memory_names[];
extern const char *const vms_save_then_names[];

/* Parses an argument value; FALSE if it is none of the names. */
gboolean vms_save_memory_from_string(const char *s, VmsSaveMemory *ret);
gboolean vms_save_then_from_string(const char *s, VmsSaveThen *ret);

/* "link|copy|diff" / "pause|resume|quit". Caller frees. */
char *vms_save_memory_choices(void);
char *vms_save_then_choices(void);

G_END_DECLS
