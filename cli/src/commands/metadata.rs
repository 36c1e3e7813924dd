//! `migrator3000 metadata`: a project's actions, cohorts and feature flags copied to
//! another project (`pipeline::metadata`), the table of what became of each kind, the
//! objects that need a word, a last line that says whether the project is complete,
//! and with `--report` an HTML page of every object with links to both instances.

use std::path::{Path, PathBuf};

use super::exit::{CommandError, Exit, Outcome};
use crate::pipeline::error::PipelineError;
use crate::pipeline::metadata::{self, Ends, Fate, Report};
use crate::posthog_api::client::QueryApiClient;
use crate::posthog_api::rest::{RestError, METADATA_DESTINATION, METADATA_SOURCE};
use crate::shared::reporter::{note, say};
use crate::shared::retry::RetryPolicy;
use crate::store::state_file::{StateFile, Use};

pub struct MetadataOptions {
    pub source_host: String,
    pub source_project_id: u64,
    pub source_key: Option<String>,
    pub destination_host: String,
    pub destination_project_id: u64,
    pub destination_key: Option<String>,
    /// A comma list of kinds; empty for all.
    pub only: String,
    pub dry_run: bool,
    pub report: Option<PathBuf>,
    pub retry_scale: f64,
}

fn host(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    }
}

fn key(value: &Option<String>, variable: &str, side: &str) -> Result<String, CommandError> {
    match value.as_deref().map(str::trim) {
        Some(key) if !key.is_empty() => Ok(key.to_string()),
        _ => Err(CommandError::Usage(format!(
            "{variable} is not set: a personal API key of the {side} (PostHog: Settings > Personal API keys) that \
             may read and write actions, cohorts and feature flags"
        ))),
    }
}

pub fn run(state_path: &Path, o: &MetadataOptions) -> Outcome {
    let kinds = metadata::kinds_named(&o.only).map_err(|unknown| CommandError::Usage(unknown.to_string()))?;
    let source_key = key(&o.source_key, METADATA_SOURCE.key, "source")?;
    let destination_key = key(&o.destination_key, METADATA_DESTINATION.key, "destination")?;
    let ends = Ends {
        source_host: host(&o.source_host),
        source_project: o.source_project_id,
        destination_host: host(&o.destination_host),
        destination_project: o.destination_project_id,
    };
    if ends.source_host == ends.destination_host && ends.source_project == ends.destination_project {
        return Err(CommandError::Usage("the source and the destination are the same project".into()));
    }
    let retry = RetryPolicy::new(o.retry_scale);
    let mut source = QueryApiClient::rest(&ends.source_host, ends.source_project, &source_key, &METADATA_SOURCE, retry);
    let mut destination = QueryApiClient::rest(
        &ends.destination_host,
        ends.destination_project,
        &destination_key,
        &METADATA_DESTINATION,
        retry,
    );
    let state = StateFile::open(state_path, Use::Run)?;
    let report = match metadata::run(&state, &mut source, &mut destination, &ends, &kinds, o.dry_run) {
        Ok(report) => report,
        Err(PipelineError::Api(RestError::Key(message))) => {
            note!("Stopped: {message}");
            return Ok(Exit::Refused);
        }
        Err(PipelineError::Api(RestError::Stop(message))) => {
            return Err(CommandError::Failed(format!("{message}. Run the same command again to resume.")))
        }
        Err(other) => return Err(other.into()),
    };
    print(&report, o.dry_run);
    if let Some(path) = &o.report {
        std::fs::write(path, html(&report, &ends))
            .map_err(|e| CommandError::Failed(format!("the report {} cannot be written: {e}", path.display())))?;
        say!("The report: {}", path.display());
    }
    let total = report.total();
    Ok(if o.dry_run {
        Exit::Done
    } else if total.failed > 0 {
        Exit::Failed
    } else if total.skipped > 0 {
        Exit::Incomplete
    } else if total.conflicts > 0 {
        Exit::Differences
    } else {
        Exit::Done
    })
}

fn print(report: &Report, dry_run: bool) {
    let heads = if dry_run {
        ["kind", "at source", "to create", "to update", "to match", "in step", "changed there", "to skip", "failed"]
    } else {
        ["kind", "at source", "created", "updated", "matched", "in step", "changed there", "skipped", "failed"]
    };
    let mut rows: Vec<[String; 9]> = Vec::new();
    for (kind, t) in &report.tallies {
        rows.push([
            kind.name().to_string(),
            t.at_source.to_string(),
            t.created.to_string(),
            t.updated.to_string(),
            t.matched.to_string(),
            t.unchanged.to_string(),
            t.conflicts.to_string(),
            t.skipped.to_string(),
            t.failed.to_string(),
        ]);
    }
    let widths: Vec<usize> =
        (0..9).map(|i| rows.iter().map(|r| r[i].len()).chain([heads[i].len()]).max().unwrap_or(0)).collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    say!("{}", line(heads.to_vec()));
    for row in &rows {
        say!("{}", line(row.iter().map(String::as_str).collect()));
    }
    for l in &report.lines {
        let (word, why) = match &l.fate {
            Fate::Matched => {
                ("matched", format!("already at the destination as id {}", l.destination_id.as_deref().unwrap_or("?")))
            }
            Fate::Conflict(why) => ("changed there", why.clone()),
            Fate::Skipped(why) => ("skipped", why.clone()),
            Fate::Failed(why) => ("failed", why.clone()),
            Fate::Created | Fate::Updated | Fate::Unchanged => continue,
        };
        say!("  {} {} {:?}: {word}: {why}", l.kind, l.source_id, l.label);
    }
    let t = report.total();
    if dry_run {
        say!(
            "Dry run: nothing was sent or recorded. {} objects would be created, {} updated, {} matched; {} would be \
             skipped.",
            t.created,
            t.updated,
            t.matched,
            t.skipped
        );
    } else if t.failed + t.skipped > 0 {
        say!(
            "Not complete: {} of the source's {} objects have no copy at the destination ({} failed, {} skipped, \
             named above). Fix them and run the same command again: what was copied is not copied twice.",
            t.failed + t.skipped,
            t.at_source,
            t.failed,
            t.skipped
        );
    } else if t.conflicts > 0 {
        say!(
            "Complete, with {} objects changed at the destination since they were copied, left as they are there \
             (named above).",
            t.conflicts
        );
    } else {
        say!("Complete: each of the source's {} objects has its copy at the destination.", t.at_source);
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(report: &Report, ends: &Ends) -> String {
    let mut rows = String::new();
    for l in &report.lines {
        let kind = report.tallies.iter().map(|(k, _)| *k).find(|k| k.name() == l.kind);
        let link = |host: &str, project: u64, id: &str| match kind {
            Some(kind) => format!(
                "<a href=\"{}\">{}</a>",
                escape(&format!("{host}/project/{project}/{}", kind.app_path(id))),
                escape(id)
            ),
            None => escape(id),
        };
        let (fate, why) = match &l.fate {
            Fate::Created => ("created", String::new()),
            Fate::Updated => ("updated", String::new()),
            Fate::Matched => ("matched", String::new()),
            Fate::Unchanged => ("in step", String::new()),
            Fate::Conflict(why) => ("changed there", why.clone()),
            Fate::Skipped(why) => ("skipped", why.clone()),
            Fate::Failed(why) => ("failed", why.clone()),
        };
        rows.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            fate.replace(' ', "-"),
            escape(l.kind),
            escape(&l.label),
            link(&ends.source_host, ends.source_project, &l.source_id),
            l.destination_id.as_deref().map_or(String::new(), |d| link(
                &ends.destination_host,
                ends.destination_project,
                d
            )),
            fate,
            escape(&why)
        ));
    }
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>migrator3000 metadata</title>\n<style>body{{font:14px \
         system-ui}}td,th{{padding:2px 8px;text-align:left}}.failed,.skipped{{background:#fdd}}.changed-there{{\
         background:#ffd}}</style>\n<h1>{} project {} → {} project {}</h1>\n<table><tr><th>kind</th><th>name</th>\
         <th>source</th><th>destination</th><th>what became of it</th><th>why</th></tr>\n{rows}</table>\n",
        escape(&ends.source_host),
        ends.source_project,
        escape(&ends.destination_host),
        ends.destination_project
    )
}
