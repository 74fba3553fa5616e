//! `magpipe report`: one self-contained HTML report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use magpipe_engine::plan::Plan;
use magpipe_engine::sweep;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// The variant to report (default: none); give more to compare them in the report.
    #[arg(long = "variant", value_name = "VARIANT")]
    variants: Vec<String>,
    /// Where to write it (default: `report.html` in the store, `report-VARIANT.html` for a
    /// variant, so one variant's report never overwrites another's).
    #[arg(short, long, value_parser = super::cli_path)]
    output: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let spec = ctx.spec()?;
    let name = a
        .variants
        .first()
        .cloned()
        .unwrap_or_else(|| "default".into());
    let build = |v: &str| -> anyhow::Result<Plan> {
        let variant = (v != magpipe_engine::compare::DEFAULT).then_some(v);
        Ok(sweep::plan_for(&spec, &ctx.registry, variant, &[])?)
    };
    let plan = build(&name)?;
    let mut others = Vec::new();
    for v in a.variants.iter().skip(1) {
        others.push((v.clone(), build(v)?));
    }
    let input = magpipe_stages::commands::report::ReportInput {
        plan: &plan,
        name: name.clone(),
        others,
    };
    let html = magpipe_stages::commands::report::html(&input, &ctx.store)?;
    let path = a.output.clone().unwrap_or_else(|| {
        ctx.store.root.join(if name == "default" {
            "report.html".to_string()
        } else {
            format!("report-{name}.html")
        })
    });
    std::fs::write(&path, html).with_context(|| format!("{}", path.display()))?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}
