//! Prints what NVML reports about this machine's GPUs, as JSON: the quick
//! check of the GPU driver on a new host (`cargo run -p testbed-gpu
//! --example gpu_report`).

fn main() {
    let report = testbed_gpu::GpuReport::detect();
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("serialize the report")
    );
    println!("{}", report.summary());
}
