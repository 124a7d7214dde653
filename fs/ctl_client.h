/* ctl_client.h - `imapfs status` and `imapfs prefetch`: commands that
 * talk to a running mount through its control attributes. */
#ifndef FS_CTL_CLIENT_H
#define FS_CTL_CLIENT_H

#include <glib.h>

/* TRUE if word (argv[1]) names one of these commands. */
gboolean ctl_is_command(const char *word);
/* Runs the command; returns the exit status. */
int ctl_main(int argc, char **argv);

#endif
