/* ops_internal.h - what ops.c, ops_fetch.c and ops_change.c share: running
 * a command (in a leased mailbox), reading response values, mailbox names
 * and flag lists made safe to send, and UID sets. Not for other files. */
#ifndef IMAP_OPS_INTERNAL_H
#define IMAP_OPS_INTERNAL_H

#include "imap/command.h"
#include "imap/conn.h"
#include "imap/ops.h"
#include "imap/parser.h"

/* A server-sent UID set larger than this is refused rather than expanded. */
#define MAX_SEARCH_RESULTS (64u * 1024 * 1024)

ImapCmd *ops_cmd(ImapConn *c, const char *verb);
ImapStatus ops_run(ImapConn *c, ImapCmd *cmd, const ImapCmdHooks *hooks,
                   ImapResponse **tagged, ImapError **err);
ImapStatus lease_mailbox(ImapConn *c, const char *mailbox, ImapError **err);
ImapStatus refresh_view(ImapConn *c, ImapError **err);
ImapStatus run_in_mailbox(ImapConn *c, const char *mailbox, gboolean refresh,
                          ImapCmd *cmd, const ImapCmdHooks *hooks,
                          ImapResponse **tagged, ImapError **err);
gboolean name_is(const ImapResponse *r, const char *name);
const ImapValue *arg_at(const ImapResponse *r, guint i);
const ImapValue *list_at(const ImapValue *list, guint i);
const char *value_text(const ImapValue *v);
const char *code_arg_text(const ImapResponse *r, guint i);
char *flag_list(const char *flags, ImapError **err);
ImapStatus check_uidset(const char *uidset, ImapError **err);
GArray *ranges_normalize(const GArray *set);
const ImapUidRange *ranges_find(const GArray *norm, guint32 uid);
gboolean ranges_cover(const GArray *norm, const GArray *set);

#endif
