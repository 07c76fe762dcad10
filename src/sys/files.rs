//! Careful file access for files that someone else may have replaced: a
//! FIFO, a device, a symbolic link or a huge file where a regular file was
//! expected, and databases whose locks must not be disturbed.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Whether this process may write `path`, asked of the kernel without
/// opening it (`faccessat` with the effective ids).
///
/// Opening and closing a file drops every POSIX lock this process holds on
/// it, SQLite's included: a writability probe of a database must never
/// open it.
pub fn check_writable(path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let result = unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::W_OK, libc::AT_EACCESS) };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Who besides its owner can read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Its group.
    Group,
    /// Every user.
    Everyone,
}

/// Who besides its owner can read the file at `path`, and its mode: the
/// file's mode must let them read it, and every directory above it (links
/// resolved) let them through. `None` when nobody else can.
pub fn other_readers(path: &Path) -> io::Result<Option<(Readers, u32)>> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::fs::canonicalize(path)?;
    let mode = std::fs::metadata(&path)?.permissions().mode();
    let (mut others, mut group) = (mode & 0o004 != 0, mode & 0o040 != 0);
    for dir in path.ancestors().skip(1) {
        let dir_mode = std::fs::metadata(dir)?.permissions().mode();
        others &= dir_mode & 0o001 != 0;
        group &= dir_mode & 0o010 != 0;
    }
    Ok(match (others, group) {
        (true, _) => Some((Readers::Everyone, mode)),
        (false, true) => Some((Readers::Group, mode)),
        (false, false) => None,
    })
}

/// The contents of `path` if it is a regular file, not a symbolic link,
/// of exactly `size` bytes; `None` otherwise (a FIFO, a device, a link, a
/// directory, another size, no file).
///
/// Never blocks on a FIFO (the type is checked before opening, and the
/// file is opened non-blocking without following links, in case it was
/// swapped meanwhile) and never reads more than `size` bytes.
pub fn read_exact_regular(path: &Path, size: u64) -> io::Result<Option<Vec<u8>>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() && meta.len() == size => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
    {
        Ok(file) => file,
        // O_NOFOLLOW on a link that replaced the file since the check.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.len() != size {
        return Ok(None);
    }
    read_at_most(file, size)
}

/// Reads `file` to its end if that comes within `size` bytes.
fn read_at_most(file: File, size: u64) -> io::Result<Option<Vec<u8>>> {
    let mut contents = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // One byte more than expected tells a file that grew.
    file.take(size.saturating_add(1)).read_to_end(&mut contents)?;
    Ok((contents.len() as u64 == size).then_some(contents))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_those_the_file_and_every_directory_above_let_through() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("a directory");
        let chmod =
            |path: &Path, mode| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("a directory");
        let file = open.join("token");
        std::fs::write(&file, "s3cret").expect("written");
        chmod(dir.path(), 0o755);
        chmod(&open, 0o755);
        let readers = |mode| {
            chmod(&file, mode);
            other_readers(&file).expect("metadata").map(|(readers, _)| readers)
        };
        assert_eq!(readers(0o644), Some(Readers::Everyone));
        assert_eq!(readers(0o640), Some(Readers::Group));
        assert_eq!(readers(0o600), None);
        assert_eq!(readers(0o400), None);
        chmod(&file, 0o644);
        chmod(&open, 0o750);
        assert_eq!(other_readers(&file).expect("metadata").map(|(r, m)| (r, m & 0o777)), Some((Readers::Group, 0o644)));
        chmod(&open, 0o700);
        assert_eq!(other_readers(&file).expect("metadata"), None, "a private directory keeps it private");
        assert!(other_readers(&open.join("missing")).is_err());
    }

    #[test]
    fn only_regular_files_of_the_size_are_read() {
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("BR.gif");
        std::fs::write(&file, b"GIF89a").expect("written");
        assert_eq!(read_exact_regular(&file, 6).expect("read"), Some(b"GIF89a".to_vec()));
        assert_eq!(read_exact_regular(&file, 5).expect("read"), None, "another size");
        assert_eq!(read_exact_regular(&dir.path().join("none"), 6).expect("read"), None);
        let link = dir.path().join("link.gif");
        std::os::unix::fs::symlink(&file, &link).expect("a link");
        assert_eq!(read_exact_regular(&link, 6).expect("read"), None, "a link is not followed");
        assert_eq!(read_exact_regular(Path::new("/dev/zero"), 0).expect("read"), None, "a device");
        let fifo = dir.path().join("fifo.gif");
        let name = CString::new(fifo.as_os_str().as_bytes()).expect("a name");
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert_eq!(read_exact_regular(&fifo, 0).expect("no hang"), None, "a FIFO");
    }

    #[test]
    fn writability_is_asked_without_opening() {
        let dir = tempfile::tempdir().expect("a directory");
        assert!(check_writable(dir.path()).is_ok());
        let missing = check_writable(&dir.path().join("none")).expect_err("no such file");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
