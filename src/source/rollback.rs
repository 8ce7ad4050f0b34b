//! The git rollback (DESIGN §7): after a canary failed, make git agree with the cluster. Finds
//! the commits between the stable and the failed revision that touched the failed objects'
//! files, reverts them newest first on `fledge/rollback/<ns>-<rollout>-<short sha>` from the tip
//! of the tracked branch — in the bare mirror, without a work tree — or, when a revert
//! conflicts, writes one *restore* commit that sets exactly those files back to their stable
//! content; then pushes (the branch, for a pull request; or the tracked branch itself, fast
//! forward only). Pure git: no forge, no Kubernetes.
//!
//! Idempotent and restart-safe: every rollback commit ends with the trailer
//! `Fledge-Rollback: <ns>/<rollout>@<failed sha>`; before building anything, the remote's
//! rollback branch and tracked branch are searched for it, and a hit is returned as is.

use super::{Mirror, RemoteOptions, SourceError, escape_control, redact_text, remote};
use git2::{Commit, Oid, Repository, Signature, Tree};
use std::collections::BTreeSet;

/// Where the rollback goes (the ConfigRepo's rollback modes; `none` never calls this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Push the rollback branch, for a pull request.
    PullRequest,
    /// Push the rollback commit straight onto the tracked branch (fast forward only; if the
    /// branch moved meanwhile, the rollback is rebuilt on the new tip).
    Push,
}

/// Author and committer of rollback commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    /// fledge's own: `fledge <fledge@noreply.fledge.dev>`.
    pub fn fledge() -> Identity {
        Identity {
            name: "fledge".into(),
            email: "fledge@noreply.fledge.dev".into(),
        }
    }

    /// `Name <email>`, as git writes it (`--rollback-author`): a name of at most 128
    /// characters without `<`, `>` or control characters, and an address with one `@` and no
    /// spaces.
    pub fn parse(s: &str) -> Result<Identity, String> {
        let bad = || {
            format!("{s:?} is not `Name <email>` (e.g. `Release Bot <release-bot@example.com>`)")
        };
        let (name, rest) = s.split_once('<').ok_or_else(bad)?;
        let email = rest.strip_suffix('>').ok_or_else(bad)?;
        if name.chars().any(char::is_control) {
            return Err(format!("{}: the name has control characters", bad()));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 128 || name.contains('>') {
            return Err(format!(
                "{}: the name must be 1–128 characters without `<`, `>` or control characters",
                bad()
            ));
        }
        let at = email.matches('@').count();
        if at != 1
            || email.starts_with('@')
            || email.ends_with('@')
            || email.len() > 254
            || email
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        {
            return Err(format!(
                "{}: the address must be like `someone@example.com`",
                bad()
            ));
        }
        Ok(Identity {
            name: name.to_owned(),
            email: email.to_owned(),
        })
    }
}

/// What to roll back and why.
#[derive(Debug, Clone)]
pub struct Request {
    /// The branch the ConfigRepo follows.
    pub branch: String,
    /// The last revision that was healthy.
    pub stable: Oid,
    /// The revision whose rollout failed.
    pub failed: Oid,
    /// Repo-relative files the failed objects came from (their provenance).
    pub paths: BTreeSet<String>,
    pub cluster: String,
    pub namespace: String,
    pub rollout: String,
    /// One line: why the rollout failed.
    pub reason: String,
    /// The analysis verdict in a few lines.
    pub verdict: String,
    pub identity: Identity,
    pub mode: Mode,
}

/// What the rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The branch that carries the rollback commit on the remote.
    pub branch: String,
    /// The rollback commit.
    pub commit: Oid,
    /// The offending commits, newest first.
    pub reverted: Vec<Oid>,
    /// A restore commit (a revert conflicted) rather than a revert.
    pub restore: bool,
    /// Found on the remote from an earlier run: nothing was built or pushed.
    pub already_existed: bool,
}

/// Why a rollback could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{action}: {}", redact_text(.source.message(), &[]))]
    Git { action: String, source: git2::Error },
    #[error("no commit between {stable} and {failed} touched any of the files {paths:?}")]
    NothingToRevert {
        stable: Oid,
        failed: Oid,
        paths: Vec<String>,
    },
    #[error(
        "the tip of {branch} already has the stable content of the offending files: nothing to revert"
    )]
    AlreadyReverted { branch: String },
    #[error(
        "branch {branch} exists on the remote without a fledge rollback commit for {trailer}: refusing to overwrite it"
    )]
    BranchTaken { branch: String, trailer: String },
    #[error("the remote refused the push of {branch}: {message}")]
    Rejected { branch: String, message: String },
    #[error("{branch} kept moving while the rollback was pushed ({attempts} attempts)")]
    KeptMoving { branch: String, attempts: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn git(action: impl Into<String>) -> impl FnOnce(git2::Error) -> Error {
    let action = action.into();
    move |source| Error::Git { action, source }
}

/// How often [`Mode::Push`] rebuilds on a moved branch before giving up.
const MAX_ATTEMPTS: usize = 5;
/// How far back a branch is searched for an earlier rollback commit.
const TRAILER_SEARCH_DEPTH: usize = 200;

impl Request {
    /// `Fledge-Rollback: <ns>/<rollout>@<failed sha>`.
    pub fn trailer(&self) -> String {
        format!(
            "Fledge-Rollback: {}/{}@{}",
            self.namespace, self.rollout, self.failed
        )
    }

    /// `fledge/rollback/<ns>-<rollout>-<short sha>`.
    pub fn branch_name(&self) -> String {
        let sha = self.failed.to_string();
        format!(
            "fledge/rollback/{}-{}-{}",
            self.namespace,
            self.rollout,
            &sha[..7.min(sha.len())]
        )
    }
}

/// Makes the rollback described by `req` on the remote of `mirror`, with `opts`' credentials.
pub fn rollback(mirror: &Mirror, opts: &RemoteOptions, req: &Request) -> Result<Outcome> {
    let repo = mirror.repo();
    let rollback_branch = req.branch_name();
    for _attempt in 0..MAX_ATTEMPTS {
        mirror.fetch_with(opts)?;
        if let Some(found) = find_existing(repo, req, &rollback_branch)? {
            return Ok(found);
        }
        let tip = repo
            .find_reference(&format!("refs/heads/{}", req.branch))
            .and_then(|r| r.peel_to_commit())
            .map_err(git(format!("reading branch {}", req.branch)))?;
        let built = build(repo, req, &tip)?;
        let (target, dst) = match req.mode {
            Mode::PullRequest => (rollback_branch.clone(), rollback_branch.clone()),
            Mode::Push => (req.branch.clone(), req.branch.clone()),
        };
        let refspec = format!("{}:refs/heads/{dst}", built.commit);
        match remote::push(repo, mirror.url(), opts, &[refspec])? {
            None => {
                // Keep the mirror equal to the remote (the next fetch would do the same).
                let _ = repo.reference(
                    &format!("refs/heads/{dst}"),
                    built.commit,
                    true,
                    "fledge rollback pushed",
                );
                return Ok(Outcome {
                    branch: target,
                    commit: built.commit,
                    reverted: built.reverted,
                    restore: built.restore,
                    already_existed: false,
                });
            }
            // Moved (push mode) or created meanwhile by another run: fetch and look again.
            Some(remote::PushRejection::NotFastForward) => continue,
            Some(remote::PushRejection::Other(message)) => {
                // A refusal worded otherwise (a lock lost to a concurrent push): still a
                // race if the remote moved; anything else is final.
                mirror.fetch_with(opts)?;
                let moved = match req.mode {
                    Mode::Push => branch_tip(repo, &req.branch) != Some(tip.id()),
                    Mode::PullRequest => branch_tip(repo, &rollback_branch).is_some(),
                };
                if moved {
                    continue;
                }
                return Err(Error::Rejected {
                    branch: dst,
                    message,
                });
            }
        }
    }
    Err(Error::KeptMoving {
        branch: req.branch.clone(),
        attempts: MAX_ATTEMPTS,
    })
}

fn branch_tip(repo: &Repository, branch: &str) -> Option<Oid> {
    repo.find_reference(&format!("refs/heads/{branch}"))
        .ok()?
        .peel_to_commit()
        .ok()
        .map(|c| c.id())
}

/// A rollback commit for `req` already on the remote: on the rollback branch, or on the
/// tracked branch (pushed there, or its pull request merged).
fn find_existing(
    repo: &Repository,
    req: &Request,
    rollback_branch: &str,
) -> Result<Option<Outcome>> {
    let trailer = req.trailer();
    for (branch, must_have) in [(rollback_branch, true), (req.branch.as_str(), false)] {
        let Ok(r) = repo.find_reference(&format!("refs/heads/{branch}")) else {
            continue;
        };
        let tip = r
            .peel_to_commit()
            .map_err(git(format!("reading branch {branch}")))?;
        let mut walk = repo.revwalk().map_err(git("walking history"))?;
        walk.push(tip.id()).map_err(git("walking history"))?;
        // Nothing before the failed revision can be its rollback.
        let _ = walk.hide(req.failed);
        for oid in walk.take(TRAILER_SEARCH_DEPTH) {
            let oid = oid.map_err(git("walking history"))?;
            let c = repo.find_commit(oid).map_err(git("reading a commit"))?;
            if has_trailer(&c, &trailer) {
                let restore = String::from_utf8_lossy(c.message_bytes()).contains(RESTORE_MARK);
                return Ok(Some(Outcome {
                    branch: branch.to_owned(),
                    commit: oid,
                    reverted: reverted_in(&c),
                    restore,
                    already_existed: true,
                }));
            }
        }
        if must_have {
            return Err(Error::BranchTaken {
                branch: branch.to_owned(),
                trailer,
            });
        }
    }
    Ok(None)
}

fn has_trailer(c: &Commit<'_>, trailer: &str) -> bool {
    let msg = String::from_utf8_lossy(c.message_bytes());
    msg.trim_end()
        .rsplit("\n\n")
        .next()
        .is_some_and(|last| last.lines().any(|l| l.trim_end() == trailer))
}

const REVERTS_MARK: &str = "This reverts commit ";
const RESTORE_MARK: &str = "restores these files to their content at ";

/// The commits a rollback commit names (`This reverts commit <sha>.` lines).
fn reverted_in(c: &Commit<'_>) -> Vec<Oid> {
    let msg = String::from_utf8_lossy(c.message_bytes());
    msg.lines()
        .filter_map(|l| l.trim().strip_prefix(REVERTS_MARK))
        .filter_map(|rest| Oid::from_str(rest.trim_end_matches('.')).ok())
        .collect()
}

struct Built {
    commit: Oid,
    reverted: Vec<Oid>,
    restore: bool,
}

/// The offending commits of `req`, newest first: on the first-parent line from the failed
/// revision back to the stable one, those that changed a provenance file.
pub fn offending_commits(repo: &Repository, req: &Request) -> Result<Vec<Oid>> {
    let mut walk = repo.revwalk().map_err(git("walking history"))?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
        .map_err(git("walking history"))?;
    // What landed on the branch: a merged pull request is its merge commit (reverted against
    // its first parent), not the commits inside it as well.
    walk.simplify_first_parent()
        .map_err(git("walking history"))?;
    walk.push(req.failed)
        .map_err(git(format!("reading the failed revision {}", req.failed)))?;
    walk.hide(req.stable)
        .map_err(git(format!("reading the stable revision {}", req.stable)))?;
    let mut out = Vec::new();
    for oid in walk {
        let oid = oid.map_err(git("walking history"))?;
        let c = repo.find_commit(oid).map_err(git("reading a commit"))?;
        if touches(&c, &req.paths)? {
            out.push(oid);
        }
    }
    Ok(out)
}

/// Whether `c` changed any of `paths` against its first parent.
fn touches(c: &Commit<'_>, paths: &BTreeSet<String>) -> Result<bool> {
    let tree = c.tree().map_err(git("reading a tree"))?;
    let parent_tree = match c.parent(0) {
        Ok(p) => Some(p.tree().map_err(git("reading a tree"))?),
        Err(_) => None,
    };
    for path in paths {
        let now = tree
            .get_path(std::path::Path::new(path))
            .ok()
            .map(|e| (e.id(), e.filemode()));
        let before = parent_tree
            .as_ref()
            .and_then(|t| t.get_path(std::path::Path::new(path)).ok())
            .map(|e| (e.id(), e.filemode()));
        if now != before {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Builds the rollback commit on `tip` (not referenced by any branch yet).
fn build(repo: &Repository, req: &Request, tip: &Commit<'_>) -> Result<Built> {
    let offending = offending_commits(repo, req)?;
    if offending.is_empty() {
        return Err(Error::NothingToRevert {
            stable: req.stable,
            failed: req.failed,
            paths: req.paths.iter().cloned().collect(),
        });
    }
    let tip_tree = tip.tree().map_err(git("reading the branch tip"))?;
    let (tree, restore) = match revert_all(repo, &tip_tree, &offending)? {
        Some(tree) => (tree, false),
        None => (restore_tree(repo, req, &tip_tree)?, true),
    };
    if tree == tip_tree.id() {
        return Err(Error::AlreadyReverted {
            branch: req.branch.clone(),
        });
    }
    let commits: Vec<Commit<'_>> = offending
        .iter()
        .map(|o| repo.find_commit(*o))
        .collect::<std::result::Result<_, _>>()
        .map_err(git("reading a commit"))?;
    let message = message(req, &commits, restore);
    let tree = repo.find_tree(tree).map_err(git("reading a tree"))?;
    let sig = Signature::now(&req.identity.name, &req.identity.email)
        .map_err(git("making the commit signature"))?;
    let commit = repo
        .commit(None, &sig, &sig, &message, &tree, &[tip])
        .map_err(git("writing the rollback commit"))?;
    Ok(Built {
        commit,
        reverted: offending,
        restore,
    })
}

/// Reverts `offending` (newest first) onto `base`: each revert is a three-way merge with the
/// commit as ancestor and its parent as theirs. `None` if any conflicts.
fn revert_all(repo: &Repository, base: &Tree<'_>, offending: &[Oid]) -> Result<Option<Oid>> {
    let mut current = base.id();
    for oid in offending {
        let c = repo.find_commit(*oid).map_err(git("reading a commit"))?;
        let theirs = match c.parent(0) {
            Ok(p) => p.tree().map_err(git("reading a tree"))?,
            // Reverting a root commit: back to an empty tree.
            Err(_) => {
                let empty = repo
                    .treebuilder(None)
                    .and_then(|b| b.write())
                    .map_err(git("writing an empty tree"))?;
                repo.find_tree(empty).map_err(git("reading a tree"))?
            }
        };
        let ancestor = c.tree().map_err(git("reading a tree"))?;
        let ours = repo.find_tree(current).map_err(git("reading a tree"))?;
        let mut index = repo
            .merge_trees(&ancestor, &ours, &theirs, None)
            .map_err(git(format!("reverting {oid}")))?;
        if index.has_conflicts() {
            return Ok(None);
        }
        current = index
            .write_tree_to(repo)
            .map_err(git(format!("writing the revert of {oid}")))?;
    }
    Ok(Some(current))
}

/// `base` with exactly `req.paths` set back to their content at the stable revision (removed
/// where they did not exist then).
fn restore_tree(repo: &Repository, req: &Request, base: &Tree<'_>) -> Result<Oid> {
    let stable = repo
        .find_commit(req.stable)
        .and_then(|c| c.tree())
        .map_err(git(format!("reading the stable revision {}", req.stable)))?;
    let mut index = git2::Index::new().map_err(git("making an index"))?;
    index
        .read_tree(base)
        .map_err(git("reading the branch tip"))?;
    for path in &req.paths {
        let p = std::path::Path::new(path);
        match stable.get_path(p) {
            Ok(entry) => {
                let blob = repo
                    .find_blob(entry.id())
                    .map_err(git(format!("reading {path}")))?;
                let mut ie = blank_entry(path, entry.filemode() as u32);
                ie.id = entry.id();
                ie.file_size = blob.size() as u32;
                index.add(&ie).map_err(git(format!("restoring {path}")))?;
            }
            Err(_) => {
                let _ = index.remove_path(p);
            }
        }
    }
    index
        .write_tree_to(repo)
        .map_err(git("writing the restore tree"))
}

fn blank_entry(path: &str, mode: u32) -> git2::IndexEntry {
    git2::IndexEntry {
        ctime: git2::IndexTime::new(0, 0),
        mtime: git2::IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: 0,
        id: Oid::ZERO_SHA1,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// One line of outside text, safe in a commit message.
fn line(s: &str) -> String {
    escape_control(s.lines().next().unwrap_or("").trim())
}

fn message(req: &Request, commits: &[Commit<'_>], restore: bool) -> String {
    let subject_of =
        |c: &Commit<'_>| line(&String::from_utf8_lossy(c.summary_bytes().unwrap_or(b"")));
    let short = |o: Oid| o.to_string()[..7].to_owned();
    let mut m = match commits {
        [one] => format!("Revert \"{}\"\n\n", subject_of(one)),
        many => format!(
            "Revert {} commits that failed {}/{}\n\n",
            many.len(),
            req.namespace,
            req.rollout
        ),
    };
    for c in commits {
        m.push_str(&format!("{REVERTS_MARK}{}.\n", c.id()));
        if commits.len() > 1 {
            m.push_str(&format!("    {} {}\n", short(c.id()), subject_of(c)));
        }
    }
    m.push('\n');
    if restore {
        m.push_str(&format!(
            "A revert conflicted with later changes, so this commit {RESTORE_MARK}{}:\n",
            req.stable
        ));
        for p in &req.paths {
            m.push_str(&format!("    {}\n", escape_control(p)));
        }
        m.push('\n');
    }
    m.push_str(&format!("Cluster: {}\n", line(&req.cluster)));
    m.push_str(&format!(
        "Rollout: {}/{}\n",
        line(&req.namespace),
        line(&req.rollout)
    ));
    m.push_str(&format!("Reason: {}\n", line(&req.reason)));
    m.push_str("Verdict:\n");
    for l in req.verdict.lines() {
        // Indented, so no verdict line can pose as a trailer.
        m.push_str(&format!("    {}\n", escape_control(l)));
    }
    m.push('\n');
    m.push_str(&req.trailer());
    m.push('\n');
    m
}

#[cfg(test)]
mod tests {
    use super::Identity;

    #[test]
    fn an_author_is_name_and_address_as_git_writes_them() {
        assert_eq!(
            Identity::parse("Release Bot <release-bot@example.com>"),
            Ok(Identity {
                name: "Release Bot".into(),
                email: "release-bot@example.com".into()
            })
        );
        for bad in [
            "release-bot@example.com",
            "<release-bot@example.com>",
            "Bot <>",
            "Bot <no-at-sign>",
            "Bot <a@b@c>",
            "Bot <a b@example.com>",
            "Bot\n<a@example.com>",
            "Bot <a@example.com",
            "Bot > x <a@example.com>",
        ] {
            let e = Identity::parse(bad).expect_err(bad);
            assert!(e.contains("Name <email>"), "{bad:?}: {e}");
        }
    }
}
