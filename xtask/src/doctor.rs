//! `cargo xtask doctor`: one table (or JSON) of every external thing the
//! tiers need, with where each came from and the command that fixes a miss.

use serde::Serialize;
use testbed_harness::{tool, Layout, Pins};

use crate::capability::{Capabilities, Finding, Need, Status};
use crate::exit::Exit;
use crate::flags::DoctorFlags;
use crate::provision;
use crate::tier::TierArg;

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    /// What is checked.
    what: String,
    /// The finding.
    #[serde(flatten)]
    finding: Finding,
    /// Whether a requested tier needs it.
    required_by_tiers: bool,
}

/// Prints the findings; the exit code is 3 if a requested tier lacks
/// something.
pub fn run(flags: &DoctorFlags) -> anyhow::Result<i32> {
    let layout = Layout::from_env();
    let pins = Pins::from_repo()?;
    let caps = Capabilities::detect(&pins);
    let tiers = flags.tier.unwrap_or(TierArg::All).tiers();
    let required: Vec<Need> = tiers.iter().flat_map(|t| t.needs()).collect();

    let mut rows = vec![
        Row {
            what: "cargo-nextest".into(),
            finding: nextest(),
            required_by_tiers: true,
        },
        Row {
            what: format!("python{}", pins.python.version),
            finding: python(&layout, &pins),
            required_by_tiers: false,
        },
    ];
    for name in ["protoc", "uv", "chart-font"] {
        rows.push(Row {
            what: name.into(),
            finding: pinned_tool(name, &layout, &pins),
            required_by_tiers: false,
        });
    }
    for (need, finding) in &caps.findings {
        rows.push(Row {
            what: need.name(),
            finding: finding.clone(),
            required_by_tiers: required.contains(need),
        });
    }
    let missing: Vec<&Row> = rows
        .iter()
        .filter(|r| r.required_by_tiers && !r.finding.ok())
        .collect();
    let tier_names: Vec<&str> = tiers.iter().map(|t| t.name()).collect();
    if flags.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "tiers": tier_names,
                "rows": rows,
                "ready": missing.is_empty(),
            }))?
        );
    } else {
        print_table(&rows);
        if missing.is_empty() {
            println!(
                "\ndoctor: everything the {} tier(s) need is here",
                tier_names.join(", ")
            );
        } else {
            let names: Vec<&str> = missing.iter().map(|r| r.what.as_str()).collect();
            println!(
                "\ndoctor: the {} tier(s) need {} — `cargo xtask setup` provisions them",
                tier_names.join(", "),
                names.join(", ")
            );
        }
    }
    Ok(if missing.is_empty() {
        Exit::Success.code()
    } else {
        Exit::Missing.code()
    })
}

fn print_table(rows: &[Row]) {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let (status, fix) = match &r.finding.status {
                Status::Ok => ("ok".to_owned(), String::new()),
                Status::Differs(why) => ("ok (differs from pin)".to_owned(), why.clone()),
                Status::Missing(why) if r.required_by_tiers => ("MISSING".to_owned(), why.clone()),
                Status::Missing(why) => ("absent".to_owned(), why.clone()),
            };
            [
                r.what.clone(),
                r.finding.found.clone(),
                r.finding.source.clone(),
                status,
                fix,
            ]
        })
        .collect();
    let headers = ["what", "found", "from", "status", "fix"];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |c: [&str; 5]| {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    line(headers);
    for c in &cells {
        line([&c[0], &c[1], &c[2], &c[3], &c[4]]);
    }
}

fn nextest() -> Finding {
    let found = std::process::Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| tool::parse_version(&String::from_utf8_lossy(&o.stdout)));
    match found {
        Some(v) => Finding {
            found: v,
            source: "PATH".into(),
            required: "any".into(),
            status: Status::Ok,
        },
        None => Finding {
            found: "missing".into(),
            source: "—".into(),
            required: "any".into(),
            status: Status::Missing(
                "install it: `cargo install cargo-nextest --locked` (or enter `nix develop`)"
                    .into(),
            ),
        },
    }
}

fn pinned_tool(name: &str, layout: &Layout, pins: &Pins) -> Finding {
    let Ok(pin) = pins.tool(name) else {
        return Finding {
            found: "—".into(),
            source: "—".into(),
            required: "—".into(),
            status: Status::Missing(format!("nix/pins.toml has no [tools.{name}]")),
        };
    };
    match tool::locate_pinned(name, pin, &layout.cache_dir) {
        Ok(found) => Finding {
            found: format!("{} ({})", found.version, found.path.display()),
            source: found.source_text(),
            required: pin.version.clone(),
            status: if found.version == pin.version {
                Status::Ok
            } else {
                Status::Differs(format!("the pin is {}", pin.version))
            },
        },
        Err(e) => Finding {
            found: "missing".into(),
            source: "—".into(),
            required: pin.version.clone(),
            status: Status::Missing(format!("{e:#}")),
        },
    }
}

/// The interpreter uv would build the envs with.
fn python(layout: &Layout, pins: &Pins) -> Finding {
    let version = &pins.python.version;
    let fix = format!(
        "install Python {version} (Debian/Ubuntu: `apt-get install python{version}`; pyenv works too); where uv may download, `cargo xtask setup` fetches one itself"
    );
    let uv = match pins
        .tool("uv")
        .and_then(|pin| tool::locate_pinned("uv", pin, &layout.cache_dir))
    {
        Ok(uv) => uv,
        Err(_) => {
            return Finding {
                found: "not checked (uv is not provisioned yet)".into(),
                source: "—".into(),
                required: version.clone(),
                status: Status::Missing(format!("run `cargo xtask setup`; {fix}")),
            }
        }
    };
    let out = std::process::Command::new(&uv.path)
        .args(["python", "find", version])
        .envs(provision::uv_env(layout))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let path = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            let source = if path.starts_with(&layout.cache_dir.display().to_string()) {
                "downloaded by uv (cache)"
            } else {
                "this machine"
            };
            Finding {
                found: path,
                source: source.into(),
                required: version.clone(),
                status: Status::Ok,
            }
        }
        _ => Finding {
            found: "none found".into(),
            source: "—".into(),
            required: version.clone(),
            status: Status::Missing(fix),
        },
    }
}
