//! `--report FILE.html`: one self-contained page (inline CSS and SVG, nothing fetched
//! from elsewhere, so it opens offline and can be mailed): a chart of the events per day
//! at the source and at the destination with the days that differ marked, the table,
//! and for each day that differs its missing and extra uuids (the first 100 of each).

use std::fmt::Write;

use crate::pipeline::verification::compare::{Day, Verdict};
use crate::pipeline::verification::persons::{Comparison, PersonDiff};
use crate::shared::words::thousands;

/// Uuids listed per day and kind.
pub const LISTED: usize = 100;

pub struct Report<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub range: &'a str,
    pub last_line: &'a str,
    pub days: &'a [Day],
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn marked(day: &Day) -> bool {
    !matches!(day.verdict, Verdict::Equal)
}

const STYLE: &str = "
body { font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1d1f24; margin: 2rem auto;
       max-width: 1040px; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; }
.verdict { font-size: 1.1rem; padding: .6rem .9rem; border-radius: 6px; margin: 1rem 0; }
.verdict.ok { background: #e5f5e9; border: 1px solid #7cc08f; }
.verdict.bad { background: #fdecea; border: 1px solid #e0796d; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; color: #4a4f59; }
dt { font-weight: 600; }
svg { width: 100%; height: auto; background: #fbfbfc; border: 1px solid #e3e5e9; border-radius: 6px; }
svg text { font: 11px system-ui, sans-serif; fill: #4a4f59; }
.bar-source { fill: #5b7bd5; }
.bar-destination { fill: #3aa17e; }
.marked { fill: #f3b2aa; }
.grid { stroke: #e3e5e9; }
.legend span { display: inline-block; width: .8rem; height: .8rem; margin: 0 .3rem 0 1rem; vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #e3e5e9; text-align: right; }
th:first-child, td:first-child, th:last-child, td.status { text-align: left; }
tr.differs td { background: #fdecea; }
tr.arriving td { background: #fff6dd; }
tr.unknown td { background: #eef0f3; }
code { font: 12px ui-monospace, 'SFMono-Regular', Menlo, monospace; }
ul.uuids { columns: 2; list-style: none; padding: 0; }
";

/// The chart: per day a bar for each side, and behind the days that differ a band.
fn chart(days: &[Day]) -> String {
    let (width, height, left, bottom, top) = (960.0, 300.0, 64.0, 36.0, 14.0);
    let plot_w = width - left - 12.0;
    let plot_h = height - bottom - top;
    // A tenth above the highest bar, so that it does not touch the top.
    let most = days.iter().map(|d| d.source.events.max(d.destination.events)).max().unwrap_or(0).max(1) as f64 * 1.1;
    let slot = plot_w / days.len().max(1) as f64;
    let y = |n: u64| top + plot_h - plot_h * n as f64 / most;
    let mut svg = format!(
        "<svg id=\"chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\" \
         aria-label=\"Events per day at the source and at the destination\">"
    );
    for i in 0..=4 {
        let n = (most * i as f64 / 4.0).round() as u64;
        let at = y(n);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{}\" y1=\"{at:.1}\" y2=\"{at:.1}\"/><text x=\"{}\" y=\"{:.1}\" \
             text-anchor=\"end\">{}</text>",
            width - 12.0,
            left - 6.0,
            at + 4.0,
            thousands(n)
        );
    }
    let label_every = (days.len() / 12).max(1);
    for (i, day) in days.iter().enumerate() {
        let x = left + slot * i as f64;
        if marked(day) {
            let _ = write!(
                svg,
                "<rect class=\"marked\" data-day=\"{}\" x=\"{x:.2}\" y=\"{top}\" width=\"{slot:.2}\" \
                 height=\"{plot_h}\"><title>{}: {}</title></rect>",
                day.day,
                day.day,
                day.verdict.name()
            );
        }
        let bar = (slot * 0.38).max(0.5);
        for (class, n, offset) in
            [("bar-source", day.source.events, slot * 0.1), ("bar-destination", day.destination.events, slot * 0.52)]
        {
            let _ = write!(
                svg,
                "<rect class=\"{class}\" data-day=\"{}\" x=\"{:.2}\" y=\"{:.2}\" width=\"{bar:.2}\" height=\"{:.2}\"><title>{} \
                 {}: {}</title></rect>",
                day.day,
                x + offset,
                y(n),
                top + plot_h - y(n),
                day.day,
                if class == "bar-source" { "at the source" } else { "at the destination" },
                thousands(n)
            );
        }
        if i % label_every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.2}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + slot / 2.0,
                height - bottom + 16.0,
                day.day.format("%b %d")
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn uuid_list(title: &str, uuids: &[String]) -> String {
    if uuids.is_empty() {
        return String::new();
    }
    let mut out = format!("<h4>{title} ({})</h4><ul class=\"uuids\">", thousands(uuids.len() as u64));
    for uuid in uuids.iter().take(LISTED) {
        let _ = write!(out, "<li><code>{}</code></li>", escape(uuid));
    }
    out.push_str("</ul>");
    if uuids.len() > LISTED {
        let _ = write!(
            out,
            "<p>and {} more (all of them are in the state file, table <code>verify_uuids</code>).</p>",
            thousands((uuids.len() - LISTED) as u64)
        );
    }
    out
}

pub fn html(report: &Report<'_>) -> String {
    let ok = report.days.iter().all(|d| !marked(d));
    let mut page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>migrator3000 verify: {}</title><style>{STYLE}</style>\
         </head><body><h1>Did every event arrive?</h1><p class=\"verdict {}\" id=\"verdict\">{}</p><dl><dt>Source</dt>\
         <dd>{}</dd><dt>Destination</dt><dd>{}</dd><dt>Days</dt><dd>{} (UTC)</dd><dt>Made</dt><dd>{}</dd></dl>",
        escape(report.range),
        if ok { "ok" } else { "bad" },
        escape(report.last_line),
        escape(report.source),
        escape(report.destination),
        escape(report.range),
        migrator3000::timestamp::format(chrono::Utc::now())
    );
    page.push_str("<h2>Events per day</h2>");
    page.push_str(&chart(report.days));
    page.push_str(
        "<p class=\"legend\"><span style=\"background:#5b7bd5\"></span>at the source\
         <span style=\"background:#3aa17e\"></span>at the destination<span style=\"background:#f3b2aa\"></span>a day \
         that differs, is still arriving or could not be counted</p>",
    );
    page.push_str(
        "<h2>Day by day</h2><table id=\"days\"><thead><tr><th>day</th><th>at the source</th><th>at the destination\
         </th><th>missing</th><th>extra</th><th>status</th></tr></thead><tbody>",
    );
    for day in report.days {
        let class = match day.verdict {
            Verdict::Equal => "equal",
            Verdict::Differs => "differs",
            Verdict::StillArriving => "arriving",
            Verdict::Unknown(_) => "unknown",
        };
        let status = match &day.verdict {
            Verdict::Unknown(why) => format!("not counted: {}", escape(why)),
            other => other.name().to_string(),
        };
        let (missing, extra) = match day.verdict {
            Verdict::Differs => (thousands(day.missing.len() as u64), thousands(day.extra.len() as u64)),
            _ => ("".into(), "".into()),
        };
        let _ = write!(
            page,
            "<tr class=\"{class}\" data-day=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{missing}</td><td>{extra}</td>\
             <td class=\"status\">{status}</td></tr>",
            day.day,
            day.day,
            thousands(day.source.events),
            thousands(day.destination.events)
        );
    }
    page.push_str("</tbody></table>");
    let differing: Vec<&Day> = report.days.iter().filter(|d| !d.missing.is_empty() || !d.extra.is_empty()).collect();
    if !differing.is_empty() {
        page.push_str("<h2>Which events</h2>");
        for day in differing {
            let _ = write!(page, "<section class=\"day\" data-day=\"{}\"><h3>{}</h3>", day.day, day.day);
            page.push_str(&uuid_list("Missing at the destination", &day.missing));
            page.push_str(&uuid_list("Extra at the destination (not at the source)", &day.extra));
            page.push_str("</section>");
        }
    }
    page.push_str(
        "<h2>What this shows</h2><p>Each UTC day's distinct events (uuids) at the source and at the destination, \
         counted by each side's own engine; rows the destination has not merged yet count once. Where a day's \
         counts differ, the uuids of both sides were compared one by one. It cannot show events the destination \
         deleted on purpose; groups are not compared, and persons are compared by <code>verify --persons</code>.\
         </p></body></html>",
    );
    page
}

/// A value as it is shown: its JSON, cut at `most` characters.
pub fn shown(value: Option<&serde_json::Value>, most: usize) -> String {
    let Some(value) = value else { return "(none)".into() };
    let text = value.to_string();
    if text.chars().count() > most {
        format!("{}…", text.chars().take(most).collect::<String>())
    } else {
        text
    }
}

pub struct PersonsReport<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub last_line: &'a str,
    pub comparison: &'a Comparison,
}

/// The page of `verify --persons`: the verdict, the counts, and for each kind of
/// difference the first `LISTED` persons (properties with the source's and the
/// destination's value).
pub fn persons_html(report: &PersonsReport<'_>) -> String {
    let c = report.comparison;
    let mut page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>migrator3000 verify --persons</title><style>{STYLE}\
         </style></head><body><h1>Did every person arrive whole?</h1><p class=\"verdict {}\" id=\"verdict\">{}</p>\
         <dl><dt>Source</dt><dd>{}</dd><dt>Destination</dt><dd>{}</dd><dt>Made</dt><dd>{}</dd></dl>",
        if c.equal() { "ok" } else { "bad" },
        escape(report.last_line),
        escape(report.source),
        escape(report.destination),
        migrator3000::timestamp::format(chrono::Utc::now())
    );
    let properties: u64 = c.with_properties().map(|d| d.properties.len() as u64).sum();
    let counts = [
        ("persons at the source", c.at_source),
        ("their distinct ids", c.source_ids),
        ("persons at the destination", c.at_destination),
        ("persons missing", c.missing().count() as u64),
        ("distinct ids missing", c.missing_ids()),
        ("persons whose properties differ", c.with_properties().count() as u64),
        ("properties that differ", properties),
        ("distinct ids held by another person", c.held_elsewhere()),
        ("persons held with other distinct ids", c.with_other_ids().count() as u64),
        ("persons merged into one", c.merged.iter().map(|(_, s)| s.len() as u64).sum()),
    ];
    page.push_str("<h2>Counts</h2><table id=\"counts\"><tbody>");
    for (what, n) in counts {
        let class =
            if n > 0 && !what.contains("at the") && what != "their distinct ids" { " class=\"differs\"" } else { "" };
        let _ = write!(page, "<tr{class}><td>{what}</td><td>{}</td></tr>", thousands(n));
    }
    page.push_str("</tbody></table>");
    let who = |d: &PersonDiff| {
        format!(
            "<code>{}</code> ({})",
            escape(&d.source.id),
            escape(d.source.distinct_ids.first().map(String::as_str).unwrap_or(""))
        )
    };
    let section = |page: &mut String, id: &str, title: &str, head: &str, rows: Vec<String>| {
        if rows.is_empty() {
            return;
        }
        let _ = write!(
            page,
            "<h2>{title} ({})</h2><table id=\"{id}\"><thead><tr>{head}</tr></thead><tbody>",
            thousands(rows.len() as u64)
        );
        for row in rows.iter().take(LISTED) {
            let _ = write!(page, "<tr>{row}</tr>");
        }
        page.push_str("</tbody></table>");
        if rows.len() > LISTED {
            let _ = write!(page, "<p>and {} more.</p>", thousands((rows.len() - LISTED) as u64));
        }
    };
    let cell = |text: &str| format!("<td style=\"text-align:left\">{}</td>", escape(text));
    section(
        &mut page,
        "missing-persons",
        "Persons missing at the destination",
        "<th>person at the source</th><th>its distinct ids</th>",
        c.missing().map(|d| format!("<td>{}</td>{}", who(d), cell(&d.source.distinct_ids.join(", ")))).collect(),
    );
    section(
        &mut page,
        "missing-ids",
        "Distinct ids missing",
        "<th>person at the source</th><th>distinct id</th><th>its person at the destination</th>",
        c.differing
            .iter()
            .filter(|d| d.destination.is_some())
            .flat_map(|d| {
                d.missing_ids.iter().map(move |id| {
                    format!("<td>{}</td>{}{}", who(d), cell(id), cell(d.destination.as_deref().unwrap_or("")))
                })
            })
            .collect(),
    );
    section(
        &mut page,
        "properties",
        "Properties that differ",
        "<th>person at the source</th><th>property</th><th>at the source</th><th>at the destination</th>",
        c.with_properties()
            .flat_map(|d| {
                d.properties.iter().map(move |p| {
                    format!(
                        "<td>{}</td>{}{}{}",
                        who(d),
                        cell(&p.key),
                        cell(&shown(Some(&p.source), 500)),
                        cell(&shown(p.destination.as_ref(), 500))
                    )
                })
            })
            .collect(),
    );
    section(
        &mut page,
        "held-elsewhere",
        "Distinct ids the destination holds for another person (not linked: that would merge two persons)",
        "<th>person at the source</th><th>distinct id</th><th>held at the destination by</th>",
        c.differing
            .iter()
            .flat_map(|d| {
                d.held_elsewhere
                    .iter()
                    .map(move |(id, other)| format!("<td>{}</td>{}{}", who(d), cell(id), cell(other)))
            })
            .collect(),
    );
    section(
        &mut page,
        "other-ids",
        "Persons whose person at the destination also holds distinct ids the source's does not",
        "<th>person at the source</th><th>its person at the destination</th><th>its other distinct ids</th>",
        c.with_other_ids()
            .map(|d| {
                format!(
                    "<td>{}</td>{}{}",
                    who(d),
                    cell(d.destination.as_deref().unwrap_or("")),
                    cell(&d.other_ids.join(", "))
                )
            })
            .collect(),
    );
    section(
        &mut page,
        "merged",
        "Persons of the source merged into one at the destination",
        "<th>person at the destination</th><th>persons at the source</th>",
        c.merged.iter().map(|(at, sources)| format!("{}{}", cell(at), cell(&sources.join(", ")))).collect(),
    );
    page.push_str(
        "<h2>What this shows</h2><p>Every person of the source that is not deleted, matched at the destination by \
         its distinct ids (person ids differ between two PostHogs): whether it is there, whether each of its \
         distinct ids belongs to it there, and each of its properties whose value differs, by each side's own \
         engine. Properties only the destination holds are not compared, nor <code>$creator_event_uuid</code> \
         (which names the event that made the person at each PostHog).</p></body></html>",
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::verification::side::DayCount;

    #[test]
    fn the_page_is_self_contained_escapes_what_it_shows_and_marks_the_day_that_differs() {
        let day = |n: u32, dst: u64, verdict: Verdict, missing: Vec<String>| Day {
            day: chrono::NaiveDate::from_ymd_opt(2021, 6, n).unwrap(),
            source: DayCount { rows: 200, events: 200, ..Default::default() },
            destination: DayCount { rows: dst, events: dst, ..Default::default() },
            missing,
            extra: vec![],
            verdict,
        };
        let missing: Vec<String> = (0..150).map(|i| format!("uuid-{i:03}")).collect();
        let days = [day(1, 200, Verdict::Equal, vec![]), day(2, 50, Verdict::Differs, missing)];
        let page = html(&Report {
            source: "ClickHouse <team 2>",
            destination: "d",
            range: "2021-06-01 to 2021-06-02",
            last_line: "Not everything arrived",
            days: &days,
        });
        assert!(!page.contains("http://") || page.matches("http://").count() == 1, "only the SVG namespace");
        assert!(!page.contains("https://") && !page.contains("<script") && !page.contains("<link"));
        assert!(page.contains("ClickHouse &lt;team 2&gt;"));
        assert_eq!(page.matches("class=\"marked\"").count(), 1);
        assert!(page.contains("<rect class=\"marked\" data-day=\"2021-06-02\""));
        assert!(page.contains("uuid-099") && !page.contains("uuid-100") && page.contains("and 50 more"));
    }
}
