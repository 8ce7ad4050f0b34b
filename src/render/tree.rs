//! Read-only views of a repository's files for the renderer: a work tree on disk ([`FsTree`]) or
//! a git commit ([`super::GitTree`]). Paths are repo-relative, `/`-separated, normalised
//! (`""` is the root); [`resolve`] makes every path safe: no `..` above the root and no symlink
//! that leaves the tree.

use super::error::{ErrorKind, RenderError};
use std::path::{Path, PathBuf};

/// What sits at a path, without following symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File {
        size: u64,
    },
    Dir,
    /// A symbolic link and its target as stored (relative or absolute).
    Symlink {
        target: String,
    },
    Missing,
    /// Something that is neither (a git submodule, a device, a socket), described for messages.
    Other(String),
}

/// A repository's files at one revision. Implementations must not follow symlinks themselves.
pub trait FileTree {
    /// What is at `path` (repo-relative, normalised).
    fn entry(&self, path: &str) -> Result<Entry, String>;
    /// Contents of the file at `path`.
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;
    /// Names of the entries of directory `path`, in any order.
    fn list(&self, path: &str) -> Result<Vec<String>, String>;
    /// How to show `path` in messages (a work tree shows it as is; a commit may prefix `rev:`).
    fn display(&self, path: &str) -> String {
        path.to_owned()
    }
}

/// Joins `rel` onto directory `base` and normalises `.` and `..`, refusing to climb above the
/// repository root and refusing absolute paths.
pub fn join(base: &str, rel: &str) -> Result<String, ErrorKind> {
    if rel.starts_with('/') || rel.starts_with('\\') || (rel.len() > 1 && rel.as_bytes()[1] == b':')
    {
        return Err(ErrorKind::PathEscape {
            path: rel.to_owned(),
            why: "absolute paths are not allowed",
        });
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ErrorKind::PathEscape {
                        path: rel.to_owned(),
                        why: "climbs above the repository root",
                    });
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Parent directory of a normalised path (`""` for top-level entries).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// Resolves symlinks in every component of `path`, so that the result names a real entry inside
/// the tree. A link whose target leaves the tree, or a chain of more than 40 links, is an error.
pub fn resolve(tree: &dyn FileTree, path: &str) -> Result<(String, Entry), RenderError> {
    resolve_with(tree, path, 40)
}

/// [`resolve`] with a budget of symlink hops.
pub fn resolve_with(
    tree: &dyn FileTree,
    path: &str,
    max_hops: usize,
) -> Result<(String, Entry), RenderError> {
    let mut hops = 0;
    let mut done: Vec<String> = Vec::new();
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .rev()
        .map(str::to_owned)
        .collect();
    while let Some(part) = todo.pop() {
        let candidate = if done.is_empty() {
            part.clone()
        } else {
            format!("{}/{}", done.join("/"), part)
        };
        let entry = tree
            .entry(&candidate)
            .map_err(|e| RenderError::at(tree.display(&candidate), ErrorKind::Io(e)))?;
        match entry {
            Entry::Symlink { target } => {
                hops += 1;
                if hops > max_hops {
                    return Err(RenderError::at(tree.display(path), ErrorKind::SymlinkLoop));
                }
                let base = done.join("/");
                let joined = join(&base, &target).map_err(|_| {
                    RenderError::at(
                        tree.display(&candidate),
                        ErrorKind::PathEscape {
                            path: target.clone(),
                            why: "symlink points outside the repository",
                        },
                    )
                })?;
                done.clear();
                for p in joined.split('/').filter(|p| !p.is_empty()).rev() {
                    todo.push(p.to_owned());
                }
            }
            Entry::Missing if !todo.is_empty() => {
                return Err(RenderError::at(tree.display(path), ErrorKind::NotFound));
            }
            _ => done.push(part),
        }
    }
    let resolved = done.join("/");
    let entry = if resolved.is_empty() {
        Entry::Dir
    } else {
        tree.entry(&resolved)
            .map_err(|e| RenderError::at(tree.display(&resolved), ErrorKind::Io(e)))?
    };
    Ok((resolved, entry))
}

/// A work tree on disk, read as it is (uncommitted changes included).
#[derive(Debug, Clone)]
pub struct FsTree {
    root: PathBuf,
}

impl FsTree {
    /// A tree rooted at `root` (canonicalised, so symlinks inside can be checked against it).
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<FsTree> {
        Ok(FsTree {
            root: std::fs::canonicalize(root)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }
}

impl FileTree for FsTree {
    fn entry(&self, path: &str) -> Result<Entry, String> {
        let full = self.full(path);
        match std::fs::symlink_metadata(&full) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Entry::Missing),
            Err(e) => Err(e.to_string()),
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&full).map_err(|e| e.to_string())?;
                let target = if target.is_absolute() {
                    // An absolute link is fine when it points inside the work tree.
                    match target.strip_prefix(&self.root) {
                        Ok(inside) => {
                            let depth = path.matches('/').count();
                            format!("{}{}", "../".repeat(depth), inside.to_string_lossy())
                        }
                        Err(_) => target.to_string_lossy().into_owned(),
                    }
                } else {
                    target.to_string_lossy().into_owned()
                };
                Ok(Entry::Symlink { target })
            }
            Ok(m) if m.is_dir() => Ok(Entry::Dir),
            Ok(m) if m.is_file() => Ok(Entry::File { size: m.len() }),
            Ok(_) => Ok(Entry::Other(
                "not a regular file, directory or symlink".into(),
            )),
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.full(path)).map_err(|e| e.to_string())
    }

    fn list(&self, path: &str) -> Result<Vec<String>, String> {
        let rd = std::fs::read_dir(self.full(path)).map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(|e| e.to_string())?;
            match e.file_name().into_string() {
                Ok(n) => names.push(n),
                Err(n) => {
                    return Err(format!(
                        "file name {:?} in this directory is not UTF-8",
                        n.to_string_lossy()
                    ));
                }
            }
        }
        Ok(names)
    }
}

/// An in-memory tree (tests, fuzzing, and callers that already hold the files).
#[derive(Debug, Clone, Default)]
pub struct MemTree {
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
    pub symlinks: std::collections::BTreeMap<String, String>,
}

impl MemTree {
    pub fn with(mut self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.to_owned(), contents.into());
        self
    }
    pub fn with_symlink(mut self, path: &str, target: &str) -> Self {
        self.symlinks.insert(path.to_owned(), target.to_owned());
        self
    }
}

impl FileTree for MemTree {
    fn entry(&self, path: &str) -> Result<Entry, String> {
        if let Some(t) = self.symlinks.get(path) {
            return Ok(Entry::Symlink { target: t.clone() });
        }
        if let Some(f) = self.files.get(path) {
            return Ok(Entry::File {
                size: f.len() as u64,
            });
        }
        let prefix = format!("{path}/");
        let is_dir = path.is_empty()
            || self
                .files
                .keys()
                .chain(self.symlinks.keys())
                .any(|k| k.starts_with(&prefix));
        Ok(if is_dir { Entry::Dir } else { Entry::Missing })
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| "no such file".into())
    }
    fn list(&self, path: &str) -> Result<Vec<String>, String> {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let names: std::collections::BTreeSet<String> = self
            .files
            .keys()
            .chain(self.symlinks.keys())
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .collect();
        Ok(names.into_iter().collect())
    }
}
