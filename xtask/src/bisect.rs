//! `cargo xtask bisect --good REV --bad REV --tier T [-- nextest args]`:
//! finds the first commit where a tier's tests (narrowed by a filter) fail,
//! with `git bisect run` in a separate worktree, so the checkout you work in
//! is never touched. Every step builds into one shared target folder, so
//! unchanged crates are reused between steps. A step whose build fails is
//! skipped (exit 125), not blamed; a test failure marks the commit bad.

use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{cmd, Shell};

use crate::flags::BisectFlags;

/// What a bisect found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BisectOutcome {
    /// The first bad commit's full hash.
    pub first_bad: String,
    /// Its subject line.
    pub subject: String,
    /// The logs of the failing step (nextest's JUnit and the testbed's
    /// per-test folders) in the bisect folder.
    pub logs: PathBuf,
}

/// Runs the bisect described by `flags` in the repository at `repo`.
pub fn run(sh: &Shell, flags: &BisectFlags) -> anyhow::Result<i32> {
    let repo = sh.current_dir();
    let tiers = flags.tier.tiers();
    anyhow::ensure!(
        tiers.len() == 1,
        "bisect takes one tier, not `all`: name the tier whose test regressed"
    );
    if let Some(range) = &flags.dynamo {
        return crate::bisect_dynamo::run(sh, range, tiers[0], &flags.nextest_args);
    }
    let good = flags
        .good
        .as_deref()
        .context("--good is required unless --dynamo is given")?;
    let outcome = bisect(
        sh,
        &repo,
        good,
        &flags.bad,
        tiers[0].name(),
        &flags.nextest_args,
    )?;
    println!(
        "\nbisect: first bad commit {} {}",
        outcome.first_bad, outcome.subject
    );
    println!(
        "bisect: logs of the failing step: {}",
        outcome.logs.display()
    );
    Ok(0)
}

/// Bisects `good..bad` of the repository at `repo` with the nextest
/// profile `profile` (and extra nextest arguments).
pub fn bisect(
    sh: &Shell,
    repo: &Path,
    good: &str,
    bad: &str,
    profile: &str,
    nextest_args: &[String],
) -> anyhow::Result<BisectOutcome> {
    let _dir = sh.push_dir(repo);
    let good_rev = format!("{good}^{{commit}}");
    let bad_rev = format!("{bad}^{{commit}}");
    let good_hash = cmd!(sh, "git rev-parse --verify {good_rev}")
        .quiet()
        .read()
        .with_context(|| format!("--good {good} is not a commit"))?;
    let bad_hash = cmd!(sh, "git rev-parse --verify {bad_rev}")
        .quiet()
        .read()
        .with_context(|| format!("--bad {bad} is not a commit"))?;
    let work = repo
        .join("target")
        .join("testbed")
        .join("bisect")
        .join(format!("{}-{}", &good_hash[..8], &bad_hash[..8]));
    let worktree = work.join("worktree");
    let target = work.join("target");
    let logs = work.join("logs");
    if worktree.exists() {
        let _ = cmd!(sh, "git worktree remove --force {worktree}")
            .quiet()
            .ignore_stderr()
            .run();
        let _ = std::fs::remove_dir_all(&worktree);
    }
    std::fs::create_dir_all(&logs)?;
    cmd!(
        sh,
        "git worktree add --detach --quiet {worktree} {bad_hash}"
    )
    .run()
    .context("creating the bisect worktree failed")?;
    let script = work.join("step.sh");
    std::fs::write(
        &script,
        step_script(&worktree, &target, &logs, profile, nextest_args),
    )?;
    let result = (|| {
        let _wt = sh.push_dir(&worktree);
        cmd!(sh, "git bisect start {bad_hash} {good_hash}")
            .quiet()
            .ignore_stdout()
            .run()?;
        // Each step's line is printed as git prints it.
        let text = stream_lines(
            std::process::Command::new("git")
                .args(["bisect", "run", "sh"])
                .arg(&script)
                .current_dir(&worktree)
                .envs(protoc_env()),
        )?;
        let first_bad = text
            .lines()
            .find_map(|l| l.strip_suffix(" is the first bad commit"))
            .map(str::trim)
            .map(str::to_owned)
            .with_context(|| format!("git bisect found no first bad commit:\n{text}"))?;
        let subject = cmd!(sh, "git log -1 --format=%s {first_bad}")
            .quiet()
            .read()?;
        anyhow::Ok(BisectOutcome {
            first_bad,
            subject,
            logs: logs.clone(),
        })
    })();
    let _wt = sh.push_dir(&worktree);
    let _ = cmd!(sh, "git bisect reset")
        .quiet()
        .ignore_stderr()
        .ignore_stdout()
        .run();
    drop(_wt);
    let _ = cmd!(sh, "git worktree remove --force {worktree}")
        .quiet()
        .ignore_stderr()
        .run();
    result
}

/// `PROTOC` for the steps' builds: the pinned protoc, if provisioned.
fn protoc_env() -> Vec<(String, std::ffi::OsString)> {
    testbed_harness::tool::locate("protoc")
        .map(|found| vec![("PROTOC".to_owned(), found.path.into_os_string())])
        .unwrap_or_default()
}

/// Runs `command`, printing each line of its output (stdout and stderr) as
/// it comes; returns all of it.
fn stream_lines(command: &mut std::process::Command) -> anyhow::Result<String> {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run git")?;
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .inspect(|l| eprintln!("{l}"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let mut text = String::new();
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        text.push_str(&line);
        text.push('\n');
    }
    child.wait()?;
    text.push_str(&errors.join().unwrap_or_default());
    Ok(text)
}

/// The script `git bisect run` calls for each commit.
fn step_script(
    worktree: &Path,
    target: &Path,
    logs: &Path,
    profile: &str,
    nextest_args: &[String],
) -> String {
    let quote = testbed_harness::shell::quote;
    let args = testbed_harness::shell::join(nextest_args);
    format!(
        "#!/bin/sh\n# One bisect step: run the tier on the checked-out commit, map the result.\ncd {wt} || exit 125\ncommit=$(git rev-parse --short=7 HEAD)\nexport CARGO_TARGET_DIR={target} TESTBED_REPO_ROOT={wt}\ncargo nextest run --profile {profile} --no-tests=fail {args} > {logs}/$commit.log 2>&1\ncode=$?\necho \"bisect step $commit: nextest exit $code\"\n# nextest: 0 passed, 100 tests failed; anything else (101 build failed,\n# 4 no tests) cannot judge the commit.\ncase $code in\n  0) exit 0 ;;\n  100) cp -r {wt}/target/nextest {logs}/$commit-nextest 2>/dev/null; exit 1 ;;\n  *) exit 125 ;;\nesac\n",
        wt = quote(&worktree.display().to_string()),
        target = quote(&target.display().to_string()),
        logs = quote(&logs.display().to_string()),
        profile = quote(profile),
        args = args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch crate with 20 commits; commit 13 plants a regression, and
    /// commits 8–11, around the first midpoint, do not build: steps that must
    /// be skipped, not blamed.
    #[test]
    fn slow_bisect_finds_the_planted_regression() {
        let sh = Shell::new().unwrap();
        let dir = std::env::temp_dir().join(format!("testbed-bisect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::create_dir_all(dir.join("tests")).unwrap();
        std::fs::create_dir_all(dir.join(".config")).unwrap();
        let _d = sh.push_dir(&dir);
        std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"scratch\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n").unwrap();
        std::fs::write(
            dir.join(".config/nextest.toml"),
            "[profile.unit]\ndefault-filter = \"all()\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("tests/answer.rs"),
            "#[test]\nfn answer_is_42() { assert_eq!(scratch::answer(), 42); }\n",
        )
        .unwrap();
        std::fs::write(dir.join(".gitignore"), "target/\n").unwrap();
        cmd!(sh, "git init --quiet").run().unwrap();
        let mut hashes = Vec::new();
        for i in 0..20 {
            let body = match i {
                8..=11 => {
                    format!("// step {i}\npub fn answer() -> u32 {{ 42 }} this does not compile\n")
                }
                13.. => format!("// step {i}\npub fn answer() -> u32 {{ 41 }}\n"),
                _ => format!("// step {i}\npub fn answer() -> u32 {{ 42 }}\n"),
            };
            std::fs::write(dir.join("src/lib.rs"), body).unwrap();
            cmd!(sh, "git add -A").run().unwrap();
            let msg = format!("commit {i}");
            cmd!(
                sh,
                "git -c user.name=t -c user.email=t@t commit --quiet -m {msg}"
            )
            .run()
            .unwrap();
            hashes.push(cmd!(sh, "git rev-parse HEAD").read().unwrap());
        }
        let outcome = bisect(&sh, &dir, &hashes[0], &hashes[19], "unit", &[]).unwrap();
        assert_eq!(
            outcome.first_bad, hashes[13],
            "found {} ({})",
            outcome.subject, outcome.first_bad
        );
        assert_eq!(outcome.subject, "commit 13");
        let logs: Vec<String> = std::fs::read_dir(&outcome.logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            (8..=11).any(|i| logs.contains(&format!("{}.log", &hashes[i][..7]))),
            "a broken commit was tried (and skipped): {logs:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
