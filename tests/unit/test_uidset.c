/* test_uidset.c - sequence-set parsing and formatting, COPYUID pairing, and
 * INTERNALDATE parsing and formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "imap/date.h"
#include "imap/uidset.h"

static void
assert_ranges(const GArray *set, const guint32 *pairs, guint n)
{
	assert_non_null(set);
	assert_int_equal(set->len, n);
	for (guint i = 0; i < n; i++) {
		const ImapUidRange *r = &g_array_index(set, ImapUidRange, i);

		assert_int_equal(r->first, pairs[2 * i]);
		assert_int_equal(r->last, pairs[2 * i + 1]);
	}
}

static void
test_parse_simple(void **state)
{
	GArray *set;

	(void)state;
	set = imap_uidset_parse("1", 0);
	assert_ranges(set, (const guint32[]){1, 1}, 1);
	assert_int_equal(imap_uidset_count(set), 1);
	g_array_free(set, TRUE);

	set = imap_uidset_parse("1:5", 0);
	assert_ranges(set, (const guint32[]){1, 5}, 1);
	assert_int_equal(imap_uidset_count(set), 5);
	g_array_free(set, TRUE);

	set = imap_uidset_parse("304,319:320", 0);
	assert_ranges(set, (const guint32[]){304, 304, 319, 320}, 2);
	assert_int_equal(imap_uidset_count(set), 3);
	g_array_free(set, TRUE);

	/* n:m with n > m means the same as m:n. */
	set = imap_uidset_parse("5:3", 0);
	assert_ranges(set, (const guint32[]){3, 5}, 1);
	g_array_free(set, TRUE);

	set = imap_uidset_parse("4294967295", 0);
	assert_ranges(set, (const guint32[]){G_MAXUINT32, G_MAXUINT32}, 1);
	g_array_free(set, TRUE);

	/* Written order is kept, repeats are counted. */
	set = imap_uidset_parse("9,2:3,2", 0);
	assert_ranges(set, (const guint32[]){9, 9, 2, 3, 2, 2}, 3);
	assert_int_equal(imap_uidset_count(set), 4);
	g_array_free(set, TRUE);
}

static void
test_parse_star(void **state)
{
	GArray *set;

	(void)state;
	assert_null(imap_uidset_parse("*", 0));
	assert_null(imap_uidset_parse("1:*", 0));

	set = imap_uidset_parse("*", 42);
	assert_ranges(set, (const guint32[]){42, 42}, 1);
	g_array_free(set, TRUE);

	set = imap_uidset_parse("1:*", 42);
	assert_ranges(set, (const guint32[]){1, 42}, 1);
	assert_int_equal(imap_uidset_count(set), 42);
	g_array_free(set, TRUE);

	/* "*" below the other end swaps like any other range. */
	set = imap_uidset_parse("100:*", 42);
	assert_ranges(set, (const guint32[]){42, 100}, 1);
	g_array_free(set, TRUE);

	set = imap_uidset_parse("*:7,3", 10);
	assert_ranges(set, (const guint32[]){7, 10, 3, 3}, 2);
	g_array_free(set, TRUE);
}

static void
test_parse_rejects(void **state)
{
	static const char *const bad[] = {
	    "",           "0",           "0:5",          "5:0", ",",    "1,",
	    ",1",         "1,,2",        "1:",           ":1",  "1::2", "1:2:3",
	    "4294967296", "99999999999", "1:4294967296", "a",   "1a",   "1 ",
	    " 1",         "1, 2",        "1;2",          "-1",  "+1",   "01",
	    "1:02",       "**",          "1:**",
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		GArray *set = imap_uidset_parse(bad[i], 100);

		if (set != NULL)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	assert_null(imap_uidset_parse(NULL, 0));
}

static void
test_nth_and_copyuid(void **state)
{
	GArray *src = imap_uidset_parse("304,319:320", 0);
	GArray *dst = imap_uidset_parse("3956:3958", 0);
	static const guint32 want_src[] = {304, 319, 320};
	static const guint32 want_dst[] = {3956, 3957, 3958};

	(void)state;
	assert_int_equal(imap_uidset_count(src), imap_uidset_count(dst));
	for (guint64 i = 0; i < imap_uidset_count(src); i++) {
		assert_int_equal(imap_uidset_nth(src, i), want_src[i]);
		assert_int_equal(imap_uidset_nth(dst, i), want_dst[i]);
	}
	assert_int_equal(imap_uidset_nth(src, 3), 0);
	assert_int_equal(imap_uidset_nth(src, G_MAXUINT64), 0);
	assert_int_equal(imap_uidset_nth(NULL, 0), 0);
	g_array_free(src, TRUE);
	g_array_free(dst, TRUE);
}

static void
test_huge_range(void **state)
{
	GArray *set = imap_uidset_parse("1:4294967295,7", 0);

	(void)state;
	assert_int_equal(imap_uidset_count(set), (guint64)G_MAXUINT32 + 1);
	assert_int_equal(imap_uidset_nth(set, 0), 1);
	assert_int_equal(imap_uidset_nth(set, G_MAXUINT32 - 1), G_MAXUINT32);
	assert_int_equal(imap_uidset_nth(set, G_MAXUINT32), 7);
	assert_int_equal(imap_uidset_nth(set, (guint64)G_MAXUINT32 + 1), 0);
	assert_true(imap_uidset_contains(set, G_MAXUINT32));
	assert_null(imap_uidset_expand(set, 1000000));
	g_array_free(set, TRUE);

	/* The top UID ends the expansion without wrapping around. */
	set = imap_uidset_parse("4294967294:4294967295", 0);
	GArray *uids = imap_uidset_expand(set, 2);
	assert_non_null(uids);
	assert_int_equal(uids->len, 2);
	assert_int_equal(g_array_index(uids, guint32, 1), G_MAXUINT32);
	g_array_free(uids, TRUE);
	g_array_free(set, TRUE);
}

static void
test_expand_contains(void **state)
{
	GArray *set = imap_uidset_parse("7,1:3,2", 0);
	GArray *uids;
	static const guint32 want[] = {7, 1, 2, 3, 2};

	(void)state;
	uids = imap_uidset_expand(set, 5);
	assert_non_null(uids);
	assert_int_equal(uids->len, 5);
	assert_memory_equal(uids->data, want, sizeof(want));
	g_array_free(uids, TRUE);
	assert_null(imap_uidset_expand(set, 4));

	assert_true(imap_uidset_contains(set, 1));
	assert_true(imap_uidset_contains(set, 3));
	assert_true(imap_uidset_contains(set, 7));
	assert_false(imap_uidset_contains(set, 0));
	assert_false(imap_uidset_contains(set, 4));
	assert_false(imap_uidset_contains(set, 8));
	assert_false(imap_uidset_contains(NULL, 1));
	g_array_free(set, TRUE);
}

static void
check_format(const guint32 *uids, gsize n, const char *want)
{
	char *got = imap_uidset_format(uids, n);

	assert_string_equal(got, want);
	g_free(got);
}

static void
test_format(void **state)
{
	(void)state;
	check_format(NULL, 0, "");
	check_format((const guint32[]){5, 1, 2, 3}, 4, "1:3,5");
	check_format((const guint32[]){1}, 1, "1");
	check_format((const guint32[]){3, 3, 3}, 3, "3");
	check_format((const guint32[]){2, 1, 2, 1, 4, 6, 5}, 7, "1:2,4:6");
	check_format((const guint32[]){320, 304, 319}, 3, "304,319:320");
	check_format((const guint32[]){G_MAXUINT32, G_MAXUINT32 - 1, 1}, 3,
	             "1,4294967294:4294967295");
	check_format((const guint32[]){0, 9, 0}, 3, "9");
	check_format((const guint32[]){0}, 1, "");
}

/* format(expand(parse(x))) is the canonical form of x; parsing it again
 * covers the same UIDs. */
static void
test_round_trip(void **state)
{
	static const struct {
		const char *in, *canonical;
	} cases[] = {
	    {"1", "1"},
	    {"1:5", "1:5"},
	    {"5:1", "1:5"},
	    {"304,319:320", "304,319:320"},
	    {"320,319,304", "304,319:320"},
	    {"1:3,2:6,10,9", "1:6,9:10"},
	    {"7,7,7", "7"},
	    {"100:98,1", "1,98:100"},
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		GArray *set = imap_uidset_parse(cases[i].in, 0);
		GArray *uids = imap_uidset_expand(set, 1000);
		char *text = imap_uidset_format((guint32 *)(void *)uids->data,
		                                uids->len);
		GArray *again = imap_uidset_parse(text, 0);

		assert_string_equal(text, cases[i].canonical);
		assert_non_null(again);
		for (guint j = 0; j < uids->len; j++)
			assert_true(imap_uidset_contains(
			    again, g_array_index(uids, guint32, j)));
		g_array_free(set, TRUE);
		g_array_free(uids, TRUE);
		g_array_free(again, TRUE);
		g_free(text);
	}
}

static void
check_date(const char *text, gint64 want)
{
	gint64 got = -1;

	if (!imap_date_parse(text, &got))
		fail_msg("rejected \"%s\"", text);
	assert_int_equal(got, want);
}

static void
test_date_parse(void **state)
{
	(void)state;
	/* RFC 3501 example: 09:44:25 UTC. */
	check_date("17-Jul-1996 02:44:25 -0700", 837596665);
	check_date("17-Jul-1996 09:44:25 +0000", 837596665);
	check_date("17-Jul-1996 11:44:25 +0200", 837596665);
	check_date("17-Jul-1996 15:14:25 +0530", 837596665);
	check_date("17-jul-1996 02:44:25 -0700", 837596665);
	check_date("17-JUL-1996 02:44:25 -0700", 837596665);
	check_date(" 7-Jul-1996 02:44:25 -0700", 836732665);
	check_date("07-Jul-1996 02:44:25 -0700", 836732665);
	check_date("01-Jan-1970 00:00:00 +0000", 0);
	check_date("01-Jan-1970 00:00:00 +0100", -3600);
	check_date("31-Dec-1969 23:59:59 +0000", -1);
	check_date("29-Feb-2024 12:00:00 +0000", 1709208000);
	check_date("29-Feb-2000 00:00:00 +0000", 951782400);
	check_date("01-Mar-2000 00:00:00 +0000", 951868800);
	check_date("19-Jan-2038 03:14:08 +0000", 2147483648LL);
	check_date("31-Dec-9999 23:59:59 +0000", 253402300799LL);
	/* The offset can move the date into the next day or year. */
	check_date("31-Dec-1999 23:30:00 -0100", 946686600);
	assert_true(imap_date_parse("01-Jan-2000 00:00:00 +0000", NULL));
}

static void
test_date_rejects(void **state)
{
	static const char *const bad[] = {
	    "",
	    "17-Jul-1996 02:44:25",
	    "17-Jul-1996 02:44:25 0700",
	    "17-Jul-1996 02:44:25 -070",
	    "17-Jul-1996 02:44:25 -07000",
	    "17-Jul-1996 02:44:25 -0700 ",
	    "\"17-Jul-1996 02:44:25 -0700\"",
	    "7-Jul-1996 02:44:25 -0700",
	    "  7-Jul-1996 02:44:25 -0700",
	    "117-Jul-1996 02:44:25 -0700",
	    "17-Jly-1996 02:44:25 -0700",
	    "17-July-1996 02:44:25 -0700",
	    "17-Jul-96 02:44:25 -0700",
	    "17 Jul 1996 02:44:25 -0700",
	    "17-Jul-1996T02:44:25 -0700",
	    "17-Jul-1996 2:44:25 -0700",
	    "17-Jul-1996 02:44 -0700",
	    "00-Jul-1996 02:44:25 -0700",
	    "32-Jul-1996 02:44:25 -0700",
	    "31-Jun-1996 02:44:25 -0700",
	    "29-Feb-2023 00:00:00 +0000", /* not a leap year */
	    "29-Feb-1900 00:00:00 +0000", /* century, not a leap year */
	    "17-Jul-1996 24:00:00 +0000",
	    "17-Jul-1996 23:60:00 +0000",
	    "17-Jul-1996 23:59:61 +0000",
	    "17-Jul-1996 02:44:25 +2400",
	    "17-Jul-1996 02:44:25 +0060",
	    "17-Jul-0000 02:44:25 +0000",
	    "17-Jul-1996 02:44:25 GMT",
	    "17-Jul-1996 02:44:25 -07:00",
	    "1a-Jul-1996 02:44:25 -0700",
	};

	(void)state;
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		gint64 t = 12345;

		if (imap_date_parse(bad[i], &t))
			fail_msg("accepted \"%s\"", bad[i]);
		assert_int_equal(t, 12345);
	}
	assert_false(imap_date_parse(NULL, NULL));
}

static void
check_format_date(gint64 t, const char *want)
{
	char *got = imap_date_format(t);

	assert_string_equal(got, want);
	assert_int_equal(strlen(got), 26);
	g_free(got);
}

static void
test_date_format(void **state)
{
	(void)state;
	check_format_date(0, "01-Jan-1970 00:00:00 +0000");
	check_format_date(-1, "31-Dec-1969 23:59:59 +0000");
	check_format_date(837596665, "17-Jul-1996 09:44:25 +0000");
	check_format_date(836732665, "07-Jul-1996 09:44:25 +0000");
	check_format_date(1709208000, "29-Feb-2024 12:00:00 +0000");
	check_format_date(951782400, "29-Feb-2000 00:00:00 +0000");
	check_format_date(2147483648LL, "19-Jan-2038 03:14:08 +0000");
	check_format_date(253402300799LL, "31-Dec-9999 23:59:59 +0000");
	/* Beyond 4-digit years: clamped. */
	check_format_date(253402300800LL, "31-Dec-9999 23:59:59 +0000");
	check_format_date(G_MININT64, "01-Jan-0001 00:00:00 +0000");
}

/* GLib's calendar is an independent oracle for the fields we wrote. */
static void
check_against_gdatetime(gint64 t, const char *text)
{
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
	                                     "May", "Jun", "Jul", "Aug",
	                                     "Sep", "Oct", "Nov", "Dec"};
	GDateTime *dt = g_date_time_new_from_unix_utc(t);
	char *want;

	assert_non_null(dt);
	want = g_strdup_printf(
	    "%02d-%s-%04d %02d:%02d:%02d +0000",
	    g_date_time_get_day_of_month(dt),
	    months[g_date_time_get_month(dt) - 1], g_date_time_get_year(dt),
	    g_date_time_get_hour(dt), g_date_time_get_minute(dt),
	    g_date_time_get_second(dt));
	assert_string_equal(text, want);
	g_free(want);
	g_date_time_unref(dt);
}

/* Every day over several leap cycles, at an odd time and several offsets,
 * formats and parses back to itself. */
static void
test_date_round_trip(void **state)
{
	static const char *const zones[] = {"+0000", "-0700", "+0530", "+1400",
	                                    "-1200"};

	(void)state;
	for (gint64 t = -86400LL * 800 + 3723; t < 86400LL * 366 * 60;
	     t += 86400 + 7) {
		char *text = imap_date_format(t);
		gint64 back = 0;

		assert_true(imap_date_parse(text, &back));
		assert_int_equal(back, t);
		check_against_gdatetime(t, text);
		for (gsize z = 0; z < G_N_ELEMENTS(zones); z++) {
			char *shifted = g_strndup(text, 21);
			char *with_zone = g_strconcat(shifted, zones[z], NULL);
			gint64 local;
			int sign = zones[z][0] == '-' ? -1 : 1;
			int hh = atoi(zones[z] + 1) / 100;
			int mm = atoi(zones[z] + 1) % 100;

			/* Same wall-clock text, other zone: shifts by it. */
			assert_true(imap_date_parse(with_zone, &local));
			assert_int_equal(local,
			                 t - sign * (hh * 3600 + mm * 60));
			g_free(shifted);
			g_free(with_zone);
		}
		g_free(text);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_simple),
	    cmocka_unit_test(test_parse_star),
	    cmocka_unit_test(test_parse_rejects),
	    cmocka_unit_test(test_nth_and_copyuid),
	    cmocka_unit_test(test_huge_range),
	    cmocka_unit_test(test_expand_contains),
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_date_parse),
	    cmocka_unit_test(test_date_rejects),
	    cmocka_unit_test(test_date_format),
	    cmocka_unit_test(test_date_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
