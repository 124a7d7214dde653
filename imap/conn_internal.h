/* conn_internal.h - pieces of the connection engine shared by conn.c and
 * auth.c, not part of the public API. */
#ifndef IMAP_CONN_INTERNAL_H
#define IMAP_CONN_INTERNAL_H

#include "imap/conn.h"

typedef struct PendingCmd PendingCmd;

/* Sends cmd (consumed) and returns without waiting for the tagged reply. */
PendingCmd *conn_submit(ImapConn *c, ImapCmd *cmd, const ImapCmdHooks *hooks,
                        ImapError **err);
/* Waits for the tagged reply of a submitted command and frees it. */
ImapStatus conn_wait(ImapConn *c, PendingCmd *pc, ImapResponse **tagged,
                     ImapError **err);
/* Sends a raw line (CRLF added) outside any command: IDLE's DONE, SASL
 * responses. */
ImapStatus conn_send_line(ImapConn *c, const char *line, gboolean secret,
                          ImapError **err);
/* Maps a tagged NO/BAD to an ImapError. */
ImapStatus conn_status_from_tagged(const ImapResponse *r, ImapError **err);
const char *conn_host(ImapConn *c);
const char *conn_port(ImapConn *c);
void conn_set_authenticated(ImapConn *c);
ImapTransport *conn_transport(ImapConn *c);
ImapCompressMode conn_compress_mode(ImapConn *c);

#endif
