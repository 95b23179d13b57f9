//! NVML as the testbed sees it on a GPU host: the facts the GPU tests'
//! requirements (count, free memory) are computed from.

use testbed_gpu::GpuReport;
use testbed_harness::run_test;

#[test]
fn nvml_reports_every_gpu_with_its_memory_and_driver() {
    run_test(|_ctx| async move {
        let report = GpuReport::detect();
        assert!(
            report.count() >= 1,
            "this tier runs only where a GPU is: {}",
            report.summary()
        );
        assert!(
            report
                .driver_version
                .as_deref()
                .is_some_and(|v| !v.is_empty()),
            "driver version"
        );
        assert!(report.cuda_version.is_some(), "CUDA version");
        for gpu in &report.gpus {
            assert!(
                gpu.memory_total_mib > 1024,
                "{} reports {} MiB",
                gpu.name,
                gpu.memory_total_mib
            );
            assert!(gpu.memory_free_mib <= gpu.memory_total_mib);
        }
        println!("{}", report.summary());
        Ok(())
    });
}

#[test]
fn nvml_sees_the_same_gpus_as_the_driver_tool() {
    run_test(|_ctx| async move {
        let report = GpuReport::detect();
        let out = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=name", "--format=csv,noheader"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "nvidia-smi failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .collect();
        let nvml: Vec<String> = report.gpus.iter().map(|g| g.name.clone()).collect();
        assert_eq!(nvml, names, "NVML and nvidia-smi agree on the GPUs");
        Ok(())
    });
}
