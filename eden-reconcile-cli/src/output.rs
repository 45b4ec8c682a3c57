//! Standard output that ends quietly when its reader goes away (`eden-reconcile check |
//! head`): a closed pipe discards the rest of the output instead of failing the run, as
//! ripgrep does; the exit code stays the command's own.

use std::io::{self, StdoutLock, Write};

/// Locked standard output that treats a closed pipe as the end of the output.
pub struct Stdout {
    inner: StdoutLock<'static>,
    closed: bool,
}

/// Standard output for a command's report.
pub fn stdout() -> Stdout {
    Stdout {
        inner: io::stdout().lock(),
        closed: false,
    }
}

impl Stdout {
    fn quiet<T>(&mut self, r: io::Result<T>, ok: T) -> io::Result<T> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(ok)
            }
            r => r,
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.quiet(r, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.inner.flush();
        self.quiet(r, ())
    }
}

impl Drop for Stdout {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
