/* vmsnap plugin: snapshot-save's memory and then values (save-modes.h). */
#include "save-modes.h"

const char *const vms_save_memory_names[] = { "link", "copy", "diff", NULL };
const char *const vms_save_then_names[] = { "pause", "resume", "quit", NULL };

static gboolean
find_name(const char *const *names, const char *s, guint *ret)
{
  for (guint i = 0; names[i] != NULL; i++)
    if (g_strcmp0(s, names[i]) == 0)
      return *ret = i, TRUE;
  return FALSE;
}

gboolean
vms_save_memory_from_string(const char *s, VmsSaveMemory *ret)
{
  guint i;

  return find_name(vms_save_memory_names, s, &i) && (*ret = (VmsSaveMemory)i, TRUE);
}

gboolean
vms_save_then_from_string(const char *s, VmsSaveThen *ret)
{
  guint i;

  return find_name(vms_save_then_names, s, &i) && (*ret = (VmsSaveThen)i, TRUE);
}

char *
vms_save_memory_choices(void)
{
  return g_strjoinv("|", (char **)vms_save_memory_names);
}

char *
vms_save_then_choices(void)
{
  return g_strjoinv("|", (char **)vms_save_then_names);
}
