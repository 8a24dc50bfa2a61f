/* vmsnap plugin: the monitor console's line editor, for a client whose
 * terminal is raw (`socat -,raw,echo=0 UNIX-CONNECT:PATH`, as people use
 * QEMU's HMP): echo, cursor movement, history, Tab completion. Keys are
 * bytes in, terminal output out; no sockets (tests and fuzzing feed it
 * directly).
 *
 * Keys: printable text and UTF-8 insert at the cursor; Enter (CR or LF;
 * CR LF is one) submits; Backspace/^H, Delete/^D delete; Left/Right/^B/^F,
 * Home/End/^A/^E move; Up/Down/^P/^N walk the history; ^K/^U/^W kill to the
 * end / to the start / a word; ^C drops the line; ^D on an empty line ends
 * the console; Tab completes (vms_monitor_complete). Any other control byte
 * or escape sequence is swallowed: nothing the peer sends is echoed raw.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _VmsLineEditor VmsLineEditor;

/* An editor that prints @prompt (copied) when it redraws. */
VmsLineEditor *vms_line_editor_new(const char *prompt);
void vms_line_editor_free(VmsLineEditor *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsLineEditor, vms_line_editor_free)

/* What a key did. */
typedef enum {
  VMS_EDIT_NONE,   /* keep feeding */
  VMS_EDIT_LINE,   /* a line was submitted: *ret_line (caller frees), added to the history */
  VMS_EDIT_EOF,    /* ^D on an empty line: the peer is done */
} VmsEditResult;

/* Feeds one byte; appends to @out what the terminal must show (echo,
 * redraws; lines end in CR LF). */
VmsEditResult vms_line_editor_feed(VmsLineEditor *e, guchar byte, GString *out, char **ret_line);

/* Appends the prompt and the line being edited, cursor in place (after an
 * answer was printed). */
void vms_line_editor_redraw(VmsLineEditor *e, GString *out);

/* The line being edited (for tests). Owned by @e. */
const char *vms_line_editor_get_line(VmsLineEditor *e);

G_END_DECLS
