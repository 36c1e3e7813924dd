//! `migrator3000 verify`: proof, measured at the destination, that every event of the
//! source arrived, UTC day by UTC day. Each side counts its days in one query; the days
//! whose counts differ have their uuids compared, the missing and extra ones are kept in
//! the state file, and `--resend` reads exactly the missing ones again and sends them.
//! It needs no earlier migration: a migration done by the app is verified the same way.

pub mod compare;
pub mod hogql;
pub mod report;
pub mod resend;
pub mod side;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use clap::ValueEnum;

use crate::amplitude::files::LocalExport;
use crate::amplitude::Amplitude;
use crate::copy::{Failure, Outcome};
use crate::source::query_api::QueryApi;
use crate::source::Source;
use crate::PosthogSource;
use compare::{Day, Verdict, Verifier};
use hogql::HogQl;
use side::{ClickHouseSide, ImportSide, QueryApiSide, Side, Window};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerifyFrom {
    /// The source PostHog's ClickHouse (the flags of `posthog --from clickhouse`).
    Clickhouse,
    /// The source PostHog's Query API (the flags of `posthog --from query-api`).
    QueryApi,
    /// What the Amplitude imports recorded in the state file handed over.
    Amplitude,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// What the destination must hold: a PostHog's ClickHouse or Query API, or the
    /// Amplitude imports recorded in the state file.
    #[arg(long, value_enum)]
    from: VerifyFrom,
    #[command(flatten)]
    source: PosthogSource,
    /// With --resend and --from amplitude: the export the import read (zip or folder).
    #[arg(long)]
    files: Option<PathBuf>,
    /// The destination PostHog's app (not its capture host), e.g. https://us.posthog.com.
    #[arg(long)]
    destination_query_api_host: String,
    /// The destination project's id (in its URL: /project/<id>).
    #[arg(long)]
    destination_project_id: u64,
    /// A personal API key of the destination with the Query Read permission.
    #[arg(long, env = "POSTHOG_DESTINATION_PERSONAL_API_KEY", hide_env_values = true)]
    destination_personal_api_key: String,
    /// First UTC day to compare (YYYY-MM-DD); default the source's first day.
    #[arg(long)]
    start: Option<String>,
    /// Compare the days before this one (YYYY-MM-DD); default the day after the source's last.
    #[arg(long)]
    end: Option<String>,
    /// Read the missing events again from the source and send them (needs --host and
    /// --project-api-key), then compare their days again.
    #[arg(long)]
    resend: bool,
    /// With --resend: the destination's capture host, e.g. us.i.posthog.com.
    #[arg(long, required_if_eq("resend", "true"))]
    host: Option<String>,
    /// With --resend: the destination project's API key (phc_...).
    #[arg(long, env = "POSTHOG_PROJECT_API_KEY", hide_env_values = true)]
    project_api_key: Option<String>,
    /// Compare the days still arriving again every little while until they settle, at
    /// most this many minutes (default 30).
    #[arg(long, value_name = "MINUTES", num_args = 0..=1, default_missing_value = "30")]
    wait: Option<f64>,
    /// A day that differs and took events in the last this many minutes is still arriving.
    #[arg(long, value_name = "MINUTES", default_value_t = 10.0)]
    settle_minutes: f64,
    /// Also write a self-contained HTML page: a chart per day, the table, the missing uuids.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Rows a page of uuids asks for (PostHog gives at most 50,000).
    #[arg(long, default_value_t = 50_000, hide = true)]
    page_rows: usize,
    /// Multiplies every wait (tests).
    #[arg(long, default_value_t = 1.0, hide = true)]
    retry_scale: f64,
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn day_flag(flag: &str, text: &str) -> Result<NaiveDate, Failure> {
    crate::time_flag(flag, text).map(|t| t.date_naive())
}

fn words(failure: Failure) -> String {
    match failure {
        Failure::Usage(message) | Failure::Error(message) => message,
    }
}

/// A Query API host as given, with https:// when it names no scheme.
fn host(text: &str) -> String {
    let text = text.trim().trim_end_matches('/');
    if text.contains("://") {
        text.to_string()
    } else {
        format!("https://{text}")
    }
}

/// The days to compare: the flags, else the source's own first and last days.
fn window(args: &VerifyArgs, verifier: &mut Verifier<'_>) -> Result<Window, Failure> {
    let today = Utc::now().date_naive();
    let from = args.start.as_deref().map(|s| day_flag("--start", s)).transpose()?;
    let to = args.end.as_deref().map(|e| day_flag("--end", e)).transpose()?;
    let (from, to) = match (from, to) {
        (Some(from), Some(to)) => (from, to),
        (from, to) => {
            // Counted once over all time: the source's counts are kept for the comparison.
            let everything = Window {
                from: from.unwrap_or(NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or(today)),
                to: to.unwrap_or(today + chrono::Duration::days(1)),
            };
            let days = verifier.source_days(everything)?;
            let first = days.first().copied().unwrap_or(everything.from);
            let last = days.last().copied().unwrap_or(everything.from);
            (from.unwrap_or(first), to.unwrap_or(last + chrono::Duration::days(1)))
        }
    };
    if to <= from {
        return Err(Failure::Usage(format!("--end ({to}) must come after --start ({from})")));
    }
    Ok(Window { from, to })
}

fn source_side(args: &VerifyArgs, state: &Path) -> Result<Box<dyn Side>, Failure> {
    Ok(match args.from {
        VerifyFrom::Clickhouse => Box::new(ClickHouseSide { clickhouse: args.source.clickhouse() }),
        VerifyFrom::QueryApi => {
            let mut source = args.source.query_api()?;
            source.host = host(&source.host);
            Box::new(QueryApiSide { api: HogQl::new(source, args.retry_scale) })
        }
        VerifyFrom::Amplitude => {
            let db = rusqlite::Connection::open(state)
                .map_err(|e| format!("the state file {} cannot be opened: {e}", state.display()))?;
            let imports = store::imports(&db).map_err(|e| format!("the state file cannot be read: {e}"))?;
            if imports.is_empty() {
                return Err(Failure::Error(format!(
                    "--from amplitude: the state file {} records no Amplitude import (imports record what they hand \
                     over since this version; give --state the file of the import, or import again)",
                    state.display()
                )));
            }
            Box::new(ImportSide { db, imports })
        }
    })
}

/// `1 day`, `2 days`.
fn n_days(n: usize) -> String {
    format!("{n} {}", if n == 1 { "day" } else { "days" })
}

/// The days that differ or could not be compared, in words, for the last line.
fn days_list(days: &[&Day]) -> String {
    let names: Vec<String> = days.iter().take(5).map(|d| d.day.to_string()).collect();
    let more = if days.len() > 5 { format!(" and {} more", days.len() - 5) } else { String::new() };
    format!("{}{more}", names.join(", "))
}

struct Ending {
    code: ExitCode,
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
        return Ending { code: ExitCode::from(5), last_line: line, verdict: "differences" };
    }
    if !arriving.is_empty() || !unknown.is_empty() {
        let line = format!(
            "Could not verify everything yet: the other days are equal{also}. Run again later{}.",
            if arriving.is_empty() { "" } else { ", or with --wait" }
        );
        return Ending { code: ExitCode::FAILURE, last_line: line, verdict: "not verified" };
    }
    let events: u64 = days.iter().map(|d| d.source.events).sum();
    Ending {
        code: ExitCode::SUCCESS,
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
    println!(
        "{:<12} {:>15} {:>18} {:>9} {:>9}  status",
        "day", "at the source", "at the destination", "missing", "extra"
    );
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
            other => store::verdict_name(other).to_string(),
        };
        let duplicates = day.destination.rows.saturating_sub(day.destination.events);
        let status = if duplicates > 0 { format!("{status} ({duplicates} rows not merged yet)") } else { status };
        println!(
            "{:<12} {:>15} {:>18} {missing:>9} {extra:>9}  {status}",
            day.day.to_string(),
            thousands(day.source.events),
            thousands(day.destination.events)
        );
    }
    if hidden > 0 {
        println!("({hidden} equal days not shown; --report FILE.html shows every day)");
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
) -> Result<(), String> {
    let started = Instant::now();
    let every = Duration::from_secs_f64((verifier.settle_seconds as f64 / 4.0).clamp(1.0, 30.0));
    loop {
        let arriving: BTreeSet<NaiveDate> =
            days.iter().filter(|d| d.verdict == Verdict::StillArriving).map(|d| d.day).collect();
        if arriving.is_empty() || started.elapsed() >= bound {
            return Ok(());
        }
        eprintln!("{} still arriving: comparing again in {} s.", n_days(arriving.len()), every.as_secs());
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

fn resend_missing(
    args: &VerifyArgs,
    days: &[Day],
    touched_at: &mut BTreeMap<NaiveDate, Instant>,
) -> Result<Option<String>, String> {
    let missing: BTreeMap<NaiveDate, Vec<String>> = days
        .iter()
        .filter(|d| d.verdict == Verdict::Differs && !d.missing.is_empty())
        .map(|d| (d.day, d.missing.clone()))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let destination = crate::Destination {
        start: None,
        end: None,
        host: args.host.clone().unwrap_or_default(),
        project_api_key: args.project_api_key.clone().ok_or(
            "--resend needs --project-api-key (or POSTHOG_PROJECT_API_KEY): the destination project's API key",
        )?,
        batch_size: "500".into(),
        batch_max_kilobytes: "1800".into(),
        gzip: "on".into(),
        events_per_minute: String::new(),
        events_to_ignore: String::new(),
        concurrency: 1,
        page_size: None,
        dry_run: false,
        debug: false,
        retry_scale: args.retry_scale,
        queries_per_hour: hogql::QUERIES_PER_HOUR,
    };
    let settings = crate::settings(&destination, Utc::now()).map_err(words)?;
    let target = crate::copy::Target::of(&settings);
    let options = crate::copy::Copy::new(&destination, &settings, &target, 10_000, Utc::now())
        .options(format!("verify --resend into {target}"));
    let reread = match args.from {
        VerifyFrom::Amplitude => {
            let files = args.files.as_deref().ok_or(
                "--resend with --from amplitude needs --files: the export the import read (the Export API is not \
                 read again by verify; run `migrator3000 amplitude` again instead)",
            )?;
            // Nothing known of this destination: every event of the export is read again
            // (only the missing ones are sent).
            let import = crate::amplitude::Options {
                destination: format!("{} {}", settings.destination.base_url, settings.project_api_key),
                group_identify: false,
                skip_unreadable: false,
            };
            resend::Reread::Amplitude(Box::new(Amplitude::new(LocalExport::open(files)?, import, Default::default())))
        }
        read => {
            let source = &args.source;
            resend::Reread::Posthog(Box::new(move || -> Result<Box<dyn Source>, String> {
                Ok(match read {
                    VerifyFrom::Clickhouse => Box::new(source.clickhouse()),
                    _ => Box::new(source.query_api().map_err(words)?),
                })
            }))
        }
    };
    let count: usize = missing.values().map(Vec::len).sum();
    eprintln!("Reading the {} missing events again from the source and sending them...", thousands(count as u64));
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
    println!("{line}.");
    Ok(sent.stopped.clone())
}

pub fn run(state: &Path, args: &VerifyArgs) -> Outcome {
    if args.page_rows == 0 || args.settle_minutes < 0.0 || args.wait.is_some_and(|w| w < 0.0) {
        return Err(Failure::Usage("--settle-minutes and --wait must not be negative".into()));
    }
    let mut destination_api = QueryApi::new(
        &host(&args.destination_query_api_host),
        args.destination_project_id,
        &args.destination_personal_api_key,
    );
    destination_api.flags = &hogql::DESTINATION_FLAGS;
    let mut destination = QueryApiSide { api: HogQl::new(destination_api, args.retry_scale) };
    let mut source = source_side(args, state)?;
    let (source_name, destination_name) = (source.describe(), destination.describe());
    let settle_seconds = (args.settle_minutes * 60.0).round() as i64;
    let mut verifier = Verifier::new(source.as_mut(), &mut destination, settle_seconds, args.page_rows.min(50_000));
    let window = window(args, &mut verifier)?;
    let range = format!("{} to {}", window.from, window.to.pred_opt().unwrap_or(window.to));
    eprintln!("Verifying {source_name} against {destination_name}, UTC days {range}.");
    let mut touched_at: BTreeMap<NaiveDate, Instant> = BTreeMap::new();
    let mut days = verifier.check(window, None, &BTreeMap::new())?;
    let wait = Duration::from_secs_f64(args.wait.unwrap_or(0.0) * 60.0);
    wait_for(&mut verifier, window, &mut days, wait, &touched_at)?;
    if args.resend {
        print_table(&days);
        let first = ending(&days);
        println!("{}", first.last_line);
        if let Some(stopped) = resend_missing(args, &days, &mut touched_at)? {
            eprintln!("Stopped: {stopped}");
            return Ok(ExitCode::from(4));
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
            let bound = Duration::from_secs_f64(args.wait.unwrap_or(10.0) * 60.0);
            wait_for(&mut verifier, window, &mut days, bound, &touched_at)?;
            println!("\nThe days sent again, compared again:");
        }
    }
    let queries = verifier.destination.queries();
    drop(verifier);
    print_table(&days);
    let outcome = ending(&days);
    let mut db = rusqlite::Connection::open(state)
        .map_err(|e| format!("the state file {} cannot be opened: {e}", state.display()))?;
    let check = store::Check {
        source: &source_name,
        destination: &destination_name,
        from: window.from.to_string(),
        to: window.to.to_string(),
        verdict: outcome.verdict,
        days: &days,
    };
    store::save(&mut db, &check).map_err(|e| format!("the state file could not be written: {e}"))?;
    eprintln!(
        "{queries} queries to the destination's Query API (PostHog allows {} an hour); missing and extra uuids are \
         in {} (table verify_uuids).",
        hogql::QUERIES_PER_HOUR,
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
        std::fs::write(path, page).map_err(|e| format!("--report: {} cannot be written: {e}", path.display()))?;
        eprintln!("Report: {}", path.display());
    }
    println!("{}", outcome.last_line);
    Ok(outcome.code)
}
