//! `magpipe dag`: the plan's graph as text, Graphviz dot or Mermaid.

use crate::plan::Plan;

pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    for &i in &plan.order {
        let s = &plan.stages[i];
        out.push_str(&format!("{} ({})\n", s.name, s.kind.name()));
        let mut shown = std::collections::BTreeSet::new();
        for w in &s.inputs {
            // A list entry naming a whole stage brings every output; show it once.
            let line = match w.slot.split_once("].") {
                Some((head, _)) => {
                    let whole = s
                        .inputs
                        .iter()
                        .filter(|x| x.slot.starts_with(&format!("{head}].")))
                        .count()
                        > 1;
                    if whole {
                        format!("  {head}] ← {}\n", plan.stages[w.from].name)
                    } else {
                        format!("  {head}] ← {}.{}\n", plan.stages[w.from].name, w.output)
                    }
                }
                None => format!("  {} ← {}.{}\n", w.slot, plan.stages[w.from].name, w.output),
            };
            if shown.insert(line.clone()) {
                out.push_str(&line);
            }
        }
    }
    for v in &plan.variants {
        let extends = if v.extends.is_empty() {
            String::new()
        } else {
            format!(" (extends {})", v.extends.join(", "))
        };
        out.push_str(&format!(
            "variant {}{extends}{}\n",
            v.name,
            v.doc
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ));
    }
    out
}

pub fn dot(plan: &Plan) -> String {
    let mut out = String::from("digraph magpipe {\n  rankdir=LR;\n  node [shape=box];\n");
    for &i in &plan.order {
        let s = &plan.stages[i];
        out.push_str(&format!(
            "  \"{}\" [label=\"{}\\n{}\"];\n",
            s.name,
            s.name,
            s.kind.name()
        ));
    }
    for &i in &plan.order {
        let mut shown = std::collections::BTreeSet::new();
        for w in &plan.stages[i].inputs {
            let slot = w
                .slot
                .split_once("].")
                .map_or(w.slot.clone(), |(h, _)| format!("{h}]"));
            let output = if slot == w.slot {
                w.output.as_str()
            } else {
                "*"
            };
            if shown.insert((w.from, slot.clone())) {
                out.push_str(&format!(
                    "  \"{}\" -> \"{}\" [label=\"{}→{}\"];\n",
                    plan.stages[w.from].name, plan.stages[i].name, output, slot
                ));
            }
        }
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(plan: &Plan) -> String {
    let id = |n: &str| n.replace('-', "_");
    let mut out = String::from("flowchart LR\n");
    for &i in &plan.order {
        let s = &plan.stages[i];
        out.push_str(&format!(
            "  {}[\"{}<br/><i>{}</i>\"]\n",
            id(&s.name),
            s.name,
            s.kind.name()
        ));
    }
    for &i in &plan.order {
        let mut shown = std::collections::BTreeSet::new();
        for w in &plan.stages[i].inputs {
            let list = w.slot.contains("].");
            if list && !shown.insert(w.from) {
                continue;
            }
            let output = if list { "*" } else { w.output.as_str() };
            out.push_str(&format!(
                "  {} -- {} --> {}\n",
                id(&plan.stages[w.from].name),
                output,
                id(&plan.stages[i].name)
            ));
        }
    }
    out
}
