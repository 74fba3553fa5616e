//! `magpipe dag`: the plan's graph as text, Graphviz dot or Mermaid.

use crate::plan::Plan;

pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    for &i in &plan.order {
        let s = &plan.stages[i];
        out.push_str(&format!("{} ({})\n", s.name, s.kind.name()));
        for w in &s.inputs {
            out.push_str(&format!(
                "  {} ← {}.{}\n",
                w.slot, plan.stages[w.from].name, w.output
            ));
        }
    }
    for (name, doc) in &plan.variants {
        out.push_str(&format!(
            "variant {name}{}\n",
            doc.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
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
        for w in &plan.stages[i].inputs {
            out.push_str(&format!(
                "  \"{}\" -> \"{}\" [label=\"{}→{}\"];\n",
                plan.stages[w.from].name, plan.stages[i].name, w.output, w.slot
            ));
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
        for w in &plan.stages[i].inputs {
            out.push_str(&format!(
                "  {} -- {} --> {}\n",
                id(&plan.stages[w.from].name),
                w.output,
                id(&plan.stages[i].name)
            ));
        }
    }
    out
}
