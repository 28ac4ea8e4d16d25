//! Event-time windows. A window is what a batch run writes as one file: one partition
//! (day) of one report — the local day for hour and day buckets, the week's Monday or
//! the month's first day for week and month buckets. The watermark is the latest event
//! time seen minus `allowed_lateness`; every partition that ends before the watermark's
//! own partition is closed: written, then dropped from the open state. A line whose
//! partition is closed already is late: it is counted (`lines_late`) and left out of
//! that report.

use logveil_parse::time::MICROS_PER_SECOND;
use logveil_report::calendar::{month_start, week_start};
use logveil_report::{Bucket, Calendar, ReportSpec, ReportState};

const MICROS_PER_HOUR: i64 = 3600 * MICROS_PER_SECOND;

/// The partition an event at `utc_micros` is written under: the same rule as
/// `ReportState::observe` (an hourly cell goes with the day of its hour's start).
pub fn partition_of(bucket: Bucket, calendar: &Calendar, utc_micros: i64) -> i32 {
    match bucket {
        Bucket::Hour => calendar.day_of(utc_micros.div_euclid(MICROS_PER_HOUR) * MICROS_PER_HOUR),
        Bucket::Day => calendar.day_of(utc_micros),
        Bucket::Week => week_start(calendar.day_of(utc_micros)),
        Bucket::Month => month_start(calendar.day_of(utc_micros)),
    }
}

/// The first partition still open at `watermark` (UTC microseconds): every partition
/// before it is closed. `i32::MIN` before any event.
pub fn floor(bucket: Bucket, calendar: &Calendar, watermark: Option<i64>) -> i32 {
    watermark.map_or(i32::MIN, |w| partition_of(bucket, calendar, w))
}

/// Splits the partitions before `floor` off `state`, as a state of their own (with the
/// report's running join counts). `None` when there are none.
pub fn take_before(spec: &ReportSpec, state: &mut ReportState, floor: i32) -> Option<ReportState> {
    if state
        .partitions
        .first_key_value()
        .is_none_or(|(day, _)| *day >= floor)
    {
        return None;
    }
    let mut closed = ReportState::new(spec);
    let open = state.partitions.split_off(&floor);
    closed.partitions = std::mem::replace(&mut state.partitions, open);
    let (before, after) = std::mem::take(&mut state.cells)
        .into_iter()
        .partition(|(key, _)| key.partition_day < floor);
    closed.cells = before;
    state.cells = after;
    closed.joins.clone_from(&state.joins);
    Some(closed)
}

/// `YYYY-MM-DD` of each open partition.
pub fn open_days(state: &ReportState) -> Vec<String> {
    state
        .partitions
        .keys()
        .map(|d| logveil_report::calendar::format_day(*d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use logveil_parse::time::{MICROS_PER_DAY, days_from_civil};

    #[test]
    fn partitions_follow_the_bucket_and_the_calendar() {
        let day = days_from_civil(2026, 11, 4); // a Wednesday
        let t =
            i64::from(day) * MICROS_PER_DAY + 23 * MICROS_PER_HOUR + 59 * 60 * MICROS_PER_SECOND;
        let utc = Calendar::Utc;
        assert_eq!(partition_of(Bucket::Hour, &utc, t), day);
        assert_eq!(partition_of(Bucket::Day, &utc, t), day);
        assert_eq!(
            partition_of(Bucket::Week, &utc, t),
            days_from_civil(2026, 11, 2)
        );
        assert_eq!(
            partition_of(Bucket::Month, &utc, t),
            days_from_civil(2026, 11, 1)
        );
        let tokyo = Calendar::from_name("+09:00").unwrap();
        assert_eq!(partition_of(Bucket::Day, &tokyo, t), day + 1);
        // +05:30: local 00:15 is in the hour that started at local 23:30 the day before.
        let india = Calendar::from_name("+05:30").unwrap();
        let local_0015 = i64::from(day) * MICROS_PER_DAY - (5 * 60 + 15) * 60 * MICROS_PER_SECOND;
        assert_eq!(partition_of(Bucket::Day, &india, local_0015), day);
        assert_eq!(partition_of(Bucket::Hour, &india, local_0015), day - 1);
        assert_eq!(floor(Bucket::Day, &utc, None), i32::MIN);
    }
}
