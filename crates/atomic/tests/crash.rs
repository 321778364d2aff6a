//! Crashes: a child process writing a version is killed with `SIGKILL` at every step of the
//! protocol, and at random moments; the target must hold the old or the new version, and heal
//! when opened and on the next write.

use std::time::Duration;

use anyhow::{Context, ensure};
use strata_atomic::Payload;

use crate::util::{
    ChildProc, DONE_MARK, POINT_MARK, Tree, assert_healed, assert_layout, check_interrupted,
    expected, open, payload,
};

/// The versions the crash tests move between; the children read them from here too.
pub fn versions() -> Vec<Payload> {
    vec![
        payload(&[
            ("a/one", "0 one", 0o644),
            ("a/b/two", "0 two", 0o600),
            ("top", "0 top", 0o644),
            ("gone", "0 gone", 0o644),
            (".dot", "0 dot", 0o400),
        ]),
        // Changed, unchanged, moved deeper, mode-only, added and removed names.
        payload(&[
            ("a/one", "1 one", 0o644),
            ("a/c/three", "1 three", 0o755),
            ("top", "0 top", 0o644),
            (".dot", "0 dot", 0o440),
            ("new/x", "1 x", 0o644),
            ("fresh", "1 fresh", 0o644),
        ]),
        Payload::new(),
    ]
}

/// Kills a child writing `new` over `old` (or over nothing) before each of its changes on
/// disk in turn, until it gets through; checks the state after each kill and its healing.
fn kill_at_every_point(old: Option<usize>, new: usize) -> anyhow::Result<usize> {
    let versions = versions();
    let old_tree = old.map(|i| expected(&versions[i])).transpose()?.unwrap_or_default();
    let new_tree = expected(&versions[new])?;
    for at in 0..200 {
        let dir = tempfile::tempdir()?;
        let target = dir.path();
        if let Some(old) = old {
            open(target)?.write(&versions[old])?;
        }
        let envs = [
            ("STRATA_ATOMIC_TARGET", target.display().to_string()),
            ("STRATA_ATOMIC_VERSION", new.to_string()),
            ("STRATA_ATOMIC_PAUSE_AT", at.to_string()),
        ];
        let mut child = ChildProc::spawn("pause", &envs, None)?;
        let mark = child.next_mark()?;
        let done = mark.starts_with(DONE_MARK);
        if done {
            child.wait()?;
        } else {
            ensure!(mark == format!("{POINT_MARK} {at}"), "unexpected mark {mark:?}");
            child.kill()?;
        }
        let context = || format!("{old:?} -> {new}, killed before change {at}");
        let on_disk = check_interrupted(target, &old_tree, &new_tree).with_context(context)?;
        let mut writer = open(target).with_context(context)?;
        assert_healed(target, &on_disk).with_context(context)?;
        writer.write(&versions[new]).with_context(context)?;
        assert_layout(target, &new_tree).with_context(context)?;
        if done {
            ensure!(on_disk == new_tree, "a finished write left the old version");
            return Ok(at);
        }
    }
    anyhow::bail!("the write never finished")
}

#[test]
fn sigkill_at_every_point() -> anyhow::Result<()> {
    for (old, new) in [(None, 0), (Some(0), 1), (Some(1), 0), (Some(1), 2), (Some(2), 0)] {
        let points = kill_at_every_point(old, new)?;
        assert!(points >= 8, "{old:?} -> {new}: only {points} points");
    }
    Ok(())
}

#[test]
fn sigkill_at_random_moments() -> anyhow::Result<()> {
    let trees: Vec<Tree> = versions().iter().map(expected).collect::<anyhow::Result<_>>()?;
    let dir = tempfile::tempdir()?;
    let target = dir.path();
    let envs = [("STRATA_ATOMIC_TARGET", target.display().to_string())];
    for round in 0..25 {
        let mut child = ChildProc::spawn("loop", &envs, None)?;
        child.next_mark()?;
        std::thread::sleep(Duration::from_micros(delay_micros(round)));
        child.kill()?;
        let context = || format!("round {round}");
        let on_disk = trees
            .iter()
            .enumerate()
            .find_map(|(i, new)| {
                let old = &trees[(i + trees.len() - 1) % trees.len()];
                check_interrupted(target, old, new).ok()
            })
            .with_context(context)?;
        open(target).with_context(context)?;
        assert_healed(target, &on_disk).with_context(context)?;
    }
    Ok(())
}

/// A delay spread over a few writes' time, different in every round.
fn delay_micros(round: u64) -> u64 {
    (round * 7919 + 13) % 20_000
}
