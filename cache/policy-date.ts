/**
 * HTTP-date parsing (RFC 9110 §5.6.7): the preferred IMF-fixdate and the two obsolete formats a
 * recipient MUST still accept (RFC 850 and asctime). `Date.parse` is not used: it accepts many
 * strings that are not HTTP-dates, and RFC 9111 §5.3 requires an invalid `Expires` to mean
 * "already expired", so a lenient parser would make responses fresh that must be stale.
 */

const MONTHS: Readonly<Record<string, number>> = {
  Jan: 0,
  Feb: 1,
  Mar: 2,
  Apr: 3,
  May: 4,
  Jun: 5,
  Jul: 6,
  Aug: 7,
  Sep: 8,
  Oct: 9,
  Nov: 10,
  Dec: 11,
};

// HTTP-date is case-sensitive (RFC 9110 §5.6.7), so these patterns are too.
const IMF_FIXDATE =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const RFC850_DATE =
  /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-([A-Z][a-z]{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const ASCTIME_DATE =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

function build(
  year: number,
  month: string,
  day: string,
  h: string,
  m: string,
  s: string,
): number | undefined {
  const mon = MONTHS[month];
  if (mon === undefined) return undefined;
  const d = Number(day);
  const hh = Number(h);
  const mm = Number(m);
  const ss = Number(s);
  // Leap second 60 is allowed by the grammar (RFC 9110 §5.6.7 "second = 2DIGIT"; 00-60).
  if (d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60) return undefined;
  const t = Date.UTC(year, mon, d, hh, mm, ss);
  // Reject day overflow such as 31 Feb (Date.UTC would roll it into March).
  if (new Date(t).getUTCDate() !== d && ss !== 60) return undefined;
  return t;
}

/**
 * Parse an HTTP-date into epoch milliseconds, or `undefined` when it is not a valid HTTP-date.
 *
 * @example
 * ```ts
 * parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'); // 784111777000
 * parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT'); // 784111777000 (RFC 850)
 * parseHttpDate('Sun Nov  6 08:49:37 1994');       // 784111777000 (asctime)
 * parseHttpDate('0');                              // undefined
 * ```
 */
export function parseHttpDate(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  let m = IMF_FIXDATE.exec(v);
  if (m !== null) return build(Number(m[3]), m[2]!, m[1]!, m[4]!, m[5]!, m[6]!);
  m = RFC850_DATE.exec(v);
  if (m !== null) {
    // Two-digit years (RFC 9110 §5.6.7): a year more than 50 years in the future means the most
    // recent past year with those digits. Fixed pivot keeps this function pure: 00-69 -> 20xx.
    const yy = Number(m[3]);
    return build(yy < 70 ? 2000 + yy : 1900 + yy, m[2]!, m[1]!, m[4]!, m[5]!, m[6]!);
  }
  m = ASCTIME_DATE.exec(v);
  if (m !== null) return build(Number(m[6]), m[1]!, m[2]!.trim().padStart(2, '0'), m[3]!, m[4]!, m[5]!);
  return undefined;
}

/**
 * Format epoch milliseconds as an IMF-fixdate (RFC 9110 §5.6.7).
 *
 * @example
 * ```ts
 * formatHttpDate(784111777000); // 'Sun, 06 Nov 1994 08:49:37 GMT'
 * ```
 */
export function formatHttpDate(ms: number): string {
  return new Date(ms).toUTCString();
}
