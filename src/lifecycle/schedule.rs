//! Crontab schedules (`lifecycle.teardown`, `lifecycle.wake`) evaluated in an IANA time zone.
//!
//! # Semantics
//!
//! The 5 fields of a POSIX/Vixie crontab: minute, hour, day of month, month, day of week. Each
//! field is `*`, a value, a range `a-b`, a step `*/n` or `a-b/n`, or a comma list of those.
//! Weekdays run 0–7 with 0 and 7 both Sunday; months and weekdays also take their three-letter
//! English names in any case (`jan`, `mon-fri`). When both day of month and day of week are
//! restricted (neither starts with `*`, as in Vixie cron), a day matching either fires; otherwise
//! both must match.
//! The nicknames `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and
//! `@hourly` stand for their 5 fields. Everything else is refused with a reason: seconds or
//! year fields, `@reboot` (not a time), Quartz's `?`, `L`, `W` and `#`, and a day of month that
//! no selected month has (`0 0 30 2 *` would never fire).
//!
//! # Daylight saving time
//!
//! The expression selects wall-clock times; each selected wall-clock time fires at the first
//! instant the zone's clock shows it or a later time. So a time inside the hour skipped in
//! spring fires once, at the jump (Europe/Berlin on 2026-03-29: `30 2 * * *` fires at 03:00
//! local, 01:00 UTC), and a time inside the hour repeated in autumn fires once, at its first
//! occurrence. That mapping never decreases, so firings never go backwards and no instant fires
//! twice, whatever the expression.
//!
//! # Why a wrapper around `croner`
//!
//! `croner` parses and searches the calendar (its weekday numbering and day-of-month/day-of-week
//! rule are Vixie's), but in a time zone it follows OCPS: only "fixed-time" expressions get the
//! rule above, while `*/30 * * * *` fires twice in a repeated hour and `30 2,3 * * *` drops 02:30
//! on the day it is skipped. So croner only ever sees the local wall clock (`NaiveDateTime`, where
//! no time is skipped or repeated), and this module maps wall-clock times to instants itself. The
//! fields are also checked here first, because croner accepts more than a crontab does
//! (Quartz syntax, 6 and 7 fields, a month name in the weekday field).

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use std::collections::BTreeSet;
use std::str::FromStr;

const EXAMPLE: &str = "a crontab is 5 fields: minute hour day-of-month month day-of-week, e.g. \
     \"0 12 * * 1-5\" is noon Monday to Friday";

/// A parsed crontab expression.
#[derive(Clone, Debug)]
pub struct Schedule {
    expression: String,
    /// The expression in croner's syntax, names resolved, evaluated on the local wall clock only.
    cron: Cron,
}

impl Schedule {
    /// Parses a 5-field crontab or one of the nicknames; the error says what is wrong and gives
    /// an example.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let expression = expr.trim();
        let fields = expand_nickname(expression)?;
        let fields: Vec<&str> = fields.split_whitespace().collect();
        if fields.len() != 5 {
            let extra = if fields.len() > 5 {
                "; seconds and year fields are not supported"
            } else {
                ""
            };
            return Err(format!(
                "expected 5 fields, found {}{extra} ({EXAMPLE})",
                fields.len()
            ));
        }
        let mut parsed = Vec::with_capacity(5);
        for (field, text) in FIELDS.iter().zip(&fields) {
            parsed.push(
                field
                    .parse(text)
                    .map_err(|problem| format!("{problem} ({EXAMPLE})"))?,
            );
        }
        check_day_of_month_occurs(&parsed[2], &parsed[3], &parsed[4])
            .map_err(|problem| format!("{problem} ({EXAMPLE})"))?;
        // croner wants a seconds field first; 0 so the wall clock matches on whole minutes.
        let pattern = std::iter::once("0".to_string())
            .chain(parsed.iter().map(FieldValues::to_pattern))
            .collect::<Vec<_>>()
            .join(" ");
        // Vixie cron: a day field that starts with `*` (`*`, `*/2`) leaves the days to the other
        // field (both must match); only two restricted day fields make either one enough.
        let days_and = fields[2].starts_with('*') || fields[4].starts_with('*');
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .dom_and_dow(days_and)
            .build()
            .parse(&pattern)
            .map_err(|e| format!("`{expression}`: {e} ({EXAMPLE})"))?;
        Ok(Schedule {
            expression: expression.to_string(),
            cron,
        })
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first firing strictly after `after`, in `tz`. None if it never fires again.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // A wall-clock time at or before `after`'s own fires at or before `after`, so the search
        // starts there. It loops only when `after` lies in the second pass of a repeated range,
        // whose wall-clock times already fired on the first pass (bounded by that range).
        let mut wall = whole_seconds(after.with_timezone(&tz).naive_local());
        loop {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            let fires = first_instant_showing(wall, tz)?;
            if fires > after {
                return Some(fires);
            }
        }
    }

    /// Level-triggered: the latest firing t with since < t <= now, if any
    /// ("a teardown time has passed since the environment was last created/woken/extended").
    ///
    /// One backward search from `now`, however long ago `since` is.
    pub fn last_fired_between(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        if now <= since {
            return None;
        }
        // A wall-clock time fires at or before `now` exactly when the clock has shown it (or a
        // later time) by `now`, so the latest firing belongs to the latest selected wall-clock
        // time at or before the highest the clock has read.
        let wall = self
            .cron
            .find_previous_occurrence(&highest_wall_clock_by(now, tz), true)
            .ok()?;
        let fired = first_instant_showing(wall, tz)?;
        (fired > since).then_some(fired)
    }
}

/// The zone for `lifecycle.timezone`; UTC when it is absent.
pub fn timezone(name: Option<&str>) -> Result<Tz, String> {
    match name {
        None => Ok(Tz::UTC),
        Some(name) => Tz::from_str(name).map_err(|_| {
            format!("unknown time zone `{name}` (an IANA name such as Europe/Berlin or UTC)")
        }),
    }
}

/// The Vixie nicknames that name a time; `@reboot` does not, so it is refused.
fn expand_nickname(expression: &str) -> Result<String, String> {
    if !expression.starts_with('@') {
        return Ok(expression.to_string());
    }
    let fields = match expression.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => {
            return Err(format!(
                "`{expression}` is not a supported nickname: use @yearly, @annually, @monthly, \
                 @weekly, @daily, @midnight or @hourly, or 5 fields ({EXAMPLE})"
            ));
        }
    };
    Ok(fields.to_string())
}

/// One crontab field: its name in messages, its range and the names it accepts.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Three-letter names for `first_named`, `first_named + 1`, ...
    names: &'static [&'static str],
    first_named: u32,
    /// Day of week: 7 is another name for 0, Sunday.
    seven_is_sunday: bool,
    example: &'static str,
}

const FIELDS: [Field; 5] = [
    Field::numeric("minute", 0, 59, "*/15"),
    Field::numeric("hour", 0, 23, "9-17"),
    Field::numeric("day-of-month", 1, 31, "1,15"),
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
        first_named: 1,
        seven_is_sunday: false,
        example: "jan-mar",
    },
    Field {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
        first_named: 0,
        seven_is_sunday: true,
        example: "mon-fri",
    },
];

/// What one field selects.
#[derive(Debug, PartialEq)]
enum FieldValues {
    /// A bare `*`: every value (passed to croner as `*`).
    Any,
    Listed(BTreeSet<u32>),
}

impl FieldValues {
    fn contains(&self, value: u32) -> bool {
        match self {
            FieldValues::Any => true,
            FieldValues::Listed(values) => values.contains(&value),
        }
    }

    fn to_pattern(&self) -> String {
        match self {
            FieldValues::Any => "*".to_string(),
            FieldValues::Listed(values) => values
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

impl Field {
    const fn numeric(name: &'static str, min: u32, max: u32, example: &'static str) -> Field {
        Field {
            name,
            min,
            max,
            names: &[],
            first_named: 0,
            seven_is_sunday: false,
            example,
        }
    }

    fn parse(&self, text: &str) -> Result<FieldValues, String> {
        if text == "*" {
            return Ok(FieldValues::Any);
        }
        let mut values = BTreeSet::new();
        for item in text.split(',') {
            let (base, step) = match item.split_once('/') {
                Some((base, step)) => (base, Some(self.step(item, step)?)),
                None => (item, None),
            };
            let (low, high) = if base == "*" {
                (self.min, self.max)
            } else if let Some((low, high)) = base.split_once('-') {
                let (low, high) = (self.value(low)?, self.value(high)?);
                if low > high {
                    return Err(format!(
                        "{} range `{base}` runs backwards; write it low-high",
                        self.name
                    ));
                }
                (low, high)
            } else {
                let value = self.value(base)?;
                if let Some(step) = step {
                    return Err(format!(
                        "{} `{item}`: a step needs a range, e.g. `{base}-{}/{step}` or `*/{step}`",
                        self.name, self.max
                    ));
                }
                (value, value)
            };
            values.extend((low..=high).step_by(step.unwrap_or(1) as usize));
        }
        if self.seven_is_sunday && values.remove(&7) {
            values.insert(0);
        }
        Ok(FieldValues::Listed(values))
    }

    fn step(&self, item: &str, step: &str) -> Result<u32, String> {
        match step.parse::<u32>() {
            Ok(step) if step >= 1 => Ok(step),
            _ => Err(format!(
                "{} `{item}`: the step after `/` must be a whole number of 1 or more",
                self.name
            )),
        }
    }

    fn value(&self, token: &str) -> Result<u32, String> {
        let value = if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            token.parse::<u32>().ok()
        } else {
            self.names
                .iter()
                .position(|name| name.eq_ignore_ascii_case(token))
                .map(|index| self.first_named + index as u32)
        };
        match value {
            Some(value) if (self.min..=self.max).contains(&value) => Ok(value),
            _ => Err(self.not_a_value(token)),
        }
    }

    fn not_a_value(&self, token: &str) -> String {
        if token.is_empty() {
            return format!(
                "the {} field has an empty value around `,` or `-` (e.g. `{}`)",
                self.name, self.example
            );
        }
        let names = match self.names {
            [] => String::new(),
            names => format!(" or {}-{}", names[0], names[names.len() - 1]),
        };
        let sunday = if self.seven_is_sunday {
            ", 0 and 7 are Sunday"
        } else {
            ""
        };
        let quartz = if token.contains(['?', '#', 'L', 'W', 'l', 'w']) {
            "; Quartz's `?`, `L`, `W` and `#` are not crontab syntax"
        } else {
            ""
        };
        format!(
            "`{token}` is not a valid {} ({}-{}{names}{sunday}, e.g. `{}`){quartz}",
            self.name, self.min, self.max, self.example
        )
    }
}

/// Refuses a day of month that no selected month has when the weekday cannot fire instead
/// (`0 0 30 2 *`): such a schedule would silently never fire.
fn check_day_of_month_occurs(
    days: &FieldValues,
    months: &FieldValues,
    weekdays: &FieldValues,
) -> Result<(), String> {
    let FieldValues::Listed(day_values) = days else {
        return Ok(());
    };
    if *weekdays != FieldValues::Any {
        return Ok(());
    }
    // February counts 29 days: a leap year has them.
    const LONGEST: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let first_day = day_values.first().copied().unwrap_or(u32::MAX);
    if (1..=12).any(|month| months.contains(month) && first_day <= LONGEST[month as usize - 1]) {
        Ok(())
    } else {
        Err(format!(
            "day-of-month {} never occurs in month {}, so the schedule would never fire",
            days.to_pattern(),
            months.to_pattern()
        ))
    }
}

fn whole_seconds(wall: NaiveDateTime) -> NaiveDateTime {
    wall.with_nanosecond(0).unwrap_or(wall)
}

/// The first instant at which `tz`'s clock shows `wall` or a later time: `wall` itself when it
/// occurs once, its first occurrence when the clock turns back over it, and the end of the jump
/// when the clock skips it.
fn first_instant_showing(wall: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(at) => Some(at.to_utc()),
        LocalResult::Ambiguous(first, second) => Some(first.min(second).to_utc()),
        LocalResult::None => end_of_jump(wall, tz),
    }
}

/// The instant a forward jump over `skipped` lands on.
fn end_of_jump(skipped: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    // Jumps are at most a day (Samoa skipped 2011-12-30); minutes find the first wall-clock
    // minute after it, then the instant is narrowed to the second, for zones whose historic
    // offsets are not whole minutes.
    let first_after = (1..=2 * 24 * 60).find_map(|minutes| {
        match tz.from_local_datetime(&(skipped + TimeDelta::minutes(minutes))) {
            LocalResult::Single(at) => Some(at.to_utc()),
            LocalResult::Ambiguous(first, second) => Some(first.min(second).to_utc()),
            LocalResult::None => None,
        }
    })?;
    Some(offset_change_in(
        first_after - TimeDelta::minutes(1),
        first_after,
        tz,
    ))
}

/// The highest wall-clock time `tz`'s clock has shown at or before `now`: `now`'s own, except
/// during the second pass over a repeated range, when the clock already read higher just before
/// it turned back.
fn highest_wall_clock_by(now: DateTime<Utc>, tz: Tz) -> NaiveDateTime {
    let now = now.with_nanosecond(0).unwrap_or(now);
    let wall = now.with_timezone(&tz).naive_local();
    match tz.from_local_datetime(&wall) {
        LocalResult::Ambiguous(first, second) if first.min(second).to_utc() < now => {
            let turned_back = offset_change_in(first.min(second).to_utc(), now, tz);
            (turned_back - TimeDelta::seconds(1))
                .with_timezone(&tz)
                .naive_local()
        }
        _ => wall,
    }
}

/// The first instant in `(before, at]` with `at`'s UTC offset, to the second; both are whole
/// seconds, `before` has another offset, and the offset changes once in between.
fn offset_change_in(before: DateTime<Utc>, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    use chrono::Offset;
    let offset_at =
        |instant: DateTime<Utc>| tz.offset_from_utc_datetime(&instant.naive_utc()).fix();
    let target = offset_at(at);
    let (mut low, mut high) = (before, at);
    while high - low > TimeDelta::seconds(1) {
        let middle = low + TimeDelta::seconds((high - low).num_seconds() / 2);
        if offset_at(middle) == target {
            high = middle;
        } else {
            low = middle;
        }
    }
    high
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Berlin;
    use proptest::prelude::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
            .to_utc()
    }

    fn schedule(expr: &str) -> Schedule {
        Schedule::parse(expr).unwrap_or_else(|e| panic!("`{expr}`: {e}"))
    }

    /// expression × zone × instant → the next firing. 2026-11-27 is a Friday.
    #[test]
    fn next_firing_table() {
        let utc = Tz::UTC;
        #[rustfmt::skip]
        let table: &[(&str, Tz, &str, &str, &str)] = &[
            // Weekdays: 1-5 is Monday to Friday, 0 and 7 are both Sunday.
            ("0 12 * * 1-5", utc, "2026-11-26T12:00:00Z", "2026-11-27T12:00:00Z", "Thursday noon → Friday noon"),
            ("0 12 * * 1-5", utc, "2026-11-27T12:00:00Z", "2026-11-30T12:00:00Z", "Friday noon → Monday, not the weekend"),
            ("0 12 * * 1-5", utc, "2026-11-28T13:00:00Z", "2026-11-30T12:00:00Z", "Saturday → Monday, not Sunday"),
            ("0 12 * * 0", utc, "2026-11-25T00:00:00Z", "2026-11-29T12:00:00Z", "0 is Sunday"),
            ("0 12 * * 7", utc, "2026-11-25T00:00:00Z", "2026-11-29T12:00:00Z", "7 is Sunday"),
            ("0 12 * * 5-7", utc, "2026-11-28T13:00:00Z", "2026-11-29T12:00:00Z", "a range up to 7 ends on Sunday"),
            ("0 12 * * 6", utc, "2026-11-25T00:00:00Z", "2026-11-28T12:00:00Z", "6 is Saturday"),
            // Names, in any case.
            ("0 9 * * mon-fri", utc, "2026-11-28T00:00:00Z", "2026-11-30T09:00:00Z", "mon-fri skips the weekend"),
            ("0 9 * * MON-FRI", utc, "2026-11-27T09:00:00Z", "2026-11-30T09:00:00Z", "names in capitals"),
            ("0 9 * * sun", utc, "2026-11-25T00:00:00Z", "2026-11-29T09:00:00Z", "sun"),
            ("0 9 * * sat,sun", utc, "2026-11-25T00:00:00Z", "2026-11-28T09:00:00Z", "a list of names"),
            ("0 0 1 jan *", utc, "2026-11-25T00:00:00Z", "2027-01-01T00:00:00Z", "jan"),
            ("0 0 1 Feb-Apr *", utc, "2026-11-25T00:00:00Z", "2027-02-01T00:00:00Z", "a range of month names"),
            // Day of month and day of week: either, when both are restricted; else both.
            ("0 0 13 * 5", utc, "2026-11-25T00:00:00Z", "2026-11-27T00:00:00Z", "any Friday fires..."),
            ("0 0 13 * 5", utc, "2026-12-12T00:00:00Z", "2026-12-13T00:00:00Z", "...and so does the 13th, a Sunday"),
            ("0 0 13 * fri", utc, "2026-12-12T00:00:00Z", "2026-12-13T00:00:00Z", "the same with a name"),
            ("0 0 13 * *", utc, "2026-11-25T00:00:00Z", "2026-12-13T00:00:00Z", "day of week *: the 13th only"),
            ("0 0 * * 5", utc, "2026-11-25T00:00:00Z", "2026-11-27T00:00:00Z", "day of month *: Fridays only"),
            ("0 0 */2 * 1", utc, "2026-11-25T00:00:00Z", "2026-12-07T00:00:00Z", "*/2 counts as a star (Vixie): odd days that are Mondays"),
            ("0 0 13 * */2", utc, "2026-11-25T00:00:00Z", "2026-12-13T00:00:00Z", "a starred weekday field: the 13th on an even weekday (Sunday)"),
            ("0 0 29 2 *", utc, "2026-11-25T00:00:00Z", "2028-02-29T00:00:00Z", "29 February waits for a leap year"),
            // Ranges, steps, lists.
            ("*/15 * * * *", utc, "2026-11-25T12:07:00Z", "2026-11-25T12:15:00Z", "*/15"),
            ("1-30/2 * * * *", utc, "2026-11-25T12:28:00Z", "2026-11-25T12:29:00Z", "1-30/2 takes odd minutes..."),
            ("1-30/2 * * * *", utc, "2026-11-25T12:29:00Z", "2026-11-25T13:01:00Z", "...up to 29"),
            ("0,30 9-17/4 * * *", utc, "2026-11-25T09:30:00Z", "2026-11-25T13:00:00Z", "9, 13, 17"),
            ("0 12 * * 1-5", utc, "2026-11-27T11:59:59.500Z", "2026-11-27T12:00:00Z", "sub-second input"),
            ("0 12 * * 1-5", utc, "2026-11-27T12:00:00.001Z", "2026-11-30T12:00:00Z", "strictly after"),
            ("@daily", utc, "2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z", "a nickname"),
            // Zones: noon in Berlin is 11:00 UTC in winter, 10:00 in summer.
            ("0 12 * * 1-5", Berlin, "2026-11-27T10:00:00Z", "2026-11-27T11:00:00Z", "Berlin in winter"),
            ("0 12 * * 1-5", Berlin, "2026-07-01T00:00:00Z", "2026-07-01T10:00:00Z", "Berlin in summer"),
            ("0 12 * * 1-5", New_York, "2026-11-27T12:00:00Z", "2026-11-27T17:00:00Z", "New York in winter"),
            // Europe/Berlin skips 02:00-03:00 on 2026-03-29: those times fire once, at 03:00 (01:00 UTC).
            ("30 2 * * *", Berlin, "2026-03-28T23:00:00Z", "2026-03-29T01:00:00Z", "skipped 02:30 fires at the jump"),
            ("30 2 * * *", Berlin, "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z", "once only"),
            ("30 2,3 * * *", Berlin, "2026-03-28T23:00:00Z", "2026-03-29T01:00:00Z", "skipped 02:30 of a two-hour list..."),
            ("30 2,3 * * *", Berlin, "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z", "...then 03:30"),
            ("*/15 * * * *", Berlin, "2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z", "01:45 CET, then 03:00 CEST"),
            ("*/15 * * * *", Berlin, "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z", "02:xx and 03:00 fire once together"),
            ("0 3 * * *", Berlin, "2026-03-28T23:00:00Z", "2026-03-29T01:00:00Z", "03:00 itself"),
            // Europe/Berlin repeats 02:00-03:00 on 2026-10-25 (00:00-01:00 UTC in CEST, 01:00-02:00 in CET).
            ("30 2 * * *", Berlin, "2026-10-24T23:00:00Z", "2026-10-25T00:30:00Z", "repeated 02:30 fires at its first occurrence"),
            ("30 2 * * *", Berlin, "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "and not again at 01:30 UTC"),
            ("30 2 * * *", Berlin, "2026-10-25T01:15:00Z", "2026-10-26T01:30:00Z", "asked during the second pass"),
            ("*/30 * * * *", Berlin, "2026-10-25T00:40:00Z", "2026-10-25T02:00:00Z", "nothing fires twice in the repeated hour"),
            ("*/30 * * * *", Berlin, "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z", "the second pass waits for 03:00 CET"),
            // America/New_York: skips 02:00-03:00 on 2026-03-08, repeats 01:00-02:00 on 2026-11-01.
            ("30 2 * * *", New_York, "2026-03-08T05:00:00Z", "2026-03-08T07:00:00Z", "skipped 02:30 fires at 03:00 EDT"),
            ("30 1 * * *", New_York, "2026-11-01T04:00:00Z", "2026-11-01T05:30:00Z", "repeated 01:30, first occurrence (EDT)"),
            ("30 1 * * *", New_York, "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z", "not again in EST"),
        ];
        let mut failures = Vec::new();
        for (expr, tz, after, next, why) in table {
            let got = schedule(expr).next_after(at(after), *tz);
            if got != Some(at(next)) {
                failures.push(format!(
                    "`{expr}` in {tz} after {after}: want {next}, got {got:?} ({why})"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Expression, zone, since, now, the latest firing in (since, now] if due, and why.
    type DueRow = (
        &'static str,
        Tz,
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
    );

    /// expression × zone × (since, now) → the latest firing in (since, now], i.e. due or not.
    #[test]
    fn due_table() {
        let utc = Tz::UTC;
        #[rustfmt::skip]
        let table: &[DueRow] = &[
            ("0 12 * * 1-5", utc, "2026-11-30T08:00:00Z", "2026-11-30T12:07:00Z", Some("2026-11-30T12:00:00Z"), "gc at 12:07 still sees noon"),
            ("0 12 * * 1-5", utc, "2026-11-30T08:00:00Z", "2026-11-30T12:00:00Z", Some("2026-11-30T12:00:00Z"), "gc at noon exactly"),
            ("0 12 * * 1-5", utc, "2026-11-30T08:00:00Z", "2026-11-30T11:59:59Z", None, "not yet"),
            ("0 12 * * 1-5", utc, "2026-11-27T09:00:00Z", "2026-11-30T08:00:00Z", Some("2026-11-27T12:00:00Z"), "laptop asleep through Friday noon"),
            ("0 12 * * 1-5", utc, "2026-11-27T12:30:00Z", "2026-11-30T08:00:00Z", None, "woken after Friday noon, weekend since"),
            ("0 12 * * 1-5", utc, "2026-11-30T12:00:00Z", "2026-11-30T12:07:00Z", None, "created at noon: that noon is not after it"),
            ("0 12 * * 1-5", utc, "2026-11-28T09:00:00Z", "2026-11-29T18:00:00Z", None, "no noon teardown at the weekend"),
            ("0 12 * * 1-5", utc, "2026-11-30T12:07:00Z", "2026-11-30T08:00:00Z", None, "now before since"),
            ("0 12 * * 1-5", utc, "2026-11-23T08:00:00Z", "2026-11-27T12:07:00Z", Some("2026-11-27T12:00:00Z"), "the latest of several"),
            ("0 12 * * 1-5", Berlin, "2026-11-30T08:00:00Z", "2026-11-30T11:07:00Z", Some("2026-11-30T11:00:00Z"), "noon in Berlin"),
            ("0 12 * * 1-5", Berlin, "2026-11-30T08:00:00Z", "2026-11-30T10:59:00Z", None, "11:59 in Berlin"),
            // DST in Berlin.
            ("30 2 * * *", Berlin, "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", Some("2026-03-29T01:00:00Z"), "skipped 02:30 due at the jump"),
            ("30 2 * * *", Berlin, "2026-03-29T00:00:00Z", "2026-03-29T00:59:59Z", None, "not before the jump"),
            ("30 2 * * *", Berlin, "2026-10-25T00:00:00Z", "2026-10-25T01:45:00Z", Some("2026-10-25T00:30:00Z"), "repeated 02:30 due from its first pass"),
            ("30 2 * * *", Berlin, "2026-10-25T00:31:00Z", "2026-10-25T01:45:00Z", None, "woken after the first 02:30: not due again on the second"),
            ("*/30 * * * *", Berlin, "2026-10-25T00:31:00Z", "2026-10-25T01:59:00Z", None, "the second pass fires nothing"),
            ("*/30 * * * *", Berlin, "2026-10-25T00:00:00Z", "2026-10-25T01:59:00Z", Some("2026-10-25T00:30:00Z"), "latest is 02:30 CEST"),
            ("*/30 * * * *", Berlin, "2026-10-25T00:00:00Z", "2026-10-25T01:15:00Z", Some("2026-10-25T00:30:00Z"), "at 02:15 CET, 02:30 CEST has fired"),
            ("30 2 * * *", Berlin, "2026-10-25T00:00:00Z", "2026-10-25T01:15:00Z", Some("2026-10-25T00:30:00Z"), "at 02:15 CET, 02:30 CEST has fired"),
            ("*/30 * * * *", Berlin, "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", Some("2026-10-25T02:00:00Z"), "03:00 CET"),
            // Long ago is as cheap as yesterday.
            ("*/5 * * * *", utc, "2026-08-25T00:00:00Z", "2026-11-25T12:07:30Z", Some("2026-11-25T12:05:00Z"), "created 3 months ago"),
        ];
        let mut failures = Vec::new();
        for (expr, tz, since, now, want, why) in table {
            let got = schedule(expr).last_fired_between(at(since), at(now), *tz);
            if got != want.map(at) {
                failures.push(format!(
                    "`{expr}` in {tz}, since {since}, now {now}: want {want:?}, got {got:?} ({why})"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn invalid_expressions_are_refused_with_the_reason() {
        #[rustfmt::skip]
        let table: &[(&str, &str)] = &[
            ("", "expected 5 fields, found 0"),
            ("0 12 * *", "expected 5 fields, found 4"),
            ("0 0 12 * * 1-5", "found 6; seconds and year fields are not supported"),
            ("0 12 * * 1-5 2026", "found 6"),
            ("@reboot", "`@reboot` is not a supported nickname"),
            ("60 12 * * *", "`60` is not a valid minute (0-59"),
            ("0 24 * * *", "`24` is not a valid hour (0-23"),
            ("0 12 0 * *", "`0` is not a valid day-of-month (1-31"),
            ("0 12 * 13 *", "`13` is not a valid month (1-12 or jan-dec"),
            ("0 12 * * 8", "`8` is not a valid day-of-week (0-7 or sun-sat, 0 and 7 are Sunday"),
            ("0 12 * * monday", "`monday` is not a valid day-of-week"),
            ("0 12 * * jan", "`jan` is not a valid day-of-week"),
            ("0 12 * mon *", "`mon` is not a valid month"),
            ("0 12 ? * 1", "`?` is not a valid day-of-month"),
            ("0 12 L * *", "Quartz's `?`, `L`, `W` and `#` are not crontab syntax"),
            ("0 12 15W * *", "Quartz's"),
            ("0 12 * * 5L", "Quartz's"),
            ("0 12 * * 5#2", "Quartz's"),
            ("0 12 * * 5-1", "day-of-week range `5-1` runs backwards"),
            ("*/0 * * * *", "the step after `/` must be a whole number of 1 or more"),
            ("5/15 * * * *", "a step needs a range, e.g. `5-59/15` or `*/15`"),
            ("1,,2 * * * *", "the minute field has an empty value"),
            ("-1 * * * *", "the minute field has an empty value"),
            ("0 12 * * 1-", "the day-of-week field has an empty value"),
            ("0 0 30 2 *", "day-of-month 30 never occurs in month 2"),
            ("0 0 31 4,6 *", "never occurs"),
        ];
        for (expr, want) in table {
            let error = Schedule::parse(expr).expect_err(expr);
            assert!(error.contains(want), "`{expr}`: {error}\nwant: {want}");
            assert!(
                error.contains("e.g. \"0 12 * * 1-5\""),
                "`{expr}` gives no example: {error}"
            );
        }
        // The OR rule makes these fire even though the day of month alone never would.
        for expr in ["0 0 30 2 1", "0 0 31 * *", "0 0 29 feb *"] {
            assert!(Schedule::parse(expr).is_ok(), "{expr}");
        }
    }

    #[test]
    fn expression_is_kept_as_written() {
        assert_eq!(
            schedule("  0 12 * * mon-fri ").expression(),
            "0 12 * * mon-fri"
        );
        assert_eq!(schedule("@weekly").expression(), "@weekly");
    }

    #[test]
    fn timezone_defaults_to_utc_and_names_an_unknown_zone() {
        assert_eq!(timezone(None), Ok(Tz::UTC));
        assert_eq!(timezone(Some("Europe/Berlin")), Ok(Berlin));
        let error = timezone(Some("Europe/Atlantis")).unwrap_err();
        assert!(
            error.contains("`Europe/Atlantis`") && error.contains("IANA"),
            "{error}"
        );
    }

    #[test]
    fn due_check_does_not_depend_on_how_long_ago_since_is() {
        // 26 years of every 5 minutes is 2.7 million firings; walking them would take seconds.
        let every_five = schedule("*/5 * * * *");
        let started = std::time::Instant::now();
        let fired = every_five.last_fired_between(
            at("2000-01-01T00:00:00Z"),
            at("2026-11-25T12:07:30Z"),
            Berlin,
        );
        assert_eq!(fired, Some(at("2026-11-25T12:05:00Z")));
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    /// The firings in `(from, to]` found without this module's mapping: walk UTC minutes and fire
    /// at each one every selected wall-clock minute that the clock reaches there for the first
    /// time. Exact for zones whose offsets change on whole minutes; `from` must not lie in the
    /// second pass of a repeated range.
    fn firings_by_walking(
        schedule: &Schedule,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let minute = TimeDelta::minutes(1);
        let mut highest = from.with_timezone(&tz).naive_local();
        let mut firings = Vec::new();
        let mut instant = from + minute;
        while instant <= to {
            let wall = instant.with_timezone(&tz).naive_local();
            let mut reached = highest + minute;
            let mut fires = false;
            while reached <= wall {
                fires |= schedule
                    .cron
                    .is_time_matching(&reached)
                    .expect("a valid wall clock");
                reached += minute;
            }
            if fires {
                firings.push(instant);
            }
            highest = highest.max(wall);
            instant += minute;
        }
        firings
    }

    fn zone() -> impl Strategy<Value = Tz> {
        prop_oneof![Just(Berlin), Just(New_York)]
    }

    /// Expressions that fire at least a few times a day, so a DST weekend holds several.
    fn dense_expression() -> impl Strategy<Value = String> {
        let minute = prop_oneof![
            Just("*".to_string()),
            (1u32..=30).prop_map(|n| format!("*/{n}")),
            (0u32..60).prop_map(|m| m.to_string()),
            (0u32..30, 30u32..60, 1u32..20).prop_map(|(a, b, n)| format!("{a}-{b}/{n}")),
            (0u32..30, 30u32..60).prop_map(|(a, b)| format!("{a},{b}")),
        ];
        let hour = prop_oneof![
            Just("*".to_string()),
            (0u32..24).prop_map(|h| h.to_string()),
            (0u32..4, 1u32..4).prop_map(|(a, n)| format!("{a}-23/{n}")),
            (0u32..4).prop_map(|a| format!("{a}-3")),
            Just("1,2,3".to_string()),
        ];
        let day_of_week = prop_oneof![
            Just("*".to_string()),
            Just("mon-fri".to_string()),
            Just("0,6".to_string()),
            Just("7".to_string()),
        ];
        let day_of_month = prop_oneof![Just("*".to_string()), Just("1-7".to_string())];
        (minute, hour, day_of_month, day_of_week)
            .prop_map(|(m, h, dom, dow)| format!("{m} {h} {dom} * {dow}"))
    }

    /// Expressions that fire at most a few times an hour, so a year of them stays quick.
    fn sparse_expression() -> impl Strategy<Value = String> {
        let minute = prop_oneof![
            (0u32..60).prop_map(|m| m.to_string()),
            (0u32..60, 0u32..60).prop_map(|(a, b)| format!("{a},{b}")),
            (15u32..=30).prop_map(|n| format!("*/{n}")),
        ];
        let hour = prop_oneof![
            Just("*".to_string()),
            (0u32..24).prop_map(|h| h.to_string()),
            Just("1-3".to_string()),
            Just("2".to_string()),
        ];
        let day_of_week = prop_oneof![Just("*"), Just("1-5"), Just("sun"), Just("7")];
        let month = prop_oneof![Just("*"), Just("mar,oct,nov"), Just("3-11/4")];
        (minute, hour, month, day_of_week)
            .prop_map(|(m, h, mon, dow)| format!("{m} {h} * {mon} {dow}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Across a year, `next_after` only moves forward: no instant twice, none out of order.
        #[test]
        fn next_after_is_strictly_increasing_across_a_year(expr in sparse_expression(), tz in zone()) {
            let schedule = schedule(&expr);
            let end = at("2027-01-01T00:00:00Z");
            let mut previous = at("2026-01-01T00:00:00Z");
            let mut count = 0;
            while let Some(next) = schedule.next_after(previous, tz) {
                prop_assert!(next > previous, "`{}` in {}: {} after {}", expr, tz, next, previous);
                prop_assert_eq!(next.timestamp() % 60, 0, "not a whole minute: {}", next);
                if next > end {
                    break;
                }
                previous = next;
                count += 1;
            }
            prop_assert!(count > 0, "`{}` never fired in 2026", expr);
        }

        /// Around every DST change of 2026, `next_after` and `last_fired_between` give exactly
        /// the firings of a minute-by-minute walk of the clock.
        #[test]
        fn firings_around_dst_match_a_walk_of_the_clock(
            expr in dense_expression(),
            tz in zone(),
            spring in any::<bool>(),
            since_offset in 0i64..3 * 86_400,
            second in 0i64..60,
        ) {
            let schedule = schedule(&expr);
            let change_day = match (tz == Berlin, spring) {
                (true, true) => "2026-03-29",
                (true, false) => "2026-10-25",
                (false, true) => "2026-03-08",
                (false, false) => "2026-11-01",
            };
            let start = at(&format!("{change_day}T00:00:00Z")) - TimeDelta::days(1);
            let end = start + TimeDelta::days(3);
            let walked = firings_by_walking(&schedule, tz, start, end);

            let mut iterated = Vec::new();
            let mut previous = start;
            while let Some(next) = schedule.next_after(previous, tz).filter(|next| *next <= end) {
                iterated.push(next);
                previous = next;
            }
            prop_assert_eq!(&iterated, &walked, "`{}` in {} around {}", expr, tz, change_day);

            // Every minute of the hours around the change, and a random second within it.
            let since = start + TimeDelta::seconds(since_offset);
            for minute in 0..8 * 60 {
                let now = start + TimeDelta::days(1) + TimeDelta::seconds(minute * 60 + second);
                let latest = walked.iter().rev().find(|t| **t > since && **t <= now).copied();
                prop_assert_eq!(
                    schedule.last_fired_between(since, now, tz), latest,
                    "`{}` in {}, since {}, now {}", expr, tz, since, now
                );
            }
        }
    }
}
