use super::*;
use chrono::Offset;

fn zone(name: &str) -> Tz {
    name.parse().unwrap()
}

fn hours(offset: FixedOffset) -> i32 {
    offset.local_minus_utc() / 3600
}

fn offset_at(tz: &Tz, rfc3339: &str) -> i32 {
    let utc = chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .naive_utc();
    hours(tz.offset_from_utc_datetime(&utc).fix())
}

#[test]
fn a_zone_follows_its_daylight_saving_changes() {
    let new_york = zone("America/New_York");
    // 2026-03-08: clocks go forward at 02:00 EST (07:00 UTC).
    assert_eq!(offset_at(&new_york, "2026-03-08T06:59:59Z"), -5);
    assert_eq!(offset_at(&new_york, "2026-03-08T07:00:00Z"), -4);
    assert_eq!(offset_at(&new_york, "2026-07-01T12:00:00Z"), -4);
    assert_eq!(offset_at(&zone("Europe/Berlin"), "2026-01-15T12:00:00Z"), 1);
    let kolkata = zone("Asia/Kolkata").timestamp_nanos(0).offset().fix();
    assert_eq!(kolkata.local_minus_utc(), 5 * 3600 + 1800);
    assert_eq!(offset_at(&zone("Etc/GMT+5"), "2026-01-15T12:00:00Z"), -5);
}

#[test]
fn times_after_the_last_listed_transition_follow_the_zone_rule() {
    let new_york = zone("America/New_York");
    assert_eq!(offset_at(&new_york, "2100-07-01T12:00:00Z"), -4);
    assert_eq!(offset_at(&new_york, "2100-12-01T12:00:00Z"), -5);
}

#[test]
fn every_rego_time_value_has_an_offset() {
    let tz = zone("America/New_York");
    for ns in [i64::MIN, -1, 0, 1, i64::MAX] {
        let date = tz.timestamp_nanos(ns);
        assert_eq!(date.timestamp_nanos_opt(), Some(ns));
    }
    // chrono's own range reaches further; there the offset is the range's
    // first or last (2262-04-11 is in daylight saving time in New York).
    let year = |y| {
        NaiveDate::from_ymd_opt(y, 1, 1)
            .unwrap()
            .and_time(chrono::NaiveTime::MIN)
    };
    assert_eq!(hours(tz.offset_from_utc_datetime(&year(200_000))), -4);
    // 1677, before the first transition: New York's local mean time, -4:56:02.
    let first = tz.offset_from_utc_datetime(&year(-200_000));
    assert_eq!(first.local_minus_utc(), -(4 * 3600 + 56 * 60 + 2));
}

#[test]
fn local_times_in_a_gap_have_no_offset_and_in_an_overlap_two() {
    let new_york = zone("America/New_York");
    let local = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    assert_eq!(
        new_york.offset_from_local_datetime(&local("2026-03-08 02:30")),
        MappedLocalTime::None
    );
    let overlap = new_york.offset_from_local_datetime(&local("2026-11-01 01:30"));
    assert_eq!(overlap.map(hours), MappedLocalTime::Ambiguous(-4, -5));
    let single = new_york.offset_from_local_datetime(&local("2026-11-01 03:30"));
    assert_eq!(single.map(hours), MappedLocalTime::Single(-5));
    let date = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
    assert_eq!(
        new_york.offset_from_local_date(&date).map(hours),
        MappedLocalTime::Single(-4)
    );
}

#[test]
fn a_fixed_offset_stays_fixed() {
    let offset = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    let tz = Tz::from_offset(&offset);
    assert_eq!(tz.timestamp_nanos(0).offset().fix(), offset);
    let local = NaiveDate::from_ymd_opt(2026, 3, 8)
        .unwrap()
        .and_hms_opt(2, 30, 0)
        .unwrap();
    assert_eq!(
        tz.offset_from_local_datetime(&local),
        MappedLocalTime::Single(offset)
    );
}

#[test]
fn names_that_could_leave_the_database_are_refused_before_any_file_is_read() {
    for name in [
        "",
        "/etc/passwd",
        "../../etc/passwd",
        "Europe/../../../etc/passwd",
        "Europe//Berlin",
        "Europe/Berlin/",
        "./UTC",
        "Europe/Berlin\0",
        "Europe\\Berlin",
        "Europe/Berlin ",
        &"A".repeat(65),
    ] {
        let err = name.parse::<Tz>().unwrap_err();
        assert!(err.to_string().contains("a zone name"), "{name:?}: {err}");
    }
}

#[test]
fn a_name_not_in_the_database_is_an_error_naming_it() {
    let err = "Europe/Atlantis".parse::<Tz>().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("'Europe/Atlantis' is not a time zone"),
        "{err}"
    );
    assert!(err.to_string().contains("no such zone"), "{err}");
    // A directory of the database is not a zone.
    let err = "Europe".parse::<Tz>().unwrap_err();
    assert!(err.to_string().contains("not a zone file"), "{err}");
}

#[test]
fn a_missing_database_refuses_every_name() {
    let empty = tempfile::tempdir().unwrap();
    let err = read_zone_in(&[empty.path().to_path_buf()], "America/New_York").unwrap_err();
    assert!(err.contains("no such zone"), "{err}");
}

#[test]
fn a_file_that_is_not_a_zone_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Garbage"), b"TZif2 but not really").unwrap();
    std::fs::write(dir.path().join("Huge"), vec![0u8; 300 * 1024]).unwrap();
    let fifo = dir.path().join("Fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let dirs = [dir.path().to_path_buf()];
    for name in ["Garbage", "Huge", "Fifo"] {
        let err = read_zone_in(&dirs, name).unwrap_err();
        assert!(err.contains("not a zone file"), "{name}: {err}");
    }
}

#[test]
fn a_zone_file_is_found_in_the_first_directory_that_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let system = Path::new("/usr/share/zoneinfo/Asia/Tokyo");
    std::fs::write(dir.path().join("Home"), std::fs::read(system).unwrap()).unwrap();
    let dirs = [
        tempfile::tempdir().unwrap().path().to_path_buf(),
        dir.path().to_path_buf(),
    ];
    let tokyo = Tz(Kind::Named(Arc::new(read_zone_in(&dirs, "Home").unwrap())));
    assert_eq!(offset_at(&tokyo, "2026-07-01T00:00:00Z"), 9);
}
