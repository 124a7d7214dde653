/* warm.h - what `imapfs status` and `imapfs prefetch` ask of a running
 * mount, without FUSE: a status report of the account and its caches, and
 * jobs that fill the body cache with every message of a mailbox tree.
 * fs/ hands both out as extended attributes (ops_xattr.c); the texts are
 * JSON objects, see doc/imapfs.1 (COMMANDS). */
#ifndef CACHE_WARM_H
#define CACHE_WARM_H

#include <glib.h>

#include "cache/store.h"

/* Names the account in status reports ("alice@mail.example.com:993"). */
void warm_set_account(MailStore *s, const char *account);

/* The status as a JSON object, with the mailboxes from index first on
 * (sorted by name); when they do not all fit in about max_bytes, the
 * object says where to go on ("mailboxes_next"). Never talks to the
 * server. Newly allocated. */
char *warm_status_json(MailStore *s, guint first, gsize max_bytes);

/* Starts a job that fills the body cache with the bodies of every message
 * in mailbox root and all mailboxes below it (root NULL or "": the whole
 * account), fetched in batches with BODY.PEEK[] on pooled connections.
 * Bodies already cached are kept and skipped. A job for the same root
 * that is still running is left to run (both callers then follow it).
 * Problems (no body cache, offline, no such mailbox, a tree larger than
 * cache_size) end the job with state "failed" or "too_big" and a message
 * in its progress. */
void warm_start(MailStore *s, const char *root);
/* Asks the job for root to stop after the batches in flight; FALSE if no
 * job for root is running. */
gboolean warm_cancel(MailStore *s, const char *root);
/* The progress of the latest job for root as a JSON object, or NULL if
 * there was none. Newly allocated. */
char *warm_progress_json(MailStore *s, const char *root);

/* Appends s to o as a JSON string ("null" for NULL; bytes that are not
 * UTF-8 are replaced): shared by the daemon's answers and imapfs status. */
void warm_json_string(GString *o, const char *s);

#endif
