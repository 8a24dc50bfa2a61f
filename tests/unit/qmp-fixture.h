/* vmsnap unit tests: a socket front end (the QMP server, or the monitor
 * console) serving on its own thread with a scripted dispatch, and a raw
 * blocking client. Shared by test-qmp, test-qmp-hostile and test-monitor. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "qmp.h"

G_BEGIN_DECLS

typedef struct {
  char *dir;
  char *path;            /* the socket */
  GMainContext *ctx;
  GMainLoop *loop;
  GThread *thread;
  VmsQmpServer *server;  /* fixture_setup's; NULL when a test serves another front end */
  gpointer front;        /* that front end, freed with front_free after the loop stops */
  GDestroyNotify front_free;
  GMutex lock;
  VmsReplyFunc held;     /* a request "hold" did not answer yet */
  gpointer held_data;
  guint dispatched;      /* commands that reached fixture_dispatch */
} Fixture;

/* The scripted commands: "echo" {text} -> {"said": text}; "fail" {text}
 * -> an error with desc text; "hold" -> answered by answer_held(); any
 * other -> CommandNotFound. (VmsDispatchFunc; @user_data is the Fixture.) */
void fixture_dispatch(const char *command, JsonObject *args, VmsReplyFunc reply,
                      gpointer reply_data, gpointer user_data);

/* A temp dir and a context on its own thread, serving nothing yet. */
void fixture_start(Fixture *f);
/* fixture_start + a QMP server on f->path with fixture_dispatch. */
void fixture_setup(Fixture *f, gconstpointer data);
void fixture_teardown(Fixture *f, gconstpointer data);

/* Waits until "hold" holds a request; answers it {} from this thread. */
void wait_held(Fixture *f);
void answer_held(Fixture *f);

/* A blocking raw client (10 s receive timeout). */
typedef struct {
  int fd;
  GString *buf;
} Raw;

Raw *raw_connect(const char *path);
void raw_free(Raw *r);
void raw_send(Raw *r, const char *text);
void raw_send_len(Raw *r, const char *data, gsize len);
/* The next line without its "\r\n"; NULL at EOF or timeout. */
char *raw_read_line(Raw *r);
/* The next line, parsed (asserts JSON). Caller unrefs. */
JsonObject *raw_read(Raw *r);
/* Everything up to and including @marker; NULL at EOF or timeout. */
char *raw_read_until(Raw *r, const char *marker);
/* The error desc of @msg (asserts an error with a class). */
const char *error_desc(JsonObject *msg);
const char *error_class(JsonObject *msg);

G_END_DECLS
