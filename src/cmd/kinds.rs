//! `magpipe kinds`: every stage kind with its inputs, outputs, params and defaults.

use std::process::ExitCode;

pub fn run(ctx: &super::Ctx) -> anyhow::Result<ExitCode> {
    for k in ctx.registry.iter() {
        println!("{} (v{})\n  {}", k.name(), k.version(), k.doc());
        for i in k.inputs() {
            println!("  input  {:<12} {}", i.name, i.doc);
        }
        for i in k.list_inputs() {
            println!("  inputs {:<12} list: {}", i.name, i.doc);
        }
        for o in k.outputs(&k.defaults()) {
            println!("  output {:<12} {} — {}", o.name, o.file, o.doc);
        }
        if let serde_json::Value::Object(p) = k.defaults() {
            for (name, v) in p {
                println!("  param  {name:<12} default {v}");
            }
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
