use std::path::Path;

use anyhow::{bail, Result};

/// `sun_path` holds 108 bytes including the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// Fails with the fix spelled out when `path` cannot be a unix socket
/// address; `bind` would otherwise fail with a bare EINVAL.
pub fn check_socket_path(path: &Path) -> Result<()> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        bail!(
            "socket path {} is {len} bytes, over the {MAX_SOCKET_PATH}-byte limit for unix \
             sockets; set TMPDIR to a shorter directory",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_refused_with_the_fix() {
        let long = format!("/{}/main.sock", "d".repeat(120));
        let err = check_socket_path(Path::new(&long)).unwrap_err().to_string();
        assert!(err.contains(&long) && err.contains("TMPDIR"), "{err}");
        check_socket_path(Path::new("/tmp/qmp-x/main.sock")).unwrap();
    }
}
