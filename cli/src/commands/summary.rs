//! What to say when a migration ends, in the command's own words.

use std::path::Path;

use migrator3000::delivery::Refusal;
use migrator3000::dispatch::{KeepState, Stop};

use super::exit::{CommandError, Exit, Outcome};
use crate::pipeline::migration::Finished;
use crate::pipeline::page_loop::Ended;
use crate::pipeline::persons::PersonsCopied;
use crate::shared::reporter::{note, say};
use crate::store::settle::Settled;
use crate::store::state_file::StateFile;

/// The destination's refusal in the command's words (its flags; never the app's
/// settings form); `destination`, where it went (the base URL, or a request's).
pub fn refusal_words(refusal: &Refusal, destination: &str) -> String {
    let base = migrator3000::host::parse(destination).map_or(destination.to_string(), |d| d.base_url);
    match refusal {
        Refusal::Key { status } => format!(
            "the destination refused the project API key (HTTP {status}). Check --project-api-key (the destination \
             project's API key, phc_...) and --host (a key belongs to one PostHog: us.i.posthog.com and \
             eu.i.posthog.com are apart)."
        ),
        Refusal::NotCapture { status } => {
            format!("the destination answered HTTP {status}: it does not look like PostHog's capture. Check --host.")
        }
        Refusal::Endpoint { status, said } => format!(
            "the destination refuses every event alone with the answer it gave the whole request (HTTP {status} \
             {said}): that is about where the events go (a redirect, e.g. from http:// to https://, turns POST into \
             GET). Check --host."
        ),
        Refusal::NotCaptureAnswer { status, said } => format!(
            "--host {base} answered HTTP {status} with something that is not PostHog capture's answer ({said}): a web \
             app or proxy answers there, and nothing says the events arrived, so none is counted delivered. Check \
             --host: PostHog's capture (e.g. us.i.posthog.com, or your instance's address)."
        ),
        Refusal::EndpointLimit { status, bytes } => format!(
            "the destination {base} refuses a request of one event ({} KB) as too large (HTTP {status}), though \
             capture takes 20 MB a request (2 MB on older builds): the limit is that of a proxy in front of capture \
             (nginx's client_max_body_size is 1 MB by default). Raise it to 20 MB for {base}/batch/; no event was \
             rejected for it.",
            bytes.div_ceil(1024)
        ),
        Refusal::Redirect { status, to } => format!(
            "--host {base} redirects (HTTP {status}){}: events are not sent through a redirect (a POST becomes a \
             GET). Write {}.",
            if to.is_empty() { String::new() } else { format!(" to {to}") },
            migrator3000::host::of_location(to)
                .map_or("--host as where it redirects to".into(), |host| format!("--host {host}"))
        ),
        Refusal::PlainHttp { said } => format!(
            "--host {base} speaks plain http, not https ({said}). Write --host {}.",
            base.replacen("https://", "http://", 1)
        ),
    }
}

/// Why a dispatch to `destination` stopped, in the command's words.
pub fn stop_words(stop: &Stop, destination: &str) -> String {
    match stop {
        Stop::Refused(refusal) => refusal_words(refusal, destination),
        Stop::Held(message) => message.clone(),
    }
}

/// How a dry run ends: as a migration of what it read would.
pub fn after_dry_run(ended: Ended) -> Outcome {
    match ended {
        Ended::Unaccounted(_) => Ok(Exit::Incomplete),
        _ => Ok(Exit::Done),
    }
}

/// What the runs of a migration did, and how the command ends.
pub fn after_migration(state: &StateFile, finished: Finished, destination: &str, remarks: &[String]) -> Outcome {
    let Finished::Ran { runs, seconds, ended } = finished else { return Ok(Exit::Done) };
    let mut total = Settled::default();
    let (mut rejected, mut parked) = (0, 0);
    let mut samples = Vec::new();
    for id in &runs {
        let Some(run) = state.run(id)? else { continue };
        total.read += run.read;
        total.delivered += run.delivered;
        total.live += run.live;
        total.duplicates += run.duplicates;
        rejected += run.rejected;
        parked += state.count_events(id, KeepState::Parked.name())?;
        samples.extend(state.rejected_sample(id, 10)?);
    }
    say!(
        "{} events read, {} delivered, {rejected} rejected, {parked} parked, in {seconds:.1} s.",
        total.read,
        total.delivered
    );
    for (uuid, event, reason) in samples.into_iter().take(10) {
        if uuid.is_empty() {
            say!("  rejected: {reason}");
        } else {
            say!("  rejected {event:?} (uuid {uuid}): {reason}");
        }
    }
    if total.live > 0 {
        say!(
            "{} events younger than 48 hours were sent without historical_migration, as PostHog asks (it counts \
             them as ordinary ingestion).",
            total.live
        );
    }
    if total.duplicates > 0 {
        say!(
            "{} rows at the source were duplicates of an event (the same uuid: rows its ReplacingMergeTree had not \
             merged yet): each event was sent once.",
            total.duplicates
        );
    }
    if ended != Ended::Interrupted {
        for remark in remarks {
            say!("{remark}");
        }
    }
    match ended {
        Ended::Short(short) => {
            say!(
                "Not complete: {} events the source holds were not read, in {}. They are not settled: run the same \
                 command again to read them again. Missed again, the source answers fewer events than it counts (a \
                 limit on its answers, such as max_result_rows on the ClickHouse user, or a Query API that cuts its \
                 answers short).",
                short.missing(),
                short.windows_in_words()
            );
            Ok(Exit::Incomplete)
        }
        Ended::Unaccounted(why) => {
            note!("The migration is not complete: {why}.");
            Ok(Exit::Incomplete)
        }
        Ended::Complete if parked > 0 => {
            say!(
                "Some requests were parked after their attempts: run `migrator3000 resend-parked` to send them again."
            );
            Ok(Exit::Parked)
        }
        Ended::Complete => {
            say!("The migration is complete.");
            Ok(Exit::Done)
        }
        Ended::Stopped(refusal) => {
            note!(
                "Stopped: {}\nNothing past the last acknowledged page moved; fix it and run the command again.",
                refusal_words(&refusal, destination)
            );
            Ok(Exit::Refused)
        }
        Ended::Unreachable(cause) => Err(CommandError::Failed(format!(
            "the destination {destination} cannot be reached: {cause}. Check --host, and that this machine reaches \
             it. Nothing past the last acknowledged page moved: run the same command again once it answers."
        ))),
        Ended::Interrupted => {
            note!("{}", interrupted_words(state.path()));
            Ok(Exit::Interrupted)
        }
    }
}

/// What the persons step did, and how the command ends.
pub fn after_persons(copied: &PersonsCopied, destination: &str) -> Outcome {
    say!(
        "{} persons read, {} sent ({} further distinct ids linked), {} unchanged since an earlier run, {} refused, in \
         {:.1} s.",
        copied.read,
        copied.sent,
        copied.links,
        copied.unchanged,
        copied.rejected.len(),
        copied.seconds
    );
    if copied.without_ids > 0 {
        say!(
            "{} persons have no distinct id at the source: nothing can name them, they are not sent.",
            copied.without_ids
        );
    }
    for (person, why) in copied.rejected.iter().take(10) {
        say!("  person {person} refused: {why}");
    }
    if let Some(stop) = &copied.stopped {
        note!(
            "Stopped: {}\nThe persons not yet taken are sent by the same command again.",
            stop_words(stop, destination)
        );
        return Ok(Exit::Refused);
    }
    if copied.undelivered > 0 {
        return Err(CommandError::Failed(format!(
            "the destination {destination} did not take {} events of persons after all their attempts; run the same \
             command again to send the persons not yet taken",
            copied.undelivered
        )));
    }
    if copied.links > 0 {
        // The persons step cannot tell this itself: capture answers 200 either way, and
        // PostHog records the refusal as an ingestion warning only.
        say!(
            "A distinct id the destination already held for another identified person stays with it (never merged); \
             `migrator3000 verify --persons` names any."
        );
    }
    say!("The persons are copied.");
    Ok(Exit::Done)
}

/// What a run stopped by Ctrl-C says last.
pub fn interrupted_words(state_path: &Path) -> String {
    format!(
        "Interrupted (Ctrl-C): what is counted above is recorded in {}, every page whose requests were all answered \
         with it. Run the same command again to resume: it sends none of those again.",
        state_path.display()
    )
}
