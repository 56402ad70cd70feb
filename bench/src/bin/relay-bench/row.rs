//! One row of the report: a load and target's requests, latencies and CPU ticks, pooled over
//! its runs.

use super::*;

/// One measured run, or several of the same load and target pooled.
pub(crate) struct Row {
    pub(crate) load: String,
    pub(crate) target: &'static str,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) secs: f64,
    /// Latencies, ns (sorted by [`Row::sort`]).
    pub(crate) lat: Vec<u32>,
    pub(crate) gateway: Option<usize>,
    /// CPU clock ticks of each process of [`Cpu`] while measuring.
    pub(crate) ticks: [u64; 5],
    /// Machine busy, total and steal ticks while measuring.
    pub(crate) machine: [u64; 3],
    pub(crate) tck: u64,
    /// Paced run: requests sent more than one interval behind schedule.
    pub(crate) late: u64,
    /// The relaying process's CPU µs per request in each pooled run, in run order (runs of
    /// different targets with the same index ran one after the other).
    pub(crate) gw_runs: Vec<f64>,
}

impl Row {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        load: String,
        target: Target,
        lat: Vec<u32>,
        errors: u64,
        first_error: Option<String>,
        secs: f64,
        before: Cpu,
        after: Cpu,
        tck: u64,
    ) -> Self {
        let ticks = [0, 1, 2, 3, 4].map(|i| after.0[i].saturating_sub(before.0[i]));
        let ok = lat.len() as u64;
        let gw_runs = target
            .gateway
            .map(|i| ticks[i] as f64 / tck as f64 * 1e6 / ok.max(1) as f64)
            .into_iter()
            .collect();
        Self {
            gw_runs,
            load,
            target: target.name,
            gateway: target.gateway,
            ok,
            errors,
            first_error,
            secs,
            lat,
            ticks,
            machine: [0, 1, 2].map(|i| after.1[i].saturating_sub(before.1[i])),
            tck,
            late: 0,
        }
    }
    /// Pool another run of the same load and target into this one.
    pub(crate) fn merge(&mut self, mut o: Row) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.first_error = self.first_error.take().or(o.first_error);
        self.secs += o.secs;
        self.lat.append(&mut o.lat);
        for (t, o) in self.ticks.iter_mut().zip(o.ticks) {
            *t += o;
        }
        for (t, o) in self.machine.iter_mut().zip(o.machine) {
            *t += o;
        }
        self.late += o.late;
        self.gw_runs.append(&mut o.gw_runs);
    }
    pub(crate) fn sort(&mut self) {
        self.lat.sort_unstable();
    }
    /// CPU µs per completed request of process `i` of [`Cpu`].
    pub(crate) fn cpu_us(&self, i: usize) -> f64 {
        self.ticks[i] as f64 / self.tck as f64 * 1e6 / self.ok.max(1) as f64
    }
    /// Share of the machine's CPU used by processes outside this benchmark, and stolen by the
    /// hypervisor, while measuring (percent). High values make the row unreliable.
    pub(crate) fn noise_pct(&self) -> (f64, f64) {
        let [busy, total, steal] = self.machine.map(|t| t as f64);
        let ours: u64 = self.ticks.iter().sum();
        let others = (busy - steal - ours as f64).max(0.0);
        (
            100.0 * others / total.max(1.0),
            100.0 * steal / total.max(1.0),
        )
    }
    /// CPU µs per request of the relaying process (NaN for direct).
    pub(crate) fn gw_us(&self) -> f64 {
        self.gateway.map_or(f64::NAN, |i| self.cpu_us(i))
    }
    pub(crate) fn rps(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    pub(crate) fn p(&self, q: f64) -> f64 {
        quantile_us(&self.lat, q)
    }
}
