//! The tree of one git commit as a [`FileTree`], read straight from git objects and hardened
//! for hostile repositories: sizes come from object headers before any blob is read (a 700 MB
//! blob costs nothing), symlink targets are bounded, and nothing is skipped silently: file
//! names that are not UTF-8 and duplicate entries make their directory an error naming them,
//! and submodules (gitlinks) are reported as such rather than as missing.

use super::tree::{Entry, FileTree};
use git2::{ObjectType, Oid, Repository};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Longest symlink target read (Linux's `PATH_MAX`).
const MAX_LINK_BYTES: usize = 4096;

/// The tree of one commit. Each directory's entries are read once and kept, so looking up many
/// files in a large directory stays linear (libgit2 does not cache large tree objects).
pub struct GitTree<'r> {
    repo: &'r Repository,
    tree: git2::Tree<'r>,
    commit: Oid,
    odb: git2::Odb<'r>,
    dirs: RefCell<HashMap<String, Option<Rc<DirIndex>>>>,
}

/// Entries of one directory: name → (kind, file mode, object id); or why it cannot be read.
type DirIndex = Result<HashMap<String, (Option<ObjectType>, i32, Oid)>, String>;

fn index_of(tree: &git2::Tree<'_>) -> DirIndex {
    let mut map = HashMap::new();
    for e in tree.iter() {
        let Ok(name) = e.name() else {
            return Err(format!(
                "file name {:?} in this directory is not UTF-8",
                String::from_utf8_lossy(e.name_bytes())
            ));
        };
        if map
            .insert(name.to_owned(), (e.kind(), e.filemode(), e.id()))
            .is_some()
        {
            return Err(format!(
                "the git tree lists {name:?} twice (a malformed tree object)"
            ));
        }
    }
    Ok(map)
}

fn split_parent(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

impl<'r> GitTree<'r> {
    pub fn at(repo: &'r Repository, commit: Oid) -> Result<GitTree<'r>, git2::Error> {
        let tree = repo.find_commit(commit)?.tree()?;
        let odb = repo.odb()?;
        Ok(GitTree {
            repo,
            tree,
            commit,
            odb,
            dirs: Default::default(),
        })
    }

    pub fn commit(&self) -> Oid {
        self.commit
    }

    /// The entries of directory `dir` (`None`: no such directory).
    fn dir(&self, dir: &str) -> Result<Option<Rc<DirIndex>>, String> {
        if let Some(cached) = self.dirs.borrow().get(dir) {
            return Ok(cached.clone());
        }
        let index = if dir.is_empty() {
            Some(Rc::new(index_of(&self.tree)))
        } else {
            let (parent, name) = split_parent(dir);
            let parent = self.dir(parent)?;
            let found = match parent.as_deref() {
                Some(Ok(p)) => p.get(name).copied(),
                Some(Err(e)) => return Err(e.clone()),
                None => None,
            };
            match found {
                Some((Some(ObjectType::Tree), _, oid)) => {
                    let tree = self
                        .repo
                        .find_tree(oid)
                        .map_err(|e| e.message().to_owned())?;
                    Some(Rc::new(index_of(&tree)))
                }
                _ => None,
            }
        };
        self.dirs.borrow_mut().insert(dir.to_owned(), index.clone());
        Ok(index)
    }

    fn lookup(&self, path: &str) -> Result<Option<(Option<ObjectType>, i32, Oid)>, String> {
        let (parent, name) = split_parent(path);
        match self.dir(parent)?.as_deref() {
            None => Ok(None),
            Some(Ok(d)) => Ok(d.get(name).copied()),
            Some(Err(e)) => Err(format!("{parent:?}: {e}")),
        }
    }

    fn size(&self, oid: Oid) -> Result<usize, String> {
        let (size, _) = self
            .odb
            .read_header(oid)
            .map_err(|e| e.message().to_owned())?;
        Ok(size)
    }
}

impl FileTree for GitTree<'_> {
    fn entry(&self, path: &str) -> Result<Entry, String> {
        if path.is_empty() {
            return Ok(Entry::Dir);
        }
        match self.lookup(path)? {
            None => Ok(Entry::Missing),
            Some((Some(ObjectType::Tree), _, _)) => Ok(Entry::Dir),
            Some((Some(ObjectType::Blob), 0o120000, oid)) => {
                let size = self.size(oid)?;
                if size > MAX_LINK_BYTES {
                    return Err(format!(
                        "symlink target is {size} bytes, over the limit of {MAX_LINK_BYTES}"
                    ));
                }
                let blob = self
                    .repo
                    .find_blob(oid)
                    .map_err(|e| e.message().to_owned())?;
                match std::str::from_utf8(blob.content()) {
                    Ok(t) => Ok(Entry::Symlink {
                        target: t.to_owned(),
                    }),
                    Err(_) => Err("symlink target is not UTF-8".into()),
                }
            }
            Some((Some(ObjectType::Blob), _, oid)) => Ok(Entry::File {
                size: self.size(oid)? as u64,
            }),
            Some((Some(ObjectType::Commit), _, _)) => {
                Ok(Entry::Other("a git submodule (gitlink)".into()))
            }
            Some(_) => Ok(Entry::Other("an unknown kind of git tree entry".into())),
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        let Some((_, _, oid)) = self.lookup(path)? else {
            return Err("no such file".into());
        };
        let blob = self
            .repo
            .find_blob(oid)
            .map_err(|e| e.message().to_owned())?;
        Ok(blob.content().to_vec())
    }

    fn list(&self, path: &str) -> Result<Vec<String>, String> {
        match self.dir(path)?.as_deref() {
            Some(Ok(d)) => Ok(d.keys().cloned().collect()),
            Some(Err(e)) => Err(e.clone()),
            None => Err("not a directory".into()),
        }
    }

    fn display(&self, path: &str) -> String {
        path.to_owned()
    }
}
