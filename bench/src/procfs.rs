//! Process figures from `/proc`: CPU time (utime + stime, every thread, in clock ticks), peak and
//! current RSS, and the load average. Linux only.

use std::process::Command;

/// utime + stime of process `pid`, in clock ticks (see [`clk_tck`]).
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name (field 2) may hold spaces; the fields after its ')' start at field 3.
    let after = s
        .rfind(')')
        .map(|i| &s[i + 1..])
        .ok_or_else(|| format!("{path}: no ')'"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let num = |field: usize| -> Result<u64, String> {
        fields
            .get(field - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{path}: field {field} missing"))
    };
    Ok(num(14)? + num(15)?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails, the Linux default).
pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100)
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmHWM` (peak RSS) or `VmRSS`, in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Machine-wide CPU ticks from the `cpu` line of `/proc/stat`: (busy, total, steal). Busy is
/// everything but idle and iowait; steal is time the hypervisor gave this VM's CPUs to others.
pub fn machine_ticks() -> Result<(u64, u64, u64), String> {
    let s = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let v: Vec<u64> = s
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .ok_or("/proc/stat: no cpu line")?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if v.len() < 8 {
        return Err("/proc/stat: short cpu line".into());
    }
    let total: u64 = v.iter().sum();
    Ok((total - v[3] - v[4], total, v[7]))
}

/// The three load averages of `/proc/loadavg`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_ok());
        assert!(status_kib(me, "VmHWM").is_some_and(|k| k > 0));
        assert!(clk_tck() > 0);
        let (busy, total, steal) = machine_ticks().unwrap();
        assert!(busy <= total && steal <= total);
    }
}
