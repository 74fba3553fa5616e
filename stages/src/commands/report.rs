//! `magpipe report`: one self-contained HTML file (no network, images embedded) with Table 1,
//! Table 2 coloured like the paper, the published Table 2 beside it, the figures, per-predictor
//! metrics, a variant comparison and the lineage of Table 2.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;

use magpipe_engine::compare;
use magpipe_engine::error::RunError;
use magpipe_engine::exec::{self, Freshness};
use magpipe_engine::plan::Plan;
use magpipe_engine::provenance;
use magpipe_engine::store::{Record, Store};

use crate::kind::TypedKind;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The GitHub-style Markdown magpipe writes (headings, paragraphs, pipe tables, **bold**,
/// `code`) as HTML.
pub fn markdown_to_html(md: &str) -> String {
    let inline = |s: &str| {
        let mut out = String::new();
        let mut bold = false;
        let mut code = false;
        let e = esc(s);
        let mut chars = e.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    out.push_str(if bold { "</strong>" } else { "<strong>" });
                    bold = !bold;
                }
                '`' => {
                    out.push_str(if code { "</code>" } else { "<code>" });
                    code = !code;
                }
                c => out.push(c),
            }
        }
        out
    };
    let mut out = String::new();
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_end();
        if l.starts_with('|') {
            out.push_str("<table>\n");
            let cells = |row: &str| -> Vec<String> {
                let row = row.trim().trim_start_matches('|').trim_end_matches('|');
                let mut cells = Vec::new();
                let mut cur = String::new();
                let mut prev = ' ';
                for ch in row.chars() {
                    if ch == '|' && prev != '\\' {
                        cells.push(std::mem::take(&mut cur));
                    } else {
                        cur.push(ch);
                    }
                    prev = ch;
                }
                cells.push(cur);
                cells
                    .into_iter()
                    .map(|c| c.trim().replace("\\|", "|"))
                    .collect()
            };
            let head = cells(l);
            out.push_str("<tr>");
            for h in &head {
                let _ = write!(out, "<th>{}</th>", inline(h));
            }
            out.push_str("</tr>\n");
            i += 2; // header and the --- line
            while i < lines.len() && lines[i].starts_with('|') {
                out.push_str("<tr>");
                for c in cells(lines[i]) {
                    let _ = write!(out, "<td>{}</td>", inline(&c));
                }
                out.push_str("</tr>\n");
                i += 1;
            }
            out.push_str("</table>\n");
            continue;
        }
        if let Some(h) = l.strip_prefix("### ") {
            let _ = writeln!(out, "<h4>{}</h4>", inline(h));
        } else if let Some(h) = l.strip_prefix("## ") {
            let _ = writeln!(out, "<h3>{}</h3>", inline(h));
        } else if let Some(h) = l.strip_prefix("# ") {
            let _ = writeln!(out, "<h3>{}</h3>", inline(h));
        } else if !l.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", inline(l));
        }
        i += 1;
    }
    out
}

fn fresh(plan: &Plan, store: &Store) -> Result<BTreeMap<usize, Record>, RunError> {
    let mut out = BTreeMap::new();
    for (i, f) in exec::status(plan, store, &plan.order)? {
        if let Freshness::Fresh(r) = f {
            out.insert(i, *r);
        }
    }
    Ok(out)
}

fn read(store: &Store, r: &Record, output: &str) -> Option<String> {
    r.outputs
        .get(output)
        .and_then(|o| std::fs::read_to_string(store.object_path(o)).ok())
}

/// The CSS class of a Table 2 cell: the alarms stage's own status, one word.
fn status_class(category: &str, delay: i64) -> &'static str {
    use crate::alarms::{Category, status};
    match category.parse::<Category>().map(|c| status(c, delay)) {
        Ok("success") => "success",
        Ok("delayed") => "delayed",
        Ok("false alarm") => "ilap",
        Ok("missed") => "missed",
        _ => "quiet",
    }
}

/// Table 2 from `score_alarms`' table2.csv, coloured, with the published category beside each
/// cell when a reference is given.
fn table2_html(csv: &str, published: &BTreeMap<(String, String), String>, delay: i64) -> String {
    // (ar, [(tile, category)])
    type Row = (String, Vec<(String, String)>);
    let mut rows: Vec<Row> = Vec::new();
    let Ok(cells) = crate::alarms::read_table2_csv(csv) else {
        return "<p>Table 2 is not in the expected layout.</p>".into();
    };
    for c in cells {
        if rows.last().map(|(a, _)| *a != c.ar).unwrap_or(true) {
            rows.push((c.ar.clone(), Vec::new()));
        }
        rows.last_mut()
            .expect("pushed")
            .1
            .push((c.tile, c.category));
    }
    let width = rows.iter().map(|(_, c)| c.len()).max().unwrap_or(1) - 1;
    let mut out = String::from("<table class=\"table2\">\n<tr><th>AR</th>");
    for i in 1..=width {
        let _ = write!(out, "<th>tile {i}</th>");
    }
    out.push_str("<th>Emergence</th></tr>\n");
    let (mut matched, mut total) = (0, 0);
    for (ar, cells) in &rows {
        let _ = write!(out, "<tr class=\"ar\"><th>{}</th>", esc(ar));
        for (tile, cat) in cells {
            let class = status_class(cat, delay);
            let label = if tile == "Emergence" {
                cat.clone()
            } else {
                format!("{tile} {cat}")
            };
            let pubd = published.get(&(ar.clone(), tile.clone()));
            let mark = match pubd {
                Some(p) => {
                    total += 1;
                    let same_kind = crate::alarms::Category::same_kind_text(p, cat);
                    matched += same_kind as usize;
                    format!(
                        "<div class=\"pub {}\">published: {}</div>",
                        if same_kind { "same" } else { "differs" },
                        esc(p)
                    )
                }
                None => String::new(),
            };
            let _ = write!(out, "<td class=\"{class}\">{}{mark}</td>", esc(&label));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    if total > 0 {
        let _ = writeln!(
            out,
            "<p>{matched} of {total} cells match the published Table 2 in category.</p>"
        );
    }
    out
}

pub struct ReportInput<'a> {
    pub plan: &'a Plan,
    pub name: String,
    /// Further variants to compare with, already built.
    pub others: Vec<(String, Plan)>,
}

pub fn html(input: &ReportInput<'_>, store: &Store) -> Result<String, RunError> {
    let plan = input.plan;
    let recs = fresh(plan, store)?;
    let by_kind = |kind: &str| -> Vec<(usize, &Record)> {
        recs.iter()
            .filter(|(i, _)| plan.stages[**i].kind.name() == kind)
            .map(|(i, r)| (*i, r))
            .collect()
    };
    let Some((ti, tables)) = by_kind("render_tables").into_iter().next() else {
        return Err(RunError::Usage(
            "no up-to-date `render_tables` stage: run `magpipe run` first".into(),
        ));
    };
    let alarms = by_kind("score_alarms");
    let delay = alarms
        .first()
        .map_or(crate::alarms::DEFAULT_DELAY_HOURS, |(i, _)| {
            crate::alarms::delay_hours(&plan.stages[*i].params)
        });
    // The published table as render_tables reads it; the report shows nothing beside the cells
    // when it cannot be read (render_tables has already said why).
    let published: BTreeMap<(String, String), String> = plan.stages[ti].params["published"]
        .as_str()
        .and_then(|path| crate::report::read_published(std::path::Path::new(path)).ok())
        .map(|cells| cells.into_iter().map(|(k, c)| (k, c.to_string())).collect())
        .unwrap_or_default();

    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>MagFlux study — magpipe report</h1>\n<p class=\"meta\">Variant <code>{}</code> · magpipe {} @ <code>{}</code></p>\n",
        esc(&input.name),
        env!("CARGO_PKG_VERSION"),
        esc(magpipe_engine::GIT_COMMIT)
    );
    body.push_str("<h2>Table 2 — emergence alarms</h2>\n<p class=\"legend\"><span class=\"success\">alarm ≥ delay (success)</span> <span class=\"delayed\">alarm &lt; delay (delayed)</span> <span class=\"ilap\">ILAP (false alarm)</span> <span class=\"missed\">NO PRED (missed)</span> <span class=\"quiet\">Quiet</span></p>\n");
    if let Some((_, a)) = alarms.first()
        && let Some(csv) = read(store, a, "table2")
    {
        body.push_str(&table2_html(&csv, &published, delay));
    }
    if let Some(md) = read(store, tables, "table2") {
        // The success lines under the table.
        for l in md.lines().filter(|l| l.starts_with("Operationally")) {
            let _ = writeln!(body, "<p>{}</p>", esc(l));
        }
    }
    // The answer to "better than the simple alternatives, and how sure?": the evaluation's
    // Markdown (answer, scores, paired comparisons, contingency tables) and its forest plot.
    if let Some((_, r)) = by_kind(crate::evaluate::Evaluate::NAME).into_iter().next() {
        body.push_str("<h2>Evaluation — skill, intervals and paired comparisons</h2>\n");
        if let Some(o) = r.outputs.get("forest_png")
            && let Ok(bytes) = std::fs::read(store.object_path(o))
        {
            let _ = writeln!(
                body,
                "<figure><img alt=\"forest plot\" src=\"data:image/png;base64,{}\"><figcaption>Each predictor's score with its 95 % bootstrap interval; the dashed line is the primary model's value.</figcaption></figure>",
                base64::engine::general_purpose::STANDARD.encode(bytes),
            );
        }
        if let Some(md) = read(store, r, "evaluation_md") {
            // The title is the section heading's.
            let rest = md.split_once('\n').map_or(&md[..], |(_, r)| r);
            body.push_str(&markdown_to_html(rest));
        }
    }
    body.push_str("<h2>Table 1 — configurations</h2>\n");
    if let Some(md) = read(store, tables, "table1") {
        body.push_str(&markdown_to_html(
            md.split_once('\n').map_or(&md[..], |(_, r)| r),
        ));
    }
    body.push_str("<h2>Figures</h2>\n");
    for (i, r) in by_kind("render_figure") {
        // One PNG per AR, `png_<AR>`, in the order the stage lists them.
        for ar in plan.stages[i].params["ars"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let caption = format!("{} — AR{ar}", plan.stages[i].name);
            if let Some(o) = r.outputs.get(&format!("png_{ar}"))
                && let Ok(bytes) = std::fs::read(store.object_path(o))
            {
                let _ = writeln!(
                    body,
                    "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
                    esc(&caption),
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                    esc(&caption),
                );
            }
        }
    }
    body.push_str("<h2>Predictors compared</h2>\n");
    if let Some(md) = read(store, tables, "comparison") {
        let every = md.split("## Every predictor").nth(1).unwrap_or_default();
        body.push_str(&markdown_to_html(every));
    }
    if !input.others.is_empty() {
        body.push_str("<h2>Variants compared</h2>\n");
        let mut plans = vec![(input.name.clone(), plan.clone())];
        plans.extend(input.others.iter().map(|(n, p)| (n.clone(), p.clone())));
        let c = compare::compare(&plans, store)?;
        body.push_str(&markdown_to_html(&compare::markdown(&c)));
    }
    body.push_str("<h2>Provenance of Table 2</h2>\n");
    let stage = &plan.stages[ti].name;
    match provenance::lineage(plan, store, stage, Some("table2")) {
        Ok(l) => body.push_str(&markdown_to_html(&provenance::lineage_markdown(&l))),
        Err(e) => {
            let _ = write!(body, "<p>{}</p>", esc(&e.to_string()));
        }
    }
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>magpipe report — {}</title>\n<style>{CSS}</style></head>\n<body>\n{body}</body></html>\n",
        esc(&input.name)
    ))
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1500px;color:#222}\
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}\
td,th{border:1px solid #bbb;padding:.25em .5em;vertical-align:top}th{background:#f3f3f3}\
.success{background:#c8e6c9}.quiet{background:#e8f5e9}.delayed{background:#ffe0b2}\
.ilap,.missed{background:#ffcdd2}.legend span{padding:.2em .5em;margin-right:.4em}\
.pub{font-size:.8em;color:#555}.pub.differs{color:#b71c1c;font-weight:bold}\
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}.meta{color:#666}";
