/* test_errmap.c - which errno each IMAP failure becomes: response codes
 * first, then (only for a bare NO) the words of servers without codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "imapfs.h"

/* imapfs_errno for a failure with that status, code and server text. */
static int
errno_of(ImapStatus st, ImapCode code, const char *text)
{
	ImapError *err = NULL;

	imap_error_set(&err, st, code, "%s", text);
	return -imapfs_errno("test", "object", st, err);
}

static void
test_codes(void **state)
{
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_NONEXISTENT, "gone"),
	                 ENOENT);
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_TRYCREATE, "no box"),
	                 ENOENT);
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_EXPUNGEISSUED, "x"),
	                 ENOENT);
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_ALREADYEXISTS, "x"),
	                 EEXIST);
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_OVERQUOTA, "full"),
	                 ENOSPC);
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_TOOBIG, "too big"),
	                 EFBIG);
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_NOPERM, "x"), EACCES);
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_READONLY, "x"), EROFS);
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_INUSE, "x"), EBUSY);
}

static void
test_statuses(void **state)
{
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_NONE, "failed"), EIO);
	assert_int_equal(errno_of(IMAP_EBAD, IMAP_CODE_NONE, "syntax"), EIO);
	assert_int_equal(errno_of(IMAP_EEOF, IMAP_CODE_NONE, "closed"), EIO);
	assert_int_equal(errno_of(IMAP_EINVAL, IMAP_CODE_NONE, "CR"), EINVAL);
	assert_int_equal(errno_of(IMAP_EUNSUPPORTED, IMAP_CODE_NONE, "x"),
	                 ENOTSUP);
	assert_int_equal(errno_of(IMAP_EAUTH, IMAP_CODE_NONE, "refused"),
	                 EACCES);
}

/* Cyrus 3.6's own answers, as recorded against it. */
static void
test_bare_no_words(void **state)
{
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_NONE, "Over quota"),
	                 ENOSPC);
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_NONE,
	                          "APPEND: Mailbox quota exceeded"),
	                 ENOSPC);
	assert_int_equal(
	    errno_of(IMAP_ENO, IMAP_CODE_NONE, "Mailbox does not exist"),
	    ENOENT);
	assert_int_equal(
	    errno_of(IMAP_ENO, IMAP_CODE_NONE, "Mailbox already exists"),
	    EEXIST);
	assert_int_equal(
	    errno_of(IMAP_ENO, IMAP_CODE_NONE, "Permission denied"), EACCES);
}

/* Words count only where nothing better says what happened. */
static void
test_words_do_not_override(void **state)
{
	/* A BAD is our bug, whatever it says. */
	assert_int_equal(
	    errno_of(IMAP_EBAD, IMAP_CODE_NONE, "Mailbox does not exist"), EIO);
	/* A code is the server's precise word. */
	assert_int_equal(
	    errno_of(IMAP_ENO, IMAP_CODE_NOPERM, "Mailbox does not exist"),
	    EACCES);
	assert_int_equal(errno_of(IMAP_ENO, IMAP_CODE_SERVERBUG, "Over quota"),
	                 EIO);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codes),
	    cmocka_unit_test(test_statuses),
	    cmocka_unit_test(test_bare_no_words),
	    cmocka_unit_test(test_words_do_not_override),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
