//! The machine the figures came from: they mean little without it.

use serde_json::{json, Value};

pub struct Host {
    pub nproc: usize,
    pub cpu: String,
    pub memory_kib: u64,
    pub kernel: String,
    pub qemu: String,
}

impl Host {
    /// Reads /proc; a field it cannot read says "unknown" rather than
    /// failing a bench that has already run.
    pub fn read(qemu: String) -> Host {
        let proc = |name: &str| std::fs::read_to_string(name).unwrap_or_default();
        Host {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpu_model(&proc("/proc/cpuinfo")).unwrap_or_else(|| "unknown".into()),
            memory_kib: mem_total_kib(&proc("/proc/meminfo")).unwrap_or(0),
            kernel: match proc("/proc/sys/kernel/osrelease").trim() {
                "" => "unknown".into(),
                release => release.to_owned(),
            },
            qemu,
        }
    }

    /// One line for the table's heading and the README.
    pub fn summary(&self) -> String {
        format!(
            "{} x {}, {:.1} GiB, Linux {}, QEMU {}",
            self.nproc,
            self.cpu,
            self.memory_kib as f64 / (1024.0 * 1024.0),
            self.kernel,
            self.qemu
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "nproc": self.nproc,
            "cpu": self.cpu,
            "memory_kib": self.memory_kib,
            "kernel": self.kernel,
            "qemu": self.qemu,
        })
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Example CPU @ 2.00GHz\n\nprocessor\t: 1\nmodel name\t: Other\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("Example CPU @ 2.00GHz"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
    }

    #[test]
    fn reads_mem_total() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(24_576_000));
        assert_eq!(mem_total_kib("MemFree: 1 kB\n"), None);
    }
}
