/* date.c - INTERNALDATE date-time parsing and formatting, done with plain
 * calendar arithmetic so neither the locale nor the local time zone can
 * change the result. */
#include "imap/date.h"

#include <string.h>

static const char *const month_names[12] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

#define SECONDS_PER_DAY 86400
/* date-year is 4DIGIT; formatting clamps to what it can write. */
#define MIN_YEAR 1
#define MAX_YEAR 9999

static gboolean
is_leap_year(gint64 y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(gint64 year, int month)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30,
	                             31, 31, 30, 31, 30, 31};

	if (month == 2 && is_leap_year(year))
		return 29;
	return days[month - 1];
}

/* Days from 1970-01-01 to year-month-day in the proleptic Gregorian
 * calendar; counting years from March puts the leap day last. */
static gint64
days_from_civil(gint64 year, int month, int day)
{
	gint64 y = month <= 2 ? year - 1 : year;
	gint64 era = (y >= 0 ? y : y - 399) / 400;
	gint64 year_of_era = y - era * 400;
	gint64 month_from_march = (month + 9) % 12;
	gint64 day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
	gint64 day_of_era = year_of_era * 365 + year_of_era / 4 -
	                    year_of_era / 100 + day_of_year;

	return era * 146097 + day_of_era - 719468;
}

static void
civil_from_days(gint64 days, gint64 *year, int *month, int *day)
{
	gint64 z = days + 719468;
	gint64 era = (z >= 0 ? z : z - 146096) / 146097;
	gint64 day_of_era = z - era * 146097;
	gint64 year_of_era = (day_of_era - day_of_era / 1460 +
	                      day_of_era / 36524 - day_of_era / 146096) /
	                     365;
	gint64 day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 -
	                                   year_of_era / 100);
	gint64 month_from_march = (5 * day_of_year + 2) / 153;

	*day = (int)(day_of_year - (153 * month_from_march + 2) / 5 + 1);
	*month = (int)(month_from_march < 10 ? month_from_march + 3
	                                     : month_from_march - 9);
	*year = year_of_era + era * 400 + (*month <= 2 ? 1 : 0);
}

/* Reads exactly n digits. */
static gboolean
read_digits(const char **pp, int n, int *out)
{
	int value = 0;

	for (int i = 0; i < n; i++) {
		char c = (*pp)[i];

		if (c < '0' || c > '9')
			return FALSE;
		value = value * 10 + (c - '0');
	}
	*pp += n;
	*out = value;
	return TRUE;
}

static gboolean
expect(const char **pp, char c)
{
	if (**pp != c)
		return FALSE;
	(*pp)++;
	return TRUE;
}

/* date-day-fixed = (SP DIGIT) / 2DIGIT */
static gboolean
read_day(const char **pp, int *day)
{
	if (**pp == ' ') {
		(*pp)++;
		return read_digits(pp, 1, day);
	}
	return read_digits(pp, 2, day);
}

static gboolean
read_month(const char **pp, int *month)
{
	for (int i = 0; i < 12; i++) {
		if (g_ascii_strncasecmp(*pp, month_names[i], 3) == 0) {
			*pp += 3;
			*month = i + 1;
			return TRUE;
		}
	}
	return FALSE;
}

/* zone = ("+" / "-") 4DIGIT; returns the offset east of UTC in seconds. */
static gboolean
read_zone(const char **pp, int *offset)
{
	int sign, hhmm;

	if (**pp != '+' && **pp != '-')
		return FALSE;
	sign = **pp == '-' ? -1 : 1;
	(*pp)++;
	if (!read_digits(pp, 4, &hhmm))
		return FALSE;
	if (hhmm / 100 > 23 || hhmm % 100 > 59)
		return FALSE;
	*offset = sign * ((hhmm / 100) * 3600 + (hhmm % 100) * 60);
	return TRUE;
}

gboolean
imap_date_parse(const char *s, gint64 *out)
{
	const char *p = s;
	int day, month, year, hour, minute, second, offset;

	if (s == NULL)
		return FALSE;
	if (!read_day(&p, &day) || !expect(&p, '-') ||
	    !read_month(&p, &month) || !expect(&p, '-') ||
	    !read_digits(&p, 4, &year) || !expect(&p, ' ') ||
	    !read_digits(&p, 2, &hour) || !expect(&p, ':') ||
	    !read_digits(&p, 2, &minute) || !expect(&p, ':') ||
	    !read_digits(&p, 2, &second) || !expect(&p, ' ') ||
	    !read_zone(&p, &offset) || *p != '\0')
		return FALSE;
	/* Second 60 is a leap second; it lands on the next minute. */
	if (year < MIN_YEAR || day < 1 || day > days_in_month(year, month) ||
	    hour > 23 || minute > 59 || second > 60)
		return FALSE;
	if (out != NULL)
		*out = days_from_civil(year, month, day) * SECONDS_PER_DAY +
		       hour * 3600 + minute * 60 + second - offset;
	return TRUE;
}

static gint64
floor_div(gint64 a, gint64 b)
{
	gint64 q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Times outside years 1-9999 cannot be written with date-year = 4DIGIT and
 * are clamped to the nearest representable second. */
char *
imap_date_format(gint64 t)
{
	gint64 min_t = days_from_civil(MIN_YEAR, 1, 1) * SECONDS_PER_DAY;
	gint64 max_t =
	    days_from_civil(MAX_YEAR + 1, 1, 1) * SECONDS_PER_DAY - 1;
	gint64 days, secs, year;
	int month, day;

	t = CLAMP(t, min_t, max_t);
	days = floor_div(t, SECONDS_PER_DAY);
	secs = t - days * SECONDS_PER_DAY;
	civil_from_days(days, &year, &month, &day);
	return g_strdup_printf("%02d-%s-%04d %02d:%02d:%02d +0000", day,
	                       month_names[month - 1], (int)year,
	                       (int)(secs / 3600), (int)(secs / 60 % 60),
	                       (int)(secs % 60));
}
