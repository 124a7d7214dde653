/* notify.c - keeping the kernel's view in step with the server: entries of
 * messages another client expunged are invalidated as soon as cache/
 * learns of it, and SIGHUP (or setting the xattr user.imapfs.refresh on
 * any directory) drops every cached listing so the next look asks the
 * server. */
#include <signal.h>
#include <string.h>

#include "imapfs.h"

static gint refresh_requests; /* bumped by SIGHUP */
static gint refresh_seen;

static void
on_sighup(int sig)
{
	g_atomic_int_inc(&refresh_requests);
}

void
imapfs_notify_init(Imapfs *fs)
{
	struct sigaction sa = {0};

	/* libfuse installed its own SIGHUP handler (exit); refreshing is
	 * what a network filesystem user expects from it. */
	sa.sa_handler = on_sighup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);
}

void
imapfs_refresh_if_requested(Imapfs *fs)
{
	gint now = g_atomic_int_get(&refresh_requests);

	if (now == g_atomic_int_get(&refresh_seen))
		return;
	g_atomic_int_set(&refresh_seen, now);
	g_message("refresh requested: dropping cached listings");
	store_invalidate(fs->store);
}

void
imapfs_on_change(void *user, const char *mailbox, const guint32 *removed,
                 guint n_removed)
{
	Imapfs *fs = user;
	g_autofree char *dir = NULL;
	char name[FS_MESSAGE_NAME_SIZE];

	if (fs_path_from_mailbox(mailbox, store_delimiter(fs->store), &dir) !=
	    0)
		return;
	for (guint i = 0; i < n_removed; i++) {
		g_autofree char *path = NULL;
		if (!fs_message_name_format(removed[i], name))
			continue;
		path = g_strconcat(dir, "/", name, NULL);
		imapfs_lowlevel_invalidate(path);
	}
}
