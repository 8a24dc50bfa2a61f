/* vmsnap core: parsing JSON that a peer or a file supplies, bounded before
 * json-glib sees it (json-glib recurses once per nesting level, so deep
 * nesting would exhaust the stack). Any thread. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define VMS_JSON_MAX_DEPTH 1024 /* nesting of arrays and objects, as QEMU */

/* Checks that @text (@len bytes) nests arrays and objects at most
 * @max_depth deep, without parsing it: json-glib recurses once per level,
 * so text from a peer or a file must pass this first. FALSE with
 * VMS_ERROR_INVALID_ARGUMENT. */
gboolean vms_json_check_depth(const char *text, gsize len, guint max_depth, GError **error);

/* Parses @text (nullable-terminated, NUL-free) as one JSON value after
 * vms_json_check_depth(VMS_JSON_MAX_DEPTH): for JSON of peers and files
 * (relaunch's recorded -object values). Caller owns the root. */
JsonNode *vms_json_parse_bounded(const char *text, GError **error);

G_END_DECLS
