//! chrono-tz's `Tz` for the Rego `time.*` builtins, read at run time from the
//! system's time-zone database instead of compiled into the binary.
//!
//! Why (docs/contracts.md, "Time zones"): chrono-tz compiles the whole IANA
//! database in as tables of pointers, one relocated entry per transition; in
//! vedette's core that was 1.9 MB of a 13.1 MB extension. The system's
//! database is what Go's `time.LoadLocation` (and so OPA) and the C library
//! read: the operating system keeps it current, and each zone file carries the
//! rule for times after its last listed transition.
//!
//! regorus uses exactly two things of chrono-tz: `name.parse::<Tz>()` and the
//! [`chrono::TimeZone`] impl (`timestamp_nanos(ns).fixed_offset()`). This
//! crate provides those. A name that is not a zone of the database, or a
//! database that is missing, is a parse error, and the policy engine denies
//! (an evaluation error always denies).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chrono::{FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, TimeZone};
use tz::timezone::TransitionRule;

/// Where zone files are looked for when `TZDIR` does not name a directory: the
/// usual places, the most common first.
const ZONE_DIRS: &[&str] = &[
    "/usr/share/zoneinfo",
    "/usr/lib/zoneinfo",
    "/usr/share/lib/zoneinfo",
    "/etc/zoneinfo",
];
/// The longest IANA name has 32 characters.
const MAX_NAME_LEN: usize = 64;
/// Zone files are a few KiB; anything larger is not one.
const MAX_FILE_BYTES: u64 = 256 * 1024;
/// Zones kept after their first read. Only zones the database holds are kept,
/// so this covers all of it (about 600 names) with room to spare, and a policy
/// that walks every zone does not read files on each call; past this many, a
/// zone is read again on every use rather than memory growing.
const MAX_CACHED: usize = 1024;
/// The Unix seconds a Rego time value (`i64` nanoseconds) can reach: every
/// zone is checked to give an offset across this range before it is used.
const FIRST_SECOND: i64 = i64::MIN / 1_000_000_000 - 1;
const LAST_SECOND: i64 = i64::MAX / 1_000_000_000;

/// A time zone: one of the system database's, or a fixed offset (what chrono
/// rebuilds a zone from when it only has the offset).
#[derive(Clone, Debug)]
pub struct Tz(Kind);

#[derive(Clone, Debug)]
enum Kind {
    Named(Arc<tz::TimeZone>),
    Fixed(FixedOffset),
}

/// Why a name is not a time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    name: String,
    why: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' is not a time zone: {}", self.name, self.why)
    }
}

impl std::error::Error for ParseError {}

impl FromStr for Tz {
    type Err = ParseError;

    fn from_str(name: &str) -> Result<Self, ParseError> {
        let fail = |why: String| ParseError {
            name: name.chars().take(MAX_NAME_LEN).collect(),
            why,
        };
        check_name(name).map_err(|why| fail(why.to_owned()))?;
        load(name).map(|zone| Tz(Kind::Named(zone))).map_err(fail)
    }
}

/// A name is a relative path below the database: letters, digits, `_`, `-`
/// and `+` between single slashes. Nothing else reaches the file system, so
/// no name can leave the database's directory.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err("a zone name has 1 to 64 characters");
    }
    let plain = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
    };
    if name.split('/').all(plain) {
        Ok(())
    } else {
        Err("a zone name is letters, digits, '_', '-' and '+' between single '/'")
    }
}

fn cache() -> MutexGuard<'static, HashMap<Box<str>, Arc<tz::TimeZone>>> {
    static CACHE: OnceLock<Mutex<HashMap<Box<str>, Arc<tz::TimeZone>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    // The map only ever holds complete, checked zones: a panic elsewhere while
    // it was locked leaves nothing half-made in it.
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn load(name: &str) -> Result<Arc<tz::TimeZone>, String> {
    if let Some(zone) = cache().get(name) {
        return Ok(Arc::clone(zone));
    }
    let zone = Arc::new(read_zone(name)?);
    let mut cached = cache();
    if cached.len() < MAX_CACHED {
        cached.insert(name.into(), Arc::clone(&zone));
    }
    Ok(zone)
}

fn zone_dirs() -> Vec<PathBuf> {
    match std::env::var_os("TZDIR") {
        Some(dir) if Path::new(&dir).is_absolute() => vec![PathBuf::from(dir)],
        _ => ZONE_DIRS.iter().map(PathBuf::from).collect(),
    }
}

fn read_zone(name: &str) -> Result<tz::TimeZone, String> {
    read_zone_in(&zone_dirs(), name)
}

fn read_zone_in(dirs: &[PathBuf], name: &str) -> Result<tz::TimeZone, String> {
    for dir in dirs {
        let path = dir.join(name);
        let Some(bytes) = read_zone_file(&path)? else {
            continue;
        };
        let zone = tz::TimeZone::from_tz_data(&bytes)
            .map_err(|e| format!("{} is not a zone file: {e}", path.display()))?;
        check_zone(&zone).map_err(|why| format!("{}: {why}", path.display()))?;
        return Ok(zone);
    }
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "no such zone in the time-zone database ({})",
        dirs.join(", ")
    ))
}

/// The file's bytes, `None` if it does not exist. A directory or a device is
/// refused before it is opened (opening a FIFO would wait for a writer).
fn read_zone_file(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(format!("{} is not a zone file", path.display()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES).read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(bytes))
}

/// A zone is used only if it gives an offset chrono accepts for every second
/// a Rego time value can reach, so that the lookups below cannot fail.
fn check_zone(zone: &tz::TimeZone) -> Result<(), String> {
    let zone_ref = zone.as_ref();
    let mut types: Vec<&tz::LocalTimeType> = zone_ref.local_time_types().iter().collect();
    match zone_ref.extra_rule() {
        Some(TransitionRule::Fixed(fixed)) => types.push(fixed),
        Some(TransitionRule::Alternate(alternate)) => {
            types.extend([alternate.std(), alternate.dst()]);
        }
        None => {}
    }
    if let Some(bad) = types
        .iter()
        .find(|t| FixedOffset::east_opt(t.ut_offset()).is_none())
    {
        return Err(format!("offset {} s is out of range", bad.ut_offset()));
    }
    for second in [FIRST_SECOND, 0, LAST_SECOND] {
        zone.find_local_time_type(second)
            .map_err(|e| format!("no offset at Unix time {second}: {e}"))?;
    }
    Ok(())
}

impl Tz {
    /// The offset in effect at `unix` seconds. Times beyond what a Rego time
    /// value can reach take the offset at the end of that range.
    fn offset_at(&self, unix: i64) -> FixedOffset {
        let zone = match &self.0 {
            Kind::Fixed(offset) => return *offset,
            Kind::Named(zone) => zone,
        };
        let offset = zone
            .find_local_time_type(unix.clamp(FIRST_SECOND, LAST_SECOND))
            .ok()
            .and_then(|t| FixedOffset::east_opt(t.ut_offset()));
        match offset {
            Some(offset) => offset,
            // check_zone proved every offset valid and the lookup total over
            // this range. Were that ever wrong, the policy engine catches the
            // panic and denies: no made-up offset can reach a decision.
            None => {
                panic!("time zone lookup failed at Unix time {unix} after its zone was checked")
            }
        }
    }
}

impl TimeZone for Tz {
    type Offset = FixedOffset;

    fn from_offset(offset: &FixedOffset) -> Self {
        Tz(Kind::Fixed(*offset))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> FixedOffset {
        self.offset_at(utc.and_utc().timestamp())
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> FixedOffset {
        self.offset_from_utc_datetime(&utc.and_time(chrono::NaiveTime::MIN))
    }

    /// A local time maps to every offset `o` in effect at `local - o`: none in
    /// a gap (clocks jumped over it), two in an overlap (clocks went back).
    /// No zone has moved by more than a day at once, so the offsets in effect
    /// from two days before to two days after are all the candidates.
    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<FixedOffset> {
        const TWO_DAYS: i64 = 2 * 86_400;
        let wall = local.and_utc().timestamp();
        let mut fits: Vec<FixedOffset> = Vec::with_capacity(2);
        for probe in [wall - TWO_DAYS, wall, wall + TWO_DAYS] {
            let candidate = self.offset_at(probe);
            let instant = wall - i64::from(candidate.local_minus_utc());
            if self.offset_at(instant) == candidate && !fits.contains(&candidate) {
                fits.push(candidate);
            }
        }
        // The earlier instant first: the larger offset reaches UTC sooner.
        fits.sort_by_key(|offset| std::cmp::Reverse(offset.local_minus_utc()));
        match fits.as_slice() {
            [] => MappedLocalTime::None,
            [one] => MappedLocalTime::Single(*one),
            [earlier, .., later] => MappedLocalTime::Ambiguous(*earlier, *later),
        }
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<FixedOffset> {
        self.offset_from_local_datetime(&local.and_time(chrono::NaiveTime::MIN))
    }
}

#[cfg(test)]
mod tests;
