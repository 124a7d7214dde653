/* pool.h - up to max_conns authenticated connections to one account,
 * handed out one operation at a time and replaced when they die. */
#ifndef IMAP_POOL_H
#define IMAP_POOL_H

#include <glib.h>
#include "imap/conn.h"

typedef struct ImapPool ImapPool;

/* Called on every new connection after login (ENABLE extensions and the
 * like); a failure discards the connection. */
typedef ImapStatus (*ImapPoolSetupFn)(ImapConn *c, void *user, ImapError **err);

/* Copies opts and cred (the secret is kept, locked in memory where the
 * system allows, and wiped on free). */
ImapPool *imap_pool_new(const ImapConnectOptions *opts,
                        const ImapCredentials *cred, guint max_conns,
                        ImapPoolSetupFn setup, void *setup_user);
void imap_pool_free(ImapPool *pool);

/* Where a new secret comes from when the server refuses one it accepted
 * before (an OAuth2 access token expires; a password is changed): returns
 * a g_malloc'd string, which the pool wipes and frees, or NULL with *err
 * set. Called from whichever thread found the refusal, one call at a
 * time. */
typedef char *(*ImapPoolSecretFn)(void *user, ImapError **err);
/* Without a source (the default) a refused secret stays refused. Set it
 * before the pool is first used. */
void imap_pool_set_secret_source(ImapPool *pool, ImapPoolSecretFn fn,
                                 void *user);

/* A live, authenticated connection for the caller's exclusive use until
 * imap_pool_release(). Prefers one that already has `mailbox` selected
 * (may be NULL), then any idle one, then opens a new one while fewer than
 * max_conns exist, else waits. */
ImapConn *imap_pool_acquire(ImapPool *pool, const char *mailbox,
                            ImapError **err);
/* Like imap_pool_acquire, for a UID FETCH of a body in `mailbox`: when
 * no connection is idle, the caller may be given one that other such
 * readers hold, with that mailbox selected (see
 * imap_conn_set_holders()). Only for commands that can share a
 * connection: body fetches, which route their data by UID. */
ImapConn *imap_pool_acquire_shared(ImapPool *pool, const char *mailbox,
                                   ImapError **err);
/* Starts opening connections in the background until n exist (at most
 * max_conns), so that the first operations find them ready; failures
 * are only logged. */
void imap_pool_warm(ImapPool *pool, guint n);
/* A new authenticated connection outside the pool's count and hands, for
 * long-lived work such as IDLE; close it with imap_conn_close(). */
ImapConn *imap_pool_connect(ImapPool *pool, ImapError **err);
/* Returns c (each acquire once); a dead connection is closed and
 * forgotten once its last holder returns it. */
void imap_pool_release(ImapPool *pool, ImapConn *c);
/* Capabilities of the server as seen by the last login (for decisions
 * that do not need a connection, such as whether MOVE exists). */
gboolean imap_pool_has_cap(ImapPool *pool, const char *cap);
/* Closes idle connections (e.g. after the server was restarted). */
void imap_pool_drain(ImapPool *pool);
/* How many connections exist (idle, handed out or being opened), how many
 * of those are idle, and the most there may be (for imapfs status). */
void imap_pool_counts(ImapPool *pool, guint *open, guint *idle, guint *max);

#endif
