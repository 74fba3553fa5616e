//! The multi-seed Table 2 of `magpipe run --seeds`: per cell the majority category, the lead
//! mean ± sd, and per AR the share of seeds whose emergence alarm came in time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use magpipe_engine::exec::RunResult;
use magpipe_engine::store::Store;
use magpipe_engine::sweep::PointPlan;

use crate::kind::TypedKind;

/// One seed's Table 2, read from a `score_alarms` stage's table2.csv: (ar, tile) → (category,
/// lead).
pub type Table2 = BTreeMap<(String, String), (String, Option<i64>)>;

pub fn read_table2(path: &std::path::Path) -> Result<Table2, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let rows =
        crate::alarms::read_table2_csv(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.ar, r.tile), (r.category, r.lead_h)))
        .collect())
}

/// Markdown of a multi-seed Table 2: per cell the majority category (ties listed) with the share
/// of seeds that gave it and the lead mean ± sd over the seeds that alarmed; per AR the share of
/// seeds whose Emergence lead passes the delay under ≥ and under >.
pub fn seeds_markdown(tables: &[(u64, Table2)], delay: i64) -> String {
    let n = tables.len();
    let mut ars: Vec<String> = Vec::new();
    let mut tiles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some((_, t)) = tables.first() {
        for (ar, tile) in t.keys() {
            if !ars.contains(ar) {
                ars.push(ar.clone());
            }
            if tile != "Emergence" {
                tiles.entry(ar.clone()).or_default().push(tile.clone());
            }
        }
    }
    let width = tiles.values().map(Vec::len).max().unwrap_or(0);
    let cell = |ar: &str, tile: &str| -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut leads = Vec::new();
        for (_, t) in tables {
            if let Some((c, l)) = t.get(&(ar.to_string(), tile.to_string())) {
                let kind = c
                    .parse::<crate::alarms::Category>()
                    .map_or_else(|_| c.clone(), |c| c.kind_name());
                *counts.entry(kind).or_default() += 1;
                leads.extend(l.map(|v| v as f64));
            }
        }
        let best = counts.values().copied().max().unwrap_or(0);
        let top: Vec<&String> = counts
            .iter()
            .filter(|(_, c)| **c == best)
            .map(|(k, _)| k)
            .collect();
        let label = top.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("/");
        let lead = if top.iter().any(|k| *k == "Alarm") && !leads.is_empty() {
            let m = leads.iter().sum::<f64>() / leads.len() as f64;
            let sd = (leads.iter().map(|v| (v - m).powi(2)).sum::<f64>()
                / (leads.len().max(2) - 1) as f64)
                .sqrt();
            format!(" {m:.1}±{sd:.1}h")
        } else {
            String::new()
        };
        format!("{label}{lead} ({best}/{n})")
    };
    let mut out = format!(
        "# Table 2 over {n} seeds ({})\n\nPer cell: the category most seeds gave (share of seeds), \
         and for alarms the lead mean ± sd over the seeds that alarmed.\n\n| AR | {} | Emergence | success ≥{delay} h | success >{delay} h |\n|---|{}---|---|---|\n",
        tables
            .iter()
            .map(|(s, _)| s.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        (1..=width)
            .map(|i| format!("tile {i}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(width)
    );
    for ar in &ars {
        let mut row = vec![ar.clone()];
        for t in tiles.get(ar).into_iter().flatten() {
            row.push(format!("{t} {}", cell(ar, t)));
        }
        row.push(cell(ar, "Emergence"));
        let leads: Vec<Option<i64>> = tables
            .iter()
            .map(|(_, t)| {
                t.get(&(ar.clone(), "Emergence".into()))
                    .and_then(|(_, l)| *l)
            })
            .collect();
        let ge = leads
            .iter()
            .filter(|l| l.is_some_and(|v| v >= delay))
            .count();
        let gt = leads
            .iter()
            .filter(|l| l.is_some_and(|v| v > delay))
            .count();
        row.push(format!("{ge}/{n}"));
        row.push(format!("{gt}/{n}"));
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// One seed's per-predictor Emergence leads, from a `score_alarms` stage's alarms.parquet:
/// predictor → AR → lead (None: no alarm before emergence).
pub type Leads = Vec<(String, BTreeMap<u32, Option<i64>>)>;

pub fn read_leads(path: &std::path::Path) -> Result<Leads, String> {
    let df = crate::table::read_parquet(path).map_err(|e| e.to_string())?;
    let scored = crate::alarms::read_alarms(&df).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(scored
        .into_iter()
        .map(|(label, s)| {
            let leads = s.ars.iter().map(|a| (a.ar, a.category.lead())).collect();
            (label, leads)
        })
        .collect())
}

/// Markdown of every predictor's Emergence success over the seeds: per AR the seeds whose lead
/// passes the delay under ≥ (and under >), and over all ARs. A predictor that ignores the seed
/// shows n/n or 0/n everywhere.
pub fn predictors_markdown(leads: &[(u64, Leads)], delay: i64) -> String {
    let n = leads.len();
    let Some((_, first)) = leads.first() else {
        return String::new();
    };
    let ars: Vec<u32> = first
        .iter()
        .flat_map(|(_, m)| m.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = format!(
        "\n## Every predictor's Emergence success over the {n} seeds\n\nPer AR: the seeds whose \
         Emergence alarm leads by ≥ {delay} h (in brackets: > {delay} h); the last column sums over \
         the ARs.\n\n| predictor | {} | all ARs |\n|---|{}---|\n",
        ars.iter()
            .map(|a| format!("AR{a}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(ars.len())
    );
    for (label, _) in first {
        let per_seed: Vec<&BTreeMap<u32, Option<i64>>> = leads
            .iter()
            .filter_map(|(_, l)| l.iter().find(|(p, _)| p == label).map(|(_, m)| m))
            .collect();
        let count = |ar: u32, pass: &dyn Fn(i64) -> bool| {
            per_seed
                .iter()
                .filter(|m| m.get(&ar).copied().flatten().is_some_and(pass))
                .count()
        };
        let (mut ge_all, mut gt_all) = (0, 0);
        let mut row = vec![label.replace('|', "\\|")];
        for &ar in &ars {
            let (ge, gt) = (count(ar, &|l| l >= delay), count(ar, &|l| l > delay));
            ge_all += ge;
            gt_all += gt;
            row.push(format!("{ge}/{} ({gt})", per_seed.len()));
        }
        row.push(format!(
            "{ge_all}/{} ({gt_all})",
            per_seed.len() * ars.len()
        ));
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// The seeds in a file name: each listed (`1_2_7`) while that stays short, else runs of
/// consecutive seeds as ranges (`1-100`), and past that the first and last with the count and
/// a hash of them all: a name never passes the file system's 255 bytes (`--seeds 1..100` did).
fn seeds_label(seeds: &[u64]) -> String {
    let listed = seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("_");
    if listed.len() <= 40 {
        return listed;
    }
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seeds.len() {
        let mut j = i;
        while j + 1 < seeds.len() && seeds[j + 1] == seeds[j] + 1 {
            j += 1;
        }
        runs.push(if j > i {
            format!("{}-{}", seeds[i], seeds[j])
        } else {
            seeds[i].to_string()
        });
        i = j + 1;
    }
    let ranged = runs.join("_");
    if ranged.len() <= 40 {
        return ranged;
    }
    let hash = blake3::hash(listed.as_bytes()).to_hex();
    format!(
        "{}-to-{}-n{}-{}",
        seeds[0],
        seeds[seeds.len() - 1],
        seeds.len(),
        &hash[..12]
    )
}

/// The multi-seed Table 2 of a finished seed sweep, from each seed's (first) alarms stage, written
/// to the store's `reports/`: its Markdown and path, or `None` when no point scored alarms.
pub fn seeds_table(
    store: &Store,
    base: Option<&str>,
    points: &[(&PointPlan, &RunResult)],
) -> Result<Option<(String, PathBuf)>, String> {
    let mut tables = Vec::new();
    let mut leads = Vec::new();
    for (p, res) in points {
        let out = |name| super::point_output(store, p, res, crate::alarms::ScoreAlarms::NAME, name);
        if let (Some((_, path)), Some(seed)) = (out("table2"), p.seed) {
            tables.push((seed, read_table2(&path)?));
        }
        if let (Some((_, path)), Some(seed)) = (out("alarms"), p.seed) {
            leads.push((seed, read_leads(&path)?));
        }
    }
    let Some((first, _)) = points.first() else {
        return Ok(None);
    };
    if tables.is_empty() {
        return Ok(None);
    }
    let delay = crate::alarms::plan_delay_hours(&first.plan);
    let md = seeds_markdown(&tables, delay) + &predictors_markdown(&leads, delay);
    let dir = store.root.join("reports");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let seeds: Vec<u64> = tables.iter().map(|(s, _)| *s).collect();
    let name = format!(
        "seeds-{}-{}.md",
        base.unwrap_or("default"),
        seeds_label(&seeds)
    );
    let path = dir.join(name);
    std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some((md, path)))
}

#[cfg(test)]
mod label_tests {
    use super::seeds_label;

    #[test]
    fn a_seed_list_names_a_file_of_bounded_length() {
        assert_eq!(seeds_label(&[1, 2]), "1_2");
        assert_eq!(seeds_label(&[1, 2, 3]), "1_2_3");
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(seeds_label(&hundred), "1-100");
        let odd: Vec<u64> = (1..=400).step_by(2).collect();
        let l = seeds_label(&odd);
        assert!(l.starts_with("1-to-399-n200-") && l.len() < 60, "{l}");
        assert_ne!(l, seeds_label(&odd[..199]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_table_takes_the_majority_and_averages_leads() {
        let t = |cat: &str, lead: Option<i64>, em: Option<i64>| -> Table2 {
            [
                (("AR1".into(), "2".into()), (cat.to_string(), lead)),
                (
                    ("AR1".into(), "Emergence".into()),
                    (em.map_or("ILAP".into(), |h| format!("{h}h Alarm")), em),
                ),
            ]
            .into()
        };
        let md = seeds_markdown(
            &[
                (1, t("4h Alarm", Some(4), Some(4))),
                (2, t("6h Alarm", Some(6), Some(6))),
                (3, t("ILAP", None, None)),
            ],
            4,
        );
        assert!(
            md.contains("| AR1 | 2 Alarm 5.0±1.4h (2/3) | Alarm 5.0±1.4h (2/3) | 2/3 | 1/3 |"),
            "{md}"
        );
    }

    #[test]
    fn every_predictor_gets_its_success_shares_over_the_seeds() {
        let seed = |model: [Option<i64>; 2]| -> Leads {
            vec![
                ("model".into(), [(1, model[0]), (2, model[1])].into()),
                // The same every seed, as a baseline is.
                ("persistence".into(), [(1, Some(5)), (2, None)].into()),
            ]
        };
        let md = predictors_markdown(
            &[
                (0, seed([Some(4), Some(6)])),
                (1, seed([Some(5), None])),
                (2, seed([None, Some(3)])),
            ],
            4,
        );
        assert!(md.contains("| predictor | AR1 | AR2 | all ARs |"), "{md}");
        assert!(
            md.contains("| model | 2/3 (1) | 1/3 (1) | 3/6 (2) |"),
            "{md}"
        );
        assert!(
            md.contains("| persistence | 3/3 (3) | 0/3 (0) | 3/6 (3) |"),
            "{md}"
        );
    }
}
