//! `migrator3000 verify`: proof, measured at the destination, that every event of the
//! source arrived, UTC day by UTC day. Each side counts its days in one query; the days
//! whose counts differ have their uuids compared, the missing and extra ones are kept in
//! the state file, and `--resend` reads exactly the missing ones again and sends them.
//! It needs no earlier migration: a migration done by the app is verified the same way.

mod options;
pub mod persons;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};

use super::destination::{ledger_key, time_flag};
use super::exit::{CommandError, Exit, Outcome};
use super::files::{self as files_command, SOURCES as FILES_RUNS};
use super::mixpanel::SOURCES as MIXPANEL_RUNS;
use super::summary::stop_words;
use crate::pipeline::error::PipelineError;
use crate::pipeline::verification::compare::{Day, Verdict, Verifier};
use crate::pipeline::verification::hogql::HogQl;
use crate::pipeline::verification::resend;
use crate::pipeline::verification::side::{ClickHouseSide, ImportSide, QueryApiSide, Side, Window};
use crate::shared::defaults;
use crate::shared::reporter::{note, say};
use crate::shared::retry::RetryPolicy;
use crate::shared::words::{n_days, thousands};
use crate::sources::amplitude::files::LocalExport;
use crate::sources::amplitude::{fingerprint_of, Amplitude, Options as ImportOptions};
use crate::sources::mixpanel::files::LocalFiles;
use crate::sources::mixpanel::{Mixpanel, Options as MixpanelImport};
use crate::sources::posthog::query_api::QueryApiSource;
use crate::sources::Source;
use crate::store::state_file::{StateFile, Use};
use crate::store::verify::{CheckRecord, DayRecord};

use self::options::{destination_client, host, resend_options};
pub use self::options::{VerifyFrom, VerifyOptions};

/// The runs of Amplitude imports, by their source's name (SQL LIKE; as the export and
/// the Export API describe themselves).
const AMPLITUDE_RUNS: [&str; 2] = ["the Amplitude export %", "Amplitude's Export API %"];

fn day_flag(flag: &str, text: &str) -> Result<NaiveDate, CommandError> {
    time_flag(flag, text).map(|t| t.date_naive())
}

/// The days to compare: the flags, else the source's own first and last days; refused
/// when the source holds no event in them (nothing would be compared).
fn window(args: &VerifyOptions, verifier: &mut Verifier<'_>) -> Result<Window, CommandError> {
    let from = args.start.as_deref().map(|s| day_flag("--start", s)).transpose()?;
    let to = args.end.as_deref().map(|e| day_flag("--end", e)).transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if to <= from {
            return Err(CommandError::Usage(format!("--end ({to}) must come after --start ({from})")));
        }
    }
    // Counted once: the source's counts are kept for the comparison.
    let asked = Window { from: from.unwrap_or(FIRST_DAY), to: to.unwrap_or(AFTER_LAST_DAY) };
    let days = verifier.source_days(asked)?;
    let (Some(first), Some(last)) = (days.first().copied(), days.last().copied()) else {
        return Err(nothing_to_compare(args, from, to));
    };
    let window = Window { from: from.unwrap_or(first), to: to.unwrap_or(last + chrono::Duration::days(1)) };
    if window.to <= window.from {
        return Err(CommandError::Usage(format!("--end ({}) must come after --start ({})", window.to, window.from)));
    }
    Ok(window)
}

/// The days a timestamp of PostHog's events can be on (ClickHouse's DateTime64 holds
/// 1900-01-01 to 2299-12-31): where a comparison without --start or --end looks.
const FIRST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(1900, 1, 1) {
    Some(day) => day,
    None => NaiveDate::MIN,
};
const AFTER_LAST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2300, 1, 1) {
    Some(day) => day,
    None => NaiveDate::MAX,
};

/// Why nothing can be compared when the source holds no event in the days asked for, in
/// terms of the flags that chose them.
fn nothing_to_compare(args: &VerifyOptions, from: Option<NaiveDate>, to: Option<NaiveDate>) -> CommandError {
    let today = Utc::now().date_naive();
    match (from, to) {
        (Some(from), _) if from > today => CommandError::Usage(format!(
            "--start {from} is in the future: the source has no events from that day on, so there is nothing to \
             compare. Give a --start on or before today ({today}), or leave --start out to begin at the source's \
             first day."
        )),
        (None, None) => CommandError::Failed(format!(
            "the source holds no events, so there is nothing to compare: check {}.",
            match args.from {
                VerifyFrom::Clickhouse => "--clickhouse-url, --clickhouse-table and --team-id",
                VerifyFrom::QueryApi => "--query-api-host and --project-id",
                VerifyFrom::Amplitude | VerifyFrom::Mixpanel | VerifyFrom::Files =>
                    "--state (the state file of the import)",
            }
        )),
        (from, to) => {
            let flags: Vec<String> = [("--start", from), ("--end", to)]
                .into_iter()
                .filter_map(|(flag, day)| Some(format!("{flag} {}", day?)))
                .collect();
            CommandError::Usage(format!(
                "the source has no events {}: there is nothing to compare. Check {} (left out, the comparison \
                 begins at the source's first day and ends after its last).",
                match (from, to) {
                    (Some(from), Some(to)) => format!("from {from} to before {to}"),
                    (Some(from), None) => format!("from {from} on"),
                    (None, Some(to)) => format!("before {to}"),
                    (None, None) => String::new(),
                },
                flags.join(" and ")
            ))
        }
    }
}

fn source_side(args: &VerifyOptions, state: &Path) -> Result<Box<dyn Side>, CommandError> {
    let retry = RetryPolicy::new(args.retry_scale);
    Ok(match args.from {
        VerifyFrom::Clickhouse => Box::new(ClickHouseSide { clickhouse: args.source.clickhouse(), retry }),
        VerifyFrom::QueryApi => {
            let mut client = args.source.query_api()?;
            client.host = host(&client.host);
            Box::new(QueryApiSide { api: HogQl::new(client, retry) })
        }
        VerifyFrom::Amplitude | VerifyFrom::Mixpanel | VerifyFrom::Files => {
            // Each kind of import is verified apart, its runs known by their source.
            let (flag, what, whats, sources): (_, _, _, &'static [&'static str]) = match args.from {
                VerifyFrom::Mixpanel => ("mixpanel", "Mixpanel import", "Mixpanel imports", &MIXPANEL_RUNS),
                VerifyFrom::Files => ("files", "import of files", "imports of files", &FILES_RUNS),
                _ => ("amplitude", "Amplitude import", "Amplitude imports", &AMPLITUDE_RUNS),
            };
            // Only read: a --state that does not exist is said, not made.
            let state_file = StateFile::open(state, Use::Read)?;
            let imports = state_file.imports(sources)?;
            if imports.is_empty() {
                return Err(CommandError::Failed(format!(
                    "--from {flag}: the state file {} records no {what} (imports record what they hand over since \
                     this version; give --state the file of the import, or import again)",
                    state.display()
                )));
            }
            Box::new(ImportSide { state: state_file, imports, what, whats, sources })
        }
    })
}

/// The days that differ or could not be compared, in words, for the last line.
fn days_list(days: &[&Day]) -> String {
    let names: Vec<String> = days.iter().take(5).map(|d| d.day.to_string()).collect();
    let more = if days.len() > 5 { format!(" and {} more", days.len() - 5) } else { String::new() };
    format!("{}{more}", names.join(", "))
}

struct Ending {
    code: Exit,
    last_line: String,
    verdict: &'static str,
}

fn ending(days: &[Day]) -> Ending {
    let differing: Vec<&Day> = days.iter().filter(|d| d.verdict == Verdict::Differs).collect();
    let arriving: Vec<&Day> = days.iter().filter(|d| d.verdict == Verdict::StillArriving).collect();
    let unknown: Vec<&Day> = days.iter().filter(|d| matches!(d.verdict, Verdict::Unknown(_))).collect();
    let missing: u64 = differing.iter().map(|d| d.missing.len() as u64).sum();
    let extra: u64 = differing.iter().map(|d| d.extra.len() as u64).sum();
    let mut also = Vec::new();
    if !arriving.is_empty() {
        also.push(format!("{} still arriving ({})", n_days(arriving.len()), days_list(&arriving)));
    }
    if !unknown.is_empty() {
        also.push(format!("{} not counted ({})", n_days(unknown.len()), days_list(&unknown)));
    }
    let also = if also.is_empty() { String::new() } else { format!("; {}", also.join(", ")) };
    if !differing.is_empty() {
        let mut line = format!(
            "Not everything arrived: {} missing and {} extra events on {} ({}){also}.",
            thousands(missing),
            thousands(extra),
            n_days(differing.len()),
            days_list(&differing)
        );
        if missing > 0 {
            line.push_str(" Run again with --resend to send the missing ones.");
        }
        return Ending { code: Exit::Differences, last_line: line, verdict: "differences" };
    }
    if !arriving.is_empty() || !unknown.is_empty() {
        let line = format!(
            "Could not verify everything yet: the other days are equal{also}. Run again later{}.",
            if arriving.is_empty() { "" } else { ", or with --wait" }
        );
        return Ending { code: Exit::NotVerified, last_line: line, verdict: "not verified" };
    }
    let events: u64 = days.iter().map(|d| d.source.events).sum();
    Ending {
        code: Exit::Done,
        last_line: format!(
            "Everything arrived: the {} events of {} at the source are all at the destination.",
            thousands(events),
            n_days(days.len())
        ),
        verdict: "equal",
    }
}

fn print_table(days: &[Day]) {
    let all = days.len() <= 31;
    say!("{:<12} {:>15} {:>18} {:>9} {:>9}  status", "day", "at the source", "at the destination", "missing", "extra");
    let mut hidden = 0;
    for day in days {
        if !all && day.verdict == Verdict::Equal {
            hidden += 1;
            continue;
        }
        let (missing, extra) = match day.verdict {
            Verdict::Differs => (thousands(day.missing.len() as u64), thousands(day.extra.len() as u64)),
            _ => ("-".into(), "-".into()),
        };
        let status = match &day.verdict {
            Verdict::Unknown(why) => format!("not counted: {why}"),
            other => other.name().to_string(),
        };
        let duplicates = day.destination.rows.saturating_sub(day.destination.events);
        let status = if duplicates > 0 { format!("{status} ({duplicates} rows not merged yet)") } else { status };
        say!(
            "{:<12} {:>15} {:>18} {missing:>9} {extra:>9}  {status}",
            day.day.to_string(),
            thousands(day.source.events),
            thousands(day.destination.events)
        );
    }
    if hidden > 0 {
        say!("({hidden} equal days not shown; --report FILE.html shows every day)");
    }
}

/// Compares the days of `only` again while any of them is still arriving, until they
/// settle or `bound` passes.
fn wait_for(
    verifier: &mut Verifier<'_>,
    window: Window,
    days: &mut [Day],
    bound: Duration,
    touched_at: &BTreeMap<NaiveDate, Instant>,
) -> Result<(), PipelineError> {
    let started = Instant::now();
    let every = Duration::from_secs_f64((verifier.settle_seconds as f64 / 4.0).clamp(1.0, 30.0));
    loop {
        let arriving: BTreeSet<NaiveDate> =
            days.iter().filter(|d| d.verdict == Verdict::StillArriving).map(|d| d.day).collect();
        if arriving.is_empty() || started.elapsed() >= bound {
            return Ok(());
        }
        note!("{} still arriving: comparing again in {} s.", n_days(arriving.len()), every.as_secs());
        std::thread::sleep(every);
        let touched = touched_at.iter().map(|(d, at)| (*d, at.elapsed().as_secs() as i64)).collect();
        let span = Window {
            from: *arriving.first().unwrap_or(&window.from),
            to: *arriving.last().unwrap_or(&window.from) + chrono::Duration::days(1),
        };
        for again in verifier.check(span, Some(&arriving), &touched)? {
            if let Some(day) = days.iter_mut().find(|d| d.day == again.day) {
                *day = again;
            }
        }
    }
}

/// With --resend --from amplitude: that --files is an export an import in the state file
/// read, by the fingerprint of its files and their content taken when it was imported
/// (imports of the Export API have none: nothing to compare).
fn same_export(state: &Path, files: &Path) -> Result<(), CommandError> {
    let imports = StateFile::open(state, Use::Read)?.imports(&AMPLITUDE_RUNS)?;
    let imported: Vec<&str> = imports.iter().filter_map(|run| fingerprint_of(run)).collect();
    if imported.is_empty() {
        return Ok(());
    }
    let export = LocalExport::open(files)?;
    let mut export = Amplitude::new(export, ImportOptions::default(), Default::default());
    export.take_stock().map_err(PipelineError::from)?;
    if export.fingerprint().is_some_and(|given| imported.contains(&given)) {
        return Ok(());
    }
    Err(CommandError::Failed(format!(
        "--files: {} is not the export the import read (its files, or their sizes and times, differ from those \
         imported); give --files the zip or folder that `migrator3000 amplitude --files` imported",
        files.display()
    )))
}

fn resend_missing(
    args: &VerifyOptions,
    days: &[Day],
    touched_at: &mut BTreeMap<NaiveDate, Instant>,
) -> Result<Option<String>, CommandError> {
    let missing: BTreeMap<NaiveDate, Vec<String>> = days
        .iter()
        .filter(|d| d.verdict == Verdict::Differs && !d.missing.is_empty())
        .map(|d| (d.day, d.missing.clone()))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let (options, settings) = resend_options(args, defaults::PAGE_SIZE)?;
    let reread = match args.from {
        VerifyFrom::Amplitude => {
            let files = args.files.first().ok_or_else(|| {
                CommandError::Failed(
                    "--resend with --from amplitude needs --files: the export the import read (the Export API is not \
                     read again by verify; run `migrator3000 amplitude` again instead)"
                        .into(),
                )
            })?;
            // Nothing known of this destination: every event of the export is read again
            // (only the missing ones are sent).
            let import =
                ImportOptions { destination: ledger_key(&settings), group_identify: false, skip_unreadable: false };
            let export = LocalExport::open(files)?;
            resend::Reread::Whole(Box::new(Amplitude::new(export, import, Default::default())))
        }
        VerifyFrom::Files => {
            if args.files_from.files.is_none() && args.files_from.s3.is_none() {
                return Err(CommandError::Failed(
                    "--resend with --from files needs --files or --s3: where the files the import read are".into(),
                ));
            }
            // Nothing known of this destination: every file is read again (only the
            // missing events are sent).
            let destination = ledger_key(&settings);
            resend::Reread::Whole(files_command::open(&args.files_from, destination, false, Default::default())?)
        }
        VerifyFrom::Mixpanel => {
            if args.files.is_empty() && args.profiles.is_empty() {
                return Err(CommandError::Failed(
                    "--resend with --from mixpanel needs --files (and --profiles if the import read them): the \
                     export the import read (the export API is not read again by verify; run `migrator3000 \
                     mixpanel` again instead)"
                        .into(),
                ));
            }
            // Nothing known of this destination: every line is read again (only the
            // missing ones are sent).
            let import =
                MixpanelImport { destination: ledger_key(&settings), now: migrator3000::timestamp::format(Utc::now()) };
            let files = LocalFiles::open(&args.files, &args.profiles)?;
            resend::Reread::Whole(Box::new(Mixpanel::new(files, import, Default::default(), Default::default())))
        }
        read => {
            let source = &args.source;
            resend::Reread::Posthog(Box::new(move || -> Result<Box<dyn Source>, PipelineError> {
                Ok(match read {
                    VerifyFrom::Clickhouse => Box::new(source.clickhouse()),
                    _ => {
                        let client = source.query_api().map_err(|e| PipelineError::SourceOpen(e.to_string()))?;
                        Box::new(QueryApiSource::new(client))
                    }
                })
            }))
        }
    };
    let count: usize = missing.values().map(Vec::len).sum();
    note!("Reading the {} missing events again from the source and sending them...", thousands(count as u64));
    let resent = resend::resend(&missing, reread, &options)?;
    for day in missing.keys() {
        touched_at.insert(*day, Instant::now());
    }
    let sent = &resent.sent;
    let mut line = format!(
        "Sent again: {} of the {} missing events found at the source, {} delivered",
        thousands(resent.found),
        thousands(count as u64),
        thousands(sent.delivered)
    );
    if resent.not_found > 0 {
        line.push_str(&format!(", {} no longer at the source", thousands(resent.not_found)));
    }
    if !sent.rejected.is_empty() {
        line.push_str(&format!(", {} refused ({})", sent.rejected.len(), sent.rejected[0].1));
    }
    let undelivered: usize = sent.undelivered.iter().map(|(n, _)| n).sum();
    if undelivered > 0 {
        line.push_str(&format!(", {undelivered} not delivered after every attempt ({})", sent.undelivered[0].1));
    }
    say!("{line}.");
    Ok(sent.stopped.as_ref().map(|stop| stop_words(stop, &settings.destination.base_url)))
}

pub fn run(state: &Path, args: &VerifyOptions) -> Outcome {
    for (flag, minutes) in [("--wait", args.wait), ("--settle-minutes", Some(args.settle_minutes))] {
        // NaN is outside every range too.
        if let Some(m) = minutes.filter(|m| !(0.0..=defaults::MOST_MINUTES).contains(m)) {
            return Err(CommandError::Usage(format!(
                "{flag}: \"{m}\" is not accepted: it is a number of minutes, from 0 to {} (a day).",
                defaults::MOST_MINUTES
            )));
        }
    }
    if args.page_rows == 0 {
        return Err(CommandError::Usage("--page-rows must be at least 1".into()));
    }
    if args.persons {
        return persons::run(args);
    }
    let mut destination =
        QueryApiSide { api: HogQl::new(destination_client(args), RetryPolicy::new(args.retry_scale)) };
    let mut source = source_side(args, state)?;
    if let (VerifyFrom::Amplitude, true, Some(files)) = (args.from, args.resend, args.files.first()) {
        same_export(state, files)?;
    }
    let (source_name, destination_name) = (source.describe(), destination.describe());
    let settle_seconds = (args.settle_minutes * 60.0).round() as i64;
    let mut verifier = Verifier::new(
        source.as_mut(),
        &mut destination,
        settle_seconds,
        args.page_rows.min(defaults::QUERY_API_MOST_ROWS),
    );
    let window = window(args, &mut verifier)?;
    let range = format!("{} to {}", window.from, window.to.pred_opt().unwrap_or(window.to));
    note!("Verifying {source_name} against {destination_name}, UTC days {range}.");
    let mut touched_at: BTreeMap<NaiveDate, Instant> = BTreeMap::new();
    let mut days = verifier.check(window, None, &BTreeMap::new())?;
    let wait = Duration::from_secs_f64(args.wait.unwrap_or(0.0) * 60.0);
    wait_for(&mut verifier, window, &mut days, wait, &touched_at)?;
    if args.resend {
        print_table(&days);
        let first = ending(&days);
        say!("{}", first.last_line);
        if let Some(stopped) = resend_missing(args, &days, &mut touched_at)? {
            note!("Stopped: {stopped}");
            return Ok(Exit::Refused);
        }
        let resent: BTreeSet<NaiveDate> = touched_at.keys().copied().collect();
        if !resent.is_empty() {
            // Ingestion takes a while: the days sent again are compared until they settle.
            let touched = touched_at.iter().map(|(d, at)| (*d, at.elapsed().as_secs() as i64)).collect();
            for again in verifier.check(window, Some(&resent), &touched)? {
                if let Some(day) = days.iter_mut().find(|d| d.day == again.day) {
                    *day = again;
                }
            }
            let bound = Duration::from_secs_f64(args.wait.unwrap_or(defaults::RESEND_WAIT_MINUTES) * 60.0);
            wait_for(&mut verifier, window, &mut days, bound, &touched_at)?;
            say!("\nThe days sent again, compared again:");
        }
    }
    let queries = verifier.destination.queries();
    drop(verifier);
    print_table(&days);
    let outcome = ending(&days);
    let mut state_file = StateFile::open(state, Use::Record)?;
    let check = CheckRecord {
        source: &source_name,
        destination: &destination_name,
        from: window.from.to_string(),
        to: window.to.to_string(),
        verdict: outcome.verdict,
        days: days
            .iter()
            .map(|day| DayRecord {
                day: day.day.to_string(),
                at_source: day.source.events,
                at_destination: day.destination.events,
                verdict: day.verdict.name(),
                missing: &day.missing,
                extra: &day.extra,
            })
            .collect(),
    };
    state_file.save_check(&check)?;
    note!(
        "{queries} queries to the destination's Query API (PostHog allows {} an hour); missing and extra uuids are \
         in {} (table verify_uuids).",
        defaults::QUERIES_PER_HOUR,
        state.display()
    );
    if let Some(path) = &args.report {
        let page = report::html(&report::Report {
            source: &source_name,
            destination: &destination_name,
            range: &range,
            last_line: &outcome.last_line,
            days: &days,
        });
        std::fs::write(path, page)
            .map_err(|e| CommandError::Failed(format!("--report: {} cannot be written: {e}", path.display())))?;
        note!("Report: {}", path.display());
    }
    say!("{}", outcome.last_line);
    Ok(outcome.code)
}
