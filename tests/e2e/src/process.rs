//! Local processes that stop when the test process ends.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Shell wrapper that runs `"$@"` and sends it SIGTERM once its own
/// standard input reaches end of file. The test process has the only write end
/// of that pipe, so the operating system closes it when the test process
/// exits for any reason, and no process outlives the suite. The wrapper
/// exits with the status of the wrapped process.
const WATCHDOG_SCRIPT: &str = r#"
exec 3<&0 0</dev/null
"$@" 3<&- &
child=$!
{ read -r _ <&3; kill -TERM "$child" 2>/dev/null; } &
watcher=$!
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// A local process started by the suite. Dropping it sends the process
/// SIGTERM and waits for it to exit.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    stop_pipe: Option<ChildStdin>,
    log: PathBuf,
}

impl Supervised {
    /// Starts `program` with `args`; standard output and standard error go
    /// to `log`.
    ///
    /// # Panics
    ///
    /// Panics when the log file cannot be created or `sh` cannot start.
    pub fn start(name: &str, program: &Path, args: &[String], log: &Path) -> Supervised {
        let log_file = File::create(log)
            .unwrap_or_else(|error| panic!("failed to create {}: {error}", log.display()));
        let log_copy = log_file.try_clone().expect("duplicate the log file handle");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("portcullis-e2e-watchdog")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(log_copy)
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {name}: {error}"));
        let stop_pipe = child.stdin.take();
        Supervised {
            name: name.to_owned(),
            child,
            stop_pipe,
            log: log.to_owned(),
        }
    }

    /// Path of the process's log.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Returns the exit status once the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Closing the pipe makes the wrapper send SIGTERM.
        drop(self.stop_pipe.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.exit_status().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{} did not stop within 15 s after SIGTERM; killing its wrapper (log: {})",
            self.name,
            self.log.display()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}
