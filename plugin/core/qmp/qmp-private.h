/* vmsnap core: helpers shared by qmp.c and qmp-server.c (not installed,
 * not for other modules). */
#pragma once

#include <json-glib/json-glib.h>
#include <sys/un.h>

G_BEGIN_DECLS

/* Parses one JSON text; returns its root node (caller owns) if it is an
 * object, else NULL with VMS_ERROR_INVALID_ARGUMENT and QEMU's wording
 * ("JSON parse error, ...", "QMP input must be a JSON object"). */
JsonNode *vms_qmp_parse_object(const char *text, GError **error);

/* @obj serialised on one line ending in "\r\n", as QEMU writes QMP. Caller frees. */
char *vms_qmp_object_to_line(JsonObject *obj);

/* Fills @sa for the unix socket @path; fails (naming it) if it is too long. */
gboolean vms_qmp_fill_sockaddr(const char *path, struct sockaddr_un *sa, GError **error);

/* @obj's member @name if it is an object (or array), else NULL — without
 * json-glib's criticals for missing or mistyped members. Borrowed. */
JsonObject *vms_json_get_object(JsonObject *obj, const char *name);
JsonArray *vms_json_get_array(JsonObject *obj, const char *name);

/* The text of @text's top-level member @name (the last one if repeated),
 * exactly as sent but for whitespace outside strings, or NULL. @text must
 * be a JSON object that parsed. For the id echo: a number is echoed with
 * every digit the client sent. Caller frees. */
char *vms_json_member_raw(const char *text, const char *name);

G_END_DECLS
