//! Cron expressions for job schedules: five fields (minute hour day-of-month month
//! day-of-week) or six with seconds first, lists, ranges, steps, month and day names, and the
//! `@daily`-style aliases; evaluated in a time zone. Day-of-month and day-of-week combine as in
//! Vixie cron: when both are restricted, either matching is enough.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

#[derive(Debug, Clone)]
pub struct Schedule {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Both day fields restricted: a day matches when either does.
    either_day: bool,
    zone: TimeZone,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    /// Parses `expr`, evaluated in `zone`; the error says which field is wrong and why.
    pub fn parse(expr: &str, zone: TimeZone) -> Result<Self, String> {
        let expr = match expr.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            e if e.starts_with('@') => return Err(format!("unknown schedule alias '{e}'")),
            e => e,
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                "'{expr}' has {n} fields; a schedule has 5 (minute hour day month weekday) or 6 (seconds first)"
            ))
            }
        };
        let weekdays = field(rest[4], "weekday", 0, 7, &WEEKDAYS)?;
        let schedule = Self {
            seconds: field(seconds, "second", 0, 59, &[])?,
            minutes: field(rest[0], "minute", 0, 59, &[])?,
            hours: field(rest[1], "hour", 0, 23, &[])?,
            days: field(rest[2], "day of month", 1, 31, &[])?,
            months: field(rest[3], "month", 1, 12, &MONTHS)?,
            // 7 is Sunday too.
            weekdays: (weekdays | (weekdays >> 7)) & 0x7f,
            either_day: !rest[2].starts_with('*') && !rest[4].starts_with('*'),
            zone,
        };
        if schedule.next_after(Timestamp::now()).is_none() {
            return Err(format!("'{expr}' never comes (no such date)"));
        }
        Ok(schedule)
    }

    /// The first moment of the schedule strictly after `after`, or None when there is none
    /// within five years (a day that never comes, such as 30 February).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = Timestamp::from_second(after.as_second().checked_add(1)?).ok()?;
        let mut t = start.to_zoned(self.zone.clone()).datetime();
        let last_year = t.year() + 5;
        while t.year() <= last_year {
            t = if !bit(self.months, t.month()) {
                first_of_next_month(t.date())?
            } else if !self.day_matches(t.date()) {
                t.date().tomorrow().ok()?.to_datetime(midnight())
            } else if !bit(self.hours, t.hour()) {
                t.date()
                    .at(t.hour(), 0, 0, 0)
                    .checked_add(jiff::SignedDuration::from_hours(1))
                    .ok()?
            } else if !bit(self.minutes, t.minute()) {
                t.date()
                    .at(t.hour(), t.minute(), 0, 0)
                    .checked_add(jiff::SignedDuration::from_mins(1))
                    .ok()?
            } else if !bit(self.seconds, t.second()) {
                t.checked_add(jiff::SignedDuration::from_secs(1)).ok()?
            } else {
                // A time skipped by a clock change runs just after it; in a repeated hour the
                // first pass counts and the second is passed over.
                let at = t.to_zoned(self.zone.clone()).ok()?.timestamp();
                if at > after {
                    return Some(at);
                }
                t.checked_add(jiff::SignedDuration::from_secs(1)).ok()?
            };
        }
        None
    }

    /// The newest moment of the schedule at or before `now` that comes after `since`: the slot
    /// a level-triggered scheduler owes a run for (one, however many were missed).
    pub fn due_slot(&self, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let mut due = None;
        let mut cursor = since;
        // A dense schedule after a long stop has many slots; past this many, look only at the
        // last two days, where a dense schedule surely has its newest one.
        for _ in 0..100_000 {
            match self.next_after(cursor) {
                Some(t) if t <= now => {
                    due = Some(t);
                    cursor = t;
                }
                _ => return due,
            }
        }
        let recent = now.checked_sub(jiff::SignedDuration::from_hours(48)).ok()?;
        self.due_slot(recent.max(cursor), now).or(due)
    }

    /// The schedule as systemd `OnCalendar=` values (without a time zone): one, or two when
    /// both day fields are restricted (systemd requires both to match, cron either).
    pub fn systemd_calendars(&self) -> Vec<String> {
        let at = format!(
            "{}:{}:{}",
            values(self.hours, 0, 23),
            values(self.minutes, 0, 59),
            values(self.seconds, 0, 59)
        );
        let months = values(self.months, 1, 12);
        let date = |days: &str| format!("*-{months}-{days} {at}");
        let weekdays = if self.weekdays == 0x7f {
            String::new()
        } else {
            let names = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
            let on: Vec<&str> = (0..7)
                .filter(|d| bit(self.weekdays, *d))
                .map(|d| names[d as usize])
                .collect();
            format!("{} ", on.join(","))
        };
        let days = values(self.days, 1, 31);
        if self.either_day {
            vec![date(&days), format!("{weekdays}{}", date("*"))]
        } else {
            vec![format!("{weekdays}{}", date(&days))]
        }
    }

    /// Whether the schedule fires only at second 0 (cron has no seconds).
    pub fn whole_minutes(&self) -> bool {
        self.seconds == 1
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = bit(self.days, d.day());
        let dow = bit(self.weekdays, d.weekday().to_sunday_zero_offset());
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }
}

fn midnight() -> jiff::civil::Time {
    jiff::civil::Time::midnight()
}

fn first_of_next_month(d: Date) -> Option<DateTime> {
    let first = d
        .first_of_month()
        .checked_add(jiff::Span::new().months(1))
        .ok()?;
    Some(first.to_datetime(midnight()))
}

/// A field's values as `*` (all of `min..=max`) or a comma list.
fn values(mask: u64, min: u8, max: u8) -> String {
    let on: Vec<String> = (min..=max)
        .filter(|v| bit(mask, *v as i8))
        .map(|v| v.to_string())
        .collect();
    if on.len() == usize::from(max - min + 1) {
        "*".into()
    } else {
        on.join(",")
    }
}

fn bit(mask: u64, n: i8) -> bool {
    n >= 0 && mask & (1 << n) != 0
}

/// One field: `*`, `N`, `A-B`, any of those with `/STEP`, comma-separated; `names` spell the
/// values from `min` on.
fn field(text: &str, what: &str, min: u8, max: u8, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u8, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(min + i as u8);
        }
        match s.parse::<u8>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(format!("{what} '{s}' is not a number from {min} to {max}")),
        }
    };
    let mut mask = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => match s.parse::<u8>() {
                Ok(step) if step > 0 => (r, step),
                _ => return Err(format!("{what} step '{s}' is not a positive number")),
            },
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `5/15`: from 5 to the end, every 15.
                None if step > 1 => (value(r)?, max),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if lo > hi {
            return Err(format!("{what} range '{range}' runs backwards"));
        }
        for v in (lo..=hi).step_by(step.into()) {
            mask |= 1 << v;
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str, zone: &str) -> Timestamp {
        let tz = TimeZone::get(zone).expect("zone");
        s.parse::<DateTime>()
            .expect("time")
            .to_zoned(tz)
            .expect("zoned")
            .timestamp()
    }

    fn next(expr: &str, zone: &str, after: &str) -> String {
        let tz = TimeZone::get(zone).expect("zone");
        let s = Schedule::parse(expr, tz.clone()).expect("parses");
        let t = s.next_after(at(after, zone)).expect("comes");
        t.to_zoned(tz).datetime().to_string()
    }

    #[test]
    fn fields_steps_names_and_aliases() {
        assert_eq!(
            next("*/15 * * * *", "UTC", "2026-01-01T10:07"),
            "2026-01-01T10:15:00"
        );
        assert_eq!(
            next("0 2 * * *", "UTC", "2026-01-01T02:00"),
            "2026-01-02T02:00:00"
        );
        assert_eq!(
            next("30 4 1,15 * *", "UTC", "2026-01-02T00:00"),
            "2026-01-15T04:30:00"
        );
        assert_eq!(
            next("0 0 * * mon-fri", "UTC", "2026-01-02T12:00"),
            "2026-01-05T00:00:00"
        );
        assert_eq!(
            next("0 0 * * 7", "UTC", "2026-01-02T12:00"),
            "2026-01-04T00:00:00"
        );
        assert_eq!(
            next("0 0 1 jun *", "UTC", "2026-07-01T00:00"),
            "2027-06-01T00:00:00"
        );
        assert_eq!(
            next("*/5 * * * * *", "UTC", "2026-01-01T00:00:03"),
            "2026-01-01T00:00:05"
        );
        assert_eq!(
            next("@monthly", "UTC", "2026-01-31T10:00"),
            "2026-02-01T00:00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "UTC", "2026-03-01T00:00"),
            "2028-02-29T00:00:00"
        );
        // Both day fields restricted: the 13th or any Friday.
        assert_eq!(
            next("0 0 13 * fri", "UTC", "2026-02-01T00:00"),
            "2026-02-06T00:00:00"
        );
    }

    #[test]
    fn time_zones_and_clock_changes() {
        let berlin = "Europe/Berlin";
        assert_eq!(
            next("0 2 * * *", berlin, "2026-06-01T03:00"),
            "2026-06-02T02:00:00"
        );
        // 2026-03-29 02:30 does not exist in Berlin: it runs as the clocks go forward.
        assert_eq!(
            next("30 2 * * *", berlin, "2026-03-29T00:00"),
            "2026-03-29T03:30:00"
        );
        // 2026-10-25 02:30 happens twice; it runs once.
        let tz = TimeZone::get(berlin).expect("zone");
        let s = Schedule::parse("30 2 * * *", tz).expect("parses");
        let first = s.next_after(at("2026-10-25T00:00", berlin)).expect("comes");
        let again = s.next_after(first).expect("comes");
        assert_eq!(again.as_second() - first.as_second(), 86400 + 3600);
    }

    #[test]
    fn the_due_slot_is_the_newest_missed_one() {
        let s = Schedule::parse("0 * * * *", TimeZone::UTC).expect("parses");
        let since = at("2026-01-01T00:00", "UTC");
        assert_eq!(s.due_slot(since, at("2026-01-01T00:59", "UTC")), None);
        let due = s.due_slot(since, at("2026-01-03T05:30", "UTC"));
        assert_eq!(
            due,
            Some(at("2026-01-03T05:00", "UTC")),
            "one run for 53 missed slots"
        );
        let dense = Schedule::parse("* * * * * *", TimeZone::UTC).expect("parses");
        let now = at("2026-03-01T00:00:30", "UTC");
        assert_eq!(
            dense.due_slot(since, now),
            Some(now),
            "after 5 million slots"
        );
    }

    #[test]
    fn errors_say_which_field() {
        let e = |x: &str| Schedule::parse(x, TimeZone::UTC).expect_err(x);
        assert!(
            e("61 * * * *").contains("minute '61'"),
            "{}",
            e("61 * * * *")
        );
        assert!(e("* * * *").contains("4 fields"));
        assert!(e("* * * foo *").contains("month 'foo'"));
        assert!(e("*/0 * * * *").contains("step"));
        assert!(e("5-1 * * * *").contains("backwards"));
        assert!(e("0 0 30 2 *").contains("never"));
        assert!(e("@sometimes").contains("alias"));
    }
}
