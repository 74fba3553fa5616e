//! What a torch process runs on (CPU model and the instruction sets its kernels dispatch to, the
//! CUDA build, driver, devices and cuDNN), which device a stage gets and why, and how the process
//! keeps its freed memory.

use magpipe_stages::train::{DeviceName, hardware_facts};
use serde::Serialize;
use serde_json::{Value, json};

/// Where a stage computes: the CPU or a CUDA device (libtorch's `Device`, which a worker built
/// without libtorch does not have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl Device {
    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

#[cfg(feature = "torch")]
impl From<Device> for tch::Device {
    fn from(d: Device) -> tch::Device {
        match d {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(i) => tch::Device::Cuda(i),
        }
    }
}

/// The allocator settings of [`keep_freed_memory`], for `info`.
#[derive(Debug, Clone, Serialize)]
pub struct Allocator {
    /// Who set glibc's thresholds: "magpipe", "GLIBC_TUNABLES" (the user's) or "glibc defaults"
    /// (`MAGPIPE_MALLOC=default`).
    pub set_by: &'static str,
    /// The mmap and trim thresholds magpipe set, when it set them.
    pub threshold_bytes: Option<i64>,
    /// False when glibc refused a setting (then freed memory may still go back to the OS).
    pub applied: bool,
}

/// glibc hands blocks above its mmap threshold straight back to the OS when they are freed, and
/// trims the top of the heap once more than the trim threshold is free there. A training step
/// frees its whole autograd graph (activations, gates, gradients: tens of MB) and allocates it
/// again on the next step, so with glibc's defaults every step faults those pages in afresh: the
/// issue measured 7.0 of 20.1 CPU-seconds in the kernel and 1.84 million minor faults for 40
/// steps. Raising both thresholds keeps the memory in the process; the peak is reached on every
/// step anyway, so the resident size barely grows. A user's own `GLIBC_TUNABLES` wins.
pub fn keep_freed_memory() -> Allocator {
    const GIB: i32 = 1 << 30;
    let left = |set_by| Allocator {
        set_by,
        threshold_bytes: None,
        applied: false,
    };
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        return left("GLIBC_TUNABLES");
    }
    // Benchmarks compare against glibc's defaults.
    if std::env::var("MAGPIPE_MALLOC").as_deref() == Ok("default") {
        return left("glibc defaults");
    }
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
    // exists (first thing in main).
    let (m, t) = unsafe {
        (
            libc::mallopt(libc::M_MMAP_THRESHOLD, GIB),
            libc::mallopt(libc::M_TRIM_THRESHOLD, GIB),
        )
    };
    Allocator {
        set_by: "magpipe",
        threshold_bytes: Some(i64::from(GIB)),
        applied: m == 1 && t == 1,
    }
}

/// The CPU: its model name, whether it computes bf16 natively, the capability ATen's own kernels
/// dispatch to, and the highest oneDNN ISA its flags allow (oneDNN runs the fused LSTM).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cpu {
    pub model: String,
    pub aten_capability: String,
    pub onednn_isa: String,
    pub bf16: bool,
}

#[cfg(feature = "torch")]
unsafe extern "C" {
    // worker/src/host.cpp: at::get_cpu_capability() as a C string.
    fn magpipe_cpu_capability(buf: *mut libc::c_char, len: libc::size_t) -> libc::c_int;
    // MKL's service function behind mkl_cbwr_get (libtorch links MKL statically and exports
    // only this name): the branch MKL runs in, MKL_CBWR_BRANCH = 1.
    fn mkl_serv_cbwr_get(option: libc::c_int) -> libc::c_int;
}

/// mkl_service.h's option asking for the branch MKL runs in.
#[cfg(feature = "torch")]
const MKL_CBWR_BRANCH: libc::c_int = 1;

#[cfg(feature = "torch")]
fn mkl_branch_name(b: libc::c_int) -> String {
    match b {
        0 | 1 => "automatic dispatch".into(),
        2 => "AUTO".into(),
        3 => "COMPATIBLE".into(),
        10 => "AVX2".into(),
        other => format!("branch {other}"),
    }
}

/// `facts.hardware.kernels` of a native run: what libtorch chose on this CPU.
#[cfg(feature = "torch")]
pub fn native_kernels(cpu: &Cpu) -> Value {
    // SAFETY: a plain query of MKL's service layer; it initialises MKL if needed.
    let branch = unsafe { mkl_serv_cbwr_get(MKL_CBWR_BRANCH) };
    json!(format!(
        "native: ATen {}, MKL {}, oneDNN {}",
        cpu.aten_capability,
        mkl_branch_name(branch),
        cpu.onednn_isa
    ))
}

#[cfg(not(feature = "torch"))]
fn aten_capability() -> String {
    "none (no libtorch)".into()
}

#[cfg(feature = "torch")]
fn aten_capability() -> String {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: the shim writes at most `len` bytes, NUL-terminated.
    let n = unsafe { magpipe_cpu_capability(buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        return "unknown".into();
    }
    // SAFETY: NUL-terminated by the shim within `buf`.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// oneDNN's x86 ISA ladder (dnnl_cpu_isa_t), highest first, with the cpuinfo flags each needs.
const ONEDNN_ISAS: &[(&str, &[&str])] = &[
    (
        "avx512_core_amx",
        &[
            "amx_tile",
            "amx_int8",
            "amx_bf16",
            "avx512_bf16",
            "avx512_vnni",
        ],
    ),
    (
        "avx512_core_fp16",
        &["avx512_fp16", "avx512_bf16", "avx512_vnni"],
    ),
    ("avx512_core_bf16", &["avx512_bf16", "avx512_vnni"]),
    ("avx512_core_vnni", &["avx512_vnni"]),
    (
        "avx512_core",
        &["avx512f", "avx512bw", "avx512vl", "avx512dq"],
    ),
    ("avx2_vnni", &["avx2", "avx_vnni"]),
    ("avx2", &["avx2"]),
    ("avx", &["avx"]),
    ("sse41", &["sse4_1"]),
];

/// The highest rung whose flags are all present (each rung also needs the ones below it, which
/// every real CPU with the rung's own flags has); `ONEDNN_MAX_CPU_ISA` caps it, as in oneDNN.
pub fn onednn_isa(flags: &[&str], cap: Option<&str>) -> String {
    let has = |f: &str| flags.contains(&f);
    let avx512 = ["avx512f", "avx512bw", "avx512vl", "avx512dq"]
        .iter()
        .all(|f| has(f));
    let start = cap
        .map(str::to_ascii_lowercase)
        .and_then(|c| ONEDNN_ISAS.iter().position(|(n, _)| *n == c))
        .unwrap_or(0);
    ONEDNN_ISAS[start..]
        .iter()
        .find(|(name, need)| need.iter().all(|f| has(f)) && (!name.starts_with("avx512") || avx512))
        .map_or("default", |(n, _)| n)
        .to_string()
}

pub fn cpu() -> Cpu {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let flags_line = field("flags").unwrap_or_default();
    let flags: Vec<&str> = flags_line.split_whitespace().collect();
    let cap = std::env::var("ONEDNN_MAX_CPU_ISA").ok();
    Cpu {
        model: field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        aten_capability: aten_capability(),
        onednn_isa: onednn_isa(&flags, cap.as_deref()),
        bf16: flags.contains(&"avx512_bf16") || flags.contains(&"amx_bf16"),
    }
}

/// The CUDA side: what this binary was built with, and what the machine has.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cuda {
    /// libtorch_cuda is linked into this binary (a `MAGPIPE_CUDA=1` build).
    pub compiled: bool,
    /// The NVIDIA driver's libcuda could be loaded.
    pub driver: bool,
    /// The driver's CUDA version, e.g. "13.0" (cuDriverGetVersion).
    pub driver_cuda_version: Option<String>,
    /// The CUDA runtime libtorch was built against, e.g. "13.0".
    pub runtime_version: Option<String>,
    pub cudnn_version: Option<String>,
    pub cudnn_available: bool,
    pub devices: Vec<String>,
}

fn cuda_version(v: i64) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The driver API, loaded at run time: a CPU machine has no libcuda.so.1, and the worker must
/// start there all the same.
fn driver() -> Option<(Option<String>, Vec<String>)> {
    type Init = unsafe extern "C" fn(libc::c_uint) -> libc::c_int;
    type GetInt = unsafe extern "C" fn(*mut libc::c_int) -> libc::c_int;
    type GetDevice = unsafe extern "C" fn(*mut libc::c_int, libc::c_int) -> libc::c_int;
    type GetName = unsafe extern "C" fn(*mut libc::c_char, libc::c_int, libc::c_int) -> libc::c_int;
    // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to the signature the
    // CUDA driver API documents for it, and only called when found.
    unsafe {
        let h = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if h.is_null() {
            return None;
        }
        let sym = |n: &std::ffi::CStr| libc::dlsym(h, n.as_ptr());
        let (init, ver, count, get, name) = (
            sym(c"cuInit"),
            sym(c"cuDriverGetVersion"),
            sym(c"cuDeviceGetCount"),
            sym(c"cuDeviceGet"),
            sym(c"cuDeviceGetName"),
        );
        if [init, ver, count, get, name].iter().any(|p| p.is_null()) {
            return Some((None, Vec::new()));
        }
        let (init, ver, count, get, name): (Init, GetInt, GetInt, GetDevice, GetName) = (
            std::mem::transmute::<*mut libc::c_void, Init>(init),
            std::mem::transmute::<*mut libc::c_void, GetInt>(ver),
            std::mem::transmute::<*mut libc::c_void, GetInt>(count),
            std::mem::transmute::<*mut libc::c_void, GetDevice>(get),
            std::mem::transmute::<*mut libc::c_void, GetName>(name),
        );
        let mut v = 0;
        let version = (ver(&mut v) == 0 && v > 0).then(|| cuda_version(i64::from(v)));
        let mut devices = Vec::new();
        let mut n = 0;
        if init(0) == 0 && count(&mut n) == 0 {
            for i in 0..n {
                let mut d = 0;
                let mut buf = [0 as libc::c_char; 256];
                if get(&mut d, i) == 0 && name(buf.as_mut_ptr(), buf.len() as i32, d) == 0 {
                    devices.push(
                        std::ffi::CStr::from_ptr(buf.as_ptr())
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        Some((version, devices))
    }
}

/// Whether libtorch_cuda is in this process, i.e. the binary was linked to it. (`at::hasCUDA`
/// cannot tell: it is false on a CUDA build without a device.)
fn cuda_linked() -> bool {
    // SAFETY: RTLD_NOLOAD only looks the library up among those already loaded; the handle is
    // released at once.
    unsafe {
        let h = libc::dlopen(
            c"libtorch_cuda.so".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_NOLOAD,
        );
        if h.is_null() {
            return false;
        }
        libc::dlclose(h);
        true
    }
}

pub fn cuda() -> Cuda {
    let compiled = cuda_linked();
    let (driver_ok, driver_cuda_version, devices) = match driver() {
        Some((v, d)) => (true, v, d),
        None => (false, None, Vec::new()),
    };
    #[cfg(not(feature = "torch"))]
    let (runtime_version, cudnn_version, cudnn_available) = (None, None, false);
    #[cfg(feature = "torch")]
    let (runtime_version, cudnn_version, cudnn_available) = if compiled {
        let cudnn = tch::Cuda::cudnn_is_available();
        let v = tch::utils::version_cudnn();
        (
            Some(cuda_version(tch::utils::version_cudart())),
            (v > 0).then(|| format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)),
            cudnn,
        )
    } else {
        (None, None, false)
    };
    Cuda {
        compiled,
        driver: driver_ok,
        driver_cuda_version,
        runtime_version,
        cudnn_version,
        cudnn_available,
        devices,
    }
}

#[cfg(feature = "torch")]
fn torch_sees_cuda() -> bool {
    tch::Cuda::is_available()
}

#[cfg(not(feature = "torch"))]
fn torch_sees_cuda() -> bool {
    false
}

/// A stage's `device` param resolved: the device, and the sentence its log shows.
pub fn pick(asked: DeviceName, cuda: &Cuda) -> Result<(Device, String), String> {
    let usable = if !cuda.compiled {
        Err(
            "this worker was built without CUDA (build it on a machine with an NVIDIA driver, or with MAGPIPE_CUDA=1 make build)",
        )
    } else if !cuda.driver {
        Err("no NVIDIA driver (libcuda.so.1 cannot be loaded)")
    } else if cuda.devices.is_empty() || !torch_sees_cuda() {
        Err("the NVIDIA driver reports no CUDA device")
    } else {
        Ok(())
    };
    match (asked, usable) {
        (DeviceName::Cpu, _) => Ok((Device::Cpu, "device cpu (asked for)".into())),
        (DeviceName::Cuda, Ok(())) => Ok((
            Device::Cuda(0),
            format!("device cuda:0, {} (asked for)", cuda.devices[0]),
        )),
        (DeviceName::Cuda, Err(why)) => Err(format!("device: cuda was asked for, but {why}")),
        (DeviceName::Auto, Ok(())) => Ok((
            Device::Cuda(0),
            format!("device auto → cuda:0, {}", cuda.devices[0]),
        )),
        (DeviceName::Auto, Err(why)) => Ok((Device::Cpu, format!("device auto → cpu: {why}"))),
    }
}

/// What a stage's log says when it is asked for bf16-mixed on a CPU that has no bf16
/// instructions: libtorch then emulates bf16 in software, and a MagFluxLSTM hybrid step ran about 14
/// times slower than fp32 on an AVX2 EPYC (`bench-train 1`: 13.1–14.3 against 186.7–193.0
/// windows/s), so a user who chose it for speed should know at once.
pub fn bf16_warning(bf16: bool, device: Device, cpu: &Cpu) -> Option<String> {
    (bf16 && device == Device::Cpu && !cpu.bf16).then(|| {
        format!(
            "warning: precision bf16-mixed on a CPU without bf16 instructions ({}, {}): libtorch \
             emulates bf16 here, which is an order of magnitude slower than fp32 \
             (see docs/src/guide/performance.md); precision: fp32 is the fast choice on this CPU",
            cpu.model, cpu.onednn_isa
        )
    })
}

/// `facts.hardware` of a torch stage run on `device` (see [`hardware_facts`]).
pub fn hardware(device: Device, cpu: &Cpu, cuda: &Cuda) -> Value {
    hardware_facts(&json!({ "cpu": cpu, "cuda": cuda }), device.is_cuda())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "torch")]
    #[test]
    fn mkl_branches_are_named() {
        assert_eq!(mkl_branch_name(3), "COMPATIBLE");
        assert_eq!(mkl_branch_name(1), "automatic dispatch");
    }

    #[test]
    fn onednn_isa_follows_the_ladder_and_its_cap() {
        let zen4 = [
            "sse4_1",
            "avx",
            "avx2",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512dq",
            "avx512_vnni",
            "avx512_bf16",
        ];
        assert_eq!(onednn_isa(&zen4, None), "avx512_core_bf16");
        assert_eq!(onednn_isa(&zen4, Some("AVX2")), "avx2");
        assert_eq!(onednn_isa(&zen4, Some("nonsense")), "avx512_core_bf16");
        assert_eq!(onednn_isa(&["sse4_1", "avx", "avx2"], None), "avx2");
        // avx512_vnni without the AVX-512 core set is not an AVX-512 machine.
        assert_eq!(onednn_isa(&["avx2", "avx512_vnni"], None), "avx2");
        assert_eq!(onednn_isa(&[], None), "default");
    }

    #[test]
    fn bf16_on_a_cpu_without_bf16_instructions_is_warned_of_and_only_then() {
        let cpu = |bf16| Cpu {
            model: "AMD EPYC".into(),
            aten_capability: "AVX2".into(),
            onednn_isa: "avx2".into(),
            bf16,
        };
        let w = bf16_warning(true, Device::Cpu, &cpu(false)).expect("a warning");
        assert!(w.contains("AMD EPYC, avx2") && w.contains("fp32"), "{w}");
        assert_eq!(bf16_warning(true, Device::Cpu, &cpu(true)), None);
        assert_eq!(bf16_warning(false, Device::Cpu, &cpu(false)), None);
        // A GPU computes bf16 itself, whatever the host CPU lacks.
        assert_eq!(bf16_warning(true, Device::Cuda(0), &cpu(false)), None);
    }

    #[test]
    fn the_cpu_is_named_and_aten_reports_a_capability() {
        let c = cpu();
        assert!(!c.model.is_empty());
        assert!(
            ["DEFAULT", "AVX2", "AVX512", "ZVECTOR", "SVE256", "VSX"]
                .contains(&c.aten_capability.as_str()),
            "{c:?}"
        );
    }

    #[test]
    fn cuda_without_a_usable_gpu_fails_with_the_reason_and_auto_falls_back() {
        let none = Cuda {
            compiled: false,
            driver: false,
            driver_cuda_version: None,
            runtime_version: None,
            cudnn_version: None,
            cudnn_available: false,
            devices: Vec::new(),
        };
        let e = pick(DeviceName::Cuda, &none).unwrap_err();
        assert!(e.contains("built without CUDA"), "{e}");
        let no_driver = Cuda {
            compiled: true,
            ..none.clone()
        };
        let e = pick(DeviceName::Cuda, &no_driver).unwrap_err();
        assert!(e.contains("no NVIDIA driver"), "{e}");
        let no_device = Cuda {
            compiled: true,
            driver: true,
            ..none.clone()
        };
        assert!(
            pick(DeviceName::Cuda, &no_device)
                .unwrap_err()
                .contains("no CUDA device")
        );
        let (d, why) = pick(DeviceName::Auto, &no_driver).unwrap();
        assert_eq!(d, Device::Cpu);
        assert!(
            why.starts_with("device auto → cpu: no NVIDIA driver"),
            "{why}"
        );
        assert_eq!(pick(DeviceName::Cpu, &none).unwrap().0, Device::Cpu);
    }
}
