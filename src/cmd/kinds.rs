//! `magpipe kinds`: every stage kind with its inputs, outputs, params and defaults, then every
//! artifact contract field by field.

use std::process::ExitCode;

pub fn run(ctx: &super::Ctx) -> anyhow::Result<ExitCode> {
    for k in ctx.registry.iter() {
        println!("{} (v{})\n  {}", k.name(), k.version(), k.doc());
        let needs = |slot: &str| -> String {
            k.input_contracts()
                .iter()
                .filter(|c| c.slot == slot)
                .map(|c| format!(" [{}: {}]", c.output, c.contract))
                .collect()
        };
        for i in k.inputs() {
            println!("  input  {:<12} {}{}", i.name, i.doc, needs(i.name));
        }
        for i in k.list_inputs() {
            println!("  inputs {:<12} list: {}{}", i.name, i.doc, needs(i.name));
        }
        if k.open_inputs() {
            println!(
                "  inputs {:<12} any slot names, each `stage.output`",
                "(open)"
            );
        }
        for o in k.outputs(&k.defaults()) {
            let c = o
                .contract
                .as_deref()
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default();
            println!("  output {:<12} {} — {}{c}", o.name, o.file, o.doc);
        }
        for key in k.stage_keys() {
            println!("  key    {key}");
        }
        if let serde_json::Value::Object(p) = k.defaults() {
            for (name, v) in p {
                println!("  param  {name:<12} default {v}");
            }
        }
        println!();
    }
    println!(
        "Artifact contracts (checked on every output that claims one, before it is committed):\n"
    );
    for c in ctx.registry.contracts() {
        println!("{} ({})\n  {}", c.name(), c.format(), c.doc());
        for f in c.fields() {
            println!(
                "  {:<16} {:<14} {:<8} {}",
                f.name,
                f.dtype,
                if f.required { "required" } else { "nullable" },
                f.doc
            );
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
