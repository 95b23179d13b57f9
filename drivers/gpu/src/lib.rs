//! GPU facts from NVML: how many GPUs, which, how much memory, which driver
//! and CUDA version. No NVML library or no GPU is an answer (zero GPUs), not
//! an error: the testbed runs on CPU machines and says why GPU tests skip.

use serde::Serialize;

/// One GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// Index in NVML's order.
    pub index: u32,
    /// Product name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Total memory in MiB.
    pub memory_total_mib: u64,
    /// Free memory in MiB when asked.
    pub memory_free_mib: u64,
}

/// What this machine has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuReport {
    /// The GPUs found (empty on a CPU machine).
    pub gpus: Vec<Gpu>,
    /// The NVIDIA driver version, when NVML loaded.
    pub driver_version: Option<String>,
    /// The CUDA version the driver supports, as `MAJOR.MINOR`.
    pub cuda_version: Option<String>,
    /// Why there are no GPUs, when there are none.
    pub absent_reason: Option<String>,
}

impl GpuReport {
    /// Asks NVML. Never fails: a missing library or driver is reported as
    /// zero GPUs with the reason.
    pub fn detect() -> GpuReport {
        match detect_inner() {
            Ok(report) => report,
            Err(reason) => GpuReport {
                gpus: Vec::new(),
                driver_version: None,
                cuda_version: None,
                absent_reason: Some(reason),
            },
        }
    }

    /// Number of GPUs.
    pub fn count(&self) -> usize {
        self.gpus.len()
    }

    /// The most free memory on any one GPU, in MiB (0 without GPUs).
    pub fn max_free_mib(&self) -> u64 {
        self.gpus
            .iter()
            .map(|g| g.memory_free_mib)
            .max()
            .unwrap_or(0)
    }

    /// One line for tables: "1 × NVIDIA H100 (80 GiB), driver 550.54, CUDA 12.4"
    /// or "0 GPUs: <reason>".
    pub fn summary(&self) -> String {
        if self.gpus.is_empty() {
            return format!(
                "0 GPUs: {}",
                self.absent_reason.as_deref().unwrap_or("NVML reports none")
            );
        }
        let names: Vec<String> = self
            .gpus
            .iter()
            .map(|g| {
                format!(
                    "{} ({} MiB free of {})",
                    g.name, g.memory_free_mib, g.memory_total_mib
                )
            })
            .collect();
        format!(
            "{} GPU(s): {}; driver {}, CUDA {}",
            self.gpus.len(),
            names.join(", "),
            self.driver_version.as_deref().unwrap_or("?"),
            self.cuda_version.as_deref().unwrap_or("?")
        )
    }
}

fn detect_inner() -> Result<GpuReport, String> {
    let nvml = nvml_wrapper::Nvml::init()
        .map_err(|e| format!("NVML unavailable ({e}): no NVIDIA driver on this machine"))?;
    let count = nvml
        .device_count()
        .map_err(|e| format!("NVML device count failed: {e}"))?;
    let mut gpus = Vec::new();
    for index in 0..count {
        let device = nvml
            .device_by_index(index)
            .map_err(|e| format!("NVML device {index}: {e}"))?;
        let memory = device
            .memory_info()
            .map_err(|e| format!("NVML memory of device {index}: {e}"))?;
        gpus.push(Gpu {
            index,
            name: device.name().unwrap_or_else(|_| "unknown".into()),
            memory_total_mib: memory.total / (1024 * 1024),
            memory_free_mib: memory.free / (1024 * 1024),
        });
    }
    let cuda_version = nvml
        .sys_cuda_driver_version()
        .ok()
        .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10));
    let absent_reason = gpus
        .is_empty()
        .then(|| "the NVIDIA driver is loaded but reports 0 devices".to_owned());
    Ok(GpuReport {
        gpus,
        driver_version: nvml.sys_driver_version().ok(),
        cuda_version,
        absent_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_never_fails_and_explains_absence() {
        let report = GpuReport::detect();
        if report.count() == 0 {
            let reason = report
                .absent_reason
                .as_deref()
                .expect("zero GPUs come with a reason");
            assert!(report.summary().starts_with("0 GPUs: "));
            assert!(!reason.is_empty());
        } else {
            assert!(
                report.driver_version.is_some(),
                "a GPU implies a driver version"
            );
            assert!(report
                .gpus
                .iter()
                .all(|g| g.memory_total_mib >= g.memory_free_mib));
        }
    }
}
