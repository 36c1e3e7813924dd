//! `migrator3000 verify --persons`: the persons of the source (its ClickHouse or Query
//! API, the flags of `verify`) against the destination's (its Query API), matched by
//! distinct id; the differences in a table, the last line and `--report`. `--resend`
//! sends the differing persons again through the persons step's own code (their
//! current properties set, their missing distinct ids linked, never a distinct id the
//! destination holds for another person), then compares them again until they match
//! or `--wait` (10 minutes without it) passes.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::options::{destination_client, host, resend_options, VerifyFrom, VerifyOptions};
use super::report::{self, shown};
use crate::commands::exit::{CommandError, Exit, Outcome};
use crate::commands::summary::stop_words;
use crate::pipeline::persons::{send_persons, PersonToSend, PERSONS_PAGE};
use crate::pipeline::verification::persons::{compare, compare_again, Comparison, PersonDiff, IGNORED};
use crate::shared::defaults;
use crate::shared::reporter::{note, say};
use crate::shared::retry::RetryPolicy;
use crate::shared::words::thousands;
use crate::sources::posthog::persons::{ClickHousePersons, PersonSource, QueryApiPersons};

/// Differing persons shown on the terminal (the report shows more).
const SHOWN: usize = 20;

/// `n thing` / `n things`.
fn n(count: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(count), if count == 1 { one } else { many })
}

/// The person as the output names it: its source uuid and first distinct id.
pub fn named(diff: &PersonDiff) -> String {
    format!("{} ({})", diff.source.id, diff.source.distinct_ids.first().map(String::as_str).unwrap_or(""))
}

pub struct Ending {
    pub code: Exit,
    pub last_line: String,
}

pub fn ending(c: &Comparison) -> Ending {
    if c.equal() {
        return Ending {
            code: Exit::Done,
            last_line: format!(
                "Every person arrived: the {} of the source, with their {} and properties, are at the destination.",
                n(c.at_source, "person", "persons"),
                n(c.source_ids, "distinct id", "distinct ids")
            ),
        };
    }
    let mut parts = Vec::new();
    let missing = c.missing().count() as u64;
    if missing > 0 {
        parts.push(format!("{} of the {} missing", n(missing, "person", "persons"), thousands(c.at_source)));
    }
    if c.missing_ids() > 0 {
        parts.push(format!("{} missing", n(c.missing_ids(), "distinct id", "distinct ids")));
    }
    let with_properties = c.with_properties().count() as u64;
    if with_properties > 0 {
        let properties: u64 = c.with_properties().map(|d| d.properties.len() as u64).sum();
        parts.push(format!(
            "properties that differ on {} ({})",
            n(with_properties, "person", "persons"),
            n(properties, "property", "properties")
        ));
    }
    if c.held_elsewhere() > 0 {
        parts.push(format!(
            "{} held by another person at the destination",
            n(c.held_elsewhere(), "distinct id", "distinct ids")
        ));
    }
    let other = c.with_other_ids().count() as u64;
    if other > 0 {
        parts.push(format!(
            "{} matched to a destination person that holds distinct ids the source's does not",
            n(other, "person", "persons")
        ));
    }
    if !c.merged.is_empty() {
        parts.push(format!("{} merged into one there", n(c.merged.len() as u64, "person", "persons")));
    }
    let mut line = format!("Not every person arrived whole: {}.", parts.join(", "));
    if c.differing.iter().any(PersonDiff::mendable) {
        line.push_str(" Run again with --resend to set the source's values and link the missing distinct ids.");
    }
    if c.held_elsewhere() > 0 || other > 0 || !c.merged.is_empty() {
        line.push_str(" Distinct ids held by another person are not linked by --resend: that would merge two persons.");
    }
    Ending { code: Exit::Differences, last_line: line }
}

fn print_table(c: &Comparison) {
    let with_properties = c.with_properties().count() as u64;
    let properties: u64 = c.with_properties().map(|d| d.properties.len() as u64).sum();
    let rows = [
        (
            "persons at the source",
            format!("{} ({})", thousands(c.at_source), n(c.source_ids, "distinct id", "distinct ids")),
        ),
        ("persons at the destination", thousands(c.at_destination)),
        ("persons missing", thousands(c.missing().count() as u64)),
        ("distinct ids missing", thousands(c.missing_ids())),
        (
            "persons whose properties differ",
            format!("{} ({})", thousands(with_properties), n(properties, "property", "properties")),
        ),
        ("distinct ids held by another person", thousands(c.held_elsewhere())),
        ("persons held with other distinct ids", thousands(c.with_other_ids().count() as u64)),
        ("persons merged into one", thousands(c.merged.iter().map(|(_, s)| s.len() as u64).sum())),
    ];
    for (what, count) in rows {
        say!("{what:<38} {count}");
    }
    if c.without_ids > 0 {
        say!(
            "({} at the source without any distinct id: nothing can name them, not compared)",
            thousands(c.without_ids)
        );
    }
    for diff in c.differing.iter().take(SHOWN) {
        let who = named(diff);
        if diff.destination.is_none() {
            say!("  person {who}: missing (distinct ids {})", diff.source.distinct_ids.join(", "));
        }
        for id in diff.missing_ids.iter().filter(|_| diff.destination.is_some()) {
            say!("  person {who}: distinct id {id} missing");
        }
        for (id, other) in &diff.held_elsewhere {
            say!("  person {who}: distinct id {id} held by another person at the destination ({other})");
        }
        if !diff.other_ids.is_empty() {
            say!(
                "  person {who}: its person at the destination ({}) also holds {}",
                diff.destination.as_deref().unwrap_or(""),
                diff.other_ids.join(", ")
            );
        }
        for p in &diff.properties {
            say!(
                "  person {who}: {}: {} at the source, {} at the destination",
                p.key,
                shown(Some(&p.source), 80),
                shown(p.destination.as_ref(), 80)
            );
        }
    }
    if c.differing.len() > SHOWN {
        say!(
            "  ({} more persons differ; --report FILE.html lists them)",
            thousands((c.differing.len() - SHOWN) as u64)
        );
    }
    for (at, sources) in &c.merged {
        say!("  destination person {at} holds distinct ids of the source persons {}", sources.join(", "));
    }
}

/// Sends the persons `--resend` can mend; `Some(why)` when the destination refused.
fn resend(args: &VerifyOptions, c: &Comparison) -> Result<Option<String>, CommandError> {
    let mendable: Vec<&PersonDiff> = c.differing.iter().filter(|d| d.mendable()).collect();
    if mendable.is_empty() {
        return Ok(None);
    }
    let (options, settings) = resend_options(args, PERSONS_PAGE)?;
    let persons: Vec<(_, String)> = mendable.iter().map(|d| (d.to_send(), d.salt())).collect();
    let sending: Vec<PersonToSend> = persons.iter().map(|(p, salt)| PersonToSend::new(p, salt)).collect();
    note!(
        "Sending {} again: their current properties, and their missing distinct ids linked...",
        n(sending.len() as u64, "person", "persons")
    );
    let sent = send_persons(&sending, &options, Utc::now());
    if let Some(stop) = &sent.stopped {
        return Ok(Some(stop_words(stop, &settings.destination.base_url)));
    }
    let mut line = format!(
        "Sent again: {} of {}",
        thousands(sent.delivered.len() as u64),
        n(sending.len() as u64, "person", "persons")
    );
    if !sent.rejected.is_empty() {
        line.push_str(&format!(", {} refused ({})", sent.rejected.len(), sent.rejected[0].1));
    }
    if sent.undelivered > 0 {
        line.push_str(&format!(
            ", {} events not delivered after every attempt ({})",
            sent.undelivered,
            sent.undelivered_reason.unwrap_or_default()
        ));
    }
    say!("{line}.");
    Ok(None)
}

pub fn run(args: &VerifyOptions) -> Outcome {
    if matches!(args.from, VerifyFrom::Amplitude | VerifyFrom::Mixpanel | VerifyFrom::Files) {
        return Err(CommandError::Usage(
            "--persons compares the persons of a PostHog: give --from clickhouse or --from query-api".into(),
        ));
    }
    if args.start.is_some() || args.end.is_some() {
        return Err(CommandError::Usage(
            "--persons compares every person, whatever its events' days: leave out --start and --end".into(),
        ));
    }
    let retry = RetryPolicy::new(args.retry_scale);
    let mut source: Box<dyn PersonSource> = match args.from {
        VerifyFrom::Clickhouse => Box::new(ClickHousePersons { clickhouse: args.source.clickhouse() }),
        _ => {
            let mut client = args.source.query_api()?;
            client.host = host(&client.host);
            client.retry = retry;
            Box::new(QueryApiPersons { client })
        }
    };
    let mut client = destination_client(args);
    client.retry = retry;
    let mut destination = QueryApiPersons { client };
    let (source_name, destination_name) = (source.describe(), destination.describe());
    note!("Verifying the persons of {source_name} against {destination_name} (matched by distinct id).");
    let mut comparison = compare(source.as_mut(), &mut destination, &retry, PERSONS_PAGE)?;
    if args.resend && comparison.differing.iter().any(PersonDiff::mendable) {
        print_table(&comparison);
        say!("{}", ending(&comparison).last_line);
        if let Some(stopped) = resend(args, &comparison)? {
            note!("Stopped: {stopped}");
            return Ok(Exit::Refused);
        }
        // Ingestion takes a while: the persons sent are compared again (reading only the
        // persons that hold their distinct ids) until they match or the wait is over.
        let started = Instant::now();
        let bound = Duration::from_secs_f64(args.wait.unwrap_or(defaults::RESEND_WAIT_MINUTES) * 60.0);
        let every = Duration::from_secs_f64((args.settle_minutes * 15.0).clamp(1.0, 30.0));
        loop {
            comparison.differing = compare_again(&comparison.differing, &mut destination, &retry)?;
            let waiting = comparison.differing.iter().filter(|d| d.mendable()).count() as u64;
            if waiting == 0 || started.elapsed() >= bound {
                break;
            }
            note!("{} not there yet: comparing again in {} s.", n(waiting, "person", "persons"), every.as_secs());
            std::thread::sleep(every);
        }
        comparison.at_destination =
            retry.read(|| destination.count()).map_err(crate::pipeline::error::PipelineError::from)?;
        say!("\nThe persons sent again, compared again:");
    }
    print_table(&comparison);
    let outcome = ending(&comparison);
    note!(
        "{} queries to the destination's Query API (PostHog allows {} an hour). Not compared: {}, and the properties \
         only the destination holds.",
        destination.client.queries,
        defaults::QUERIES_PER_HOUR,
        IGNORED.join(", ")
    );
    if let Some(path) = &args.report {
        let page = report::persons_html(&report::PersonsReport {
            source: &source_name,
            destination: &destination_name,
            last_line: &outcome.last_line,
            comparison: &comparison,
        });
        std::fs::write(path, page)
            .map_err(|e| CommandError::Failed(format!("--report: {} cannot be written: {e}", path.display())))?;
        note!("Report: {}", path.display());
    }
    say!("{}", outcome.last_line);
    Ok(outcome.code)
}
