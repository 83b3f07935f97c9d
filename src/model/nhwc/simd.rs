//! The vector operations of the CPU kernels (`gemm`'s register blocks, `kernels`' depthwise
//! strips) for one register width. Each kernel is written once over [`Lanes`] and compiled
//! per instruction set: every method is `#[inline(always)]` and inlines into the caller's
//! `#[target_feature]` copy, which must enable what the type needs. Also here: which
//! instruction set the kernels use ([`simd`]), and [`dispatch`] for plain loops that only need
//! compiling for AVX2.

use crate::model::layers::Act;

/// `N` lanes of `f32`.
///
/// SAFETY (every method): the CPU has the features of the implementing type; pointers point
/// at `N` readable (`load`) or writable (`store`) values.
pub(crate) trait Lanes: Copy {
    const N: usize;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `self * w + acc`, fused (one rounding).
    unsafe fn mul_add(self, w: Self, acc: Self) -> Self;
    /// `max(self, 0)`.
    unsafe fn relu(self) -> Self;
    unsafe fn add(self, other: Self) -> Self;
    unsafe fn mul(self, other: Self) -> Self;
    unsafe fn min(self, other: Self) -> Self;
    unsafe fn max(self, other: Self) -> Self;

    /// `act` on every lane, as [`Act::apply`] does on a tensor (and [`act_scalar`] on one
    /// value): the epilogue of a GEMM block or a depthwise strip, still in registers.
    #[inline(always)]
    unsafe fn act(self, act: Act) -> Self {
        // SAFETY: the caller has the features `Self` needs (this trait's contract); registers
        // only.
        unsafe {
            match act {
                Act::None => self,
                Act::Relu => self.relu(),
                Act::LeakyRelu => self.max(self.mul(Self::splat(LEAKY_SLOPE))),
                Act::Relu6 => self.relu().min(Self::splat(6.0)),
                Act::Hardswish => {
                    let gate = self.add(Self::splat(3.0)).relu().min(Self::splat(6.0));
                    self.mul(gate.mul(Self::splat(1.0 / 6.0)))
                }
            }
        }
    }
}

/// PaddlePaddle's `leaky_relu` default slope (as [`Act::LeakyRelu`]).
const LEAKY_SLOPE: f32 = 0.01;

/// [`Lanes::act`] on one value (the portable kernels and the channels left over by vectors).
#[inline(always)]
pub fn act_scalar(v: f32, act: Act) -> f32 {
    match act {
        Act::None => v,
        Act::Relu => v.max(0.0),
        Act::LeakyRelu => v.max(v * LEAKY_SLOPE),
        Act::Relu6 => v.clamp(0.0, 6.0),
        Act::Hardswish => v * ((v + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0)),
    }
}

/// The vector instruction sets the CPU kernels are compiled for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    /// Plain Rust loops (what the compiler vectorises for the baseline target).
    Portable,
    /// 8 lanes: AVX2 + FMA.
    Avx2,
    /// 16 lanes: AVX-512F.
    Avx512,
}

impl Simd {
    pub fn name(self) -> &'static str {
        match self {
            Simd::Portable => "portable",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
        }
    }
}

/// The widest instruction set the CPU has, capped by the environment variable
/// `KINETO_CPU_SIMD` (`avx512`, `avx2` or `portable`; `avxvnni`, which caps the int8 kernels
/// (`qgemm::qsimd`), caps these at AVX2): the cap times and tests the narrower
/// kernels on a wide CPU. Read once per process; an unknown value is ignored.
pub fn simd() -> Simd {
    static CHOSEN: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let cap = match std::env::var("KINETO_CPU_SIMD").as_deref() {
            Ok("portable") => Simd::Portable,
            Ok("avx2") | Ok("avxvnni") => Simd::Avx2,
            _ => Simd::Avx512,
        };
        cpu_simd().min(cap)
    })
}

/// The L1 data cache's size in bytes, as the C library reports it (32 KiB where it does not
/// say). Read once per process.
pub fn l1d_bytes() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: `sysconf` only reads a system value.
            let size = unsafe { libc::sysconf(libc::_SC_LEVEL1_DCACHE_SIZE) };
            if (16 * 1024..=1024 * 1024).contains(&size) {
                return size as usize;
            }
        }
        32 * 1024
    })
}

fn cpu_simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Simd::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Simd::Avx2;
        }
    }
    Simd::Portable
}

/// Work whose loops are plain Rust, compiled once more for AVX2 + FMA: `run` is
/// `#[inline(always)]`, so LLVM vectorises its loops for the features of the copy it lands in.
pub(crate) trait Kernel {
    fn run(self);
}

/// Runs `kernel` in its AVX2 + FMA copy where [`simd`] allows them.
pub(crate) fn dispatch(kernel: impl Kernel) {
    #[cfg(target_arch = "x86_64")]
    if simd() >= Simd::Avx2 {
        // SAFETY: `simd()` is Avx2 or wider only where `cpu_simd` detected AVX2 and FMA, or
        // AVX-512F, which every CPU that has it pairs with both (rustc's `avx512f` implies
        // `avx2` and `fma`): the features `with_avx2` is compiled for.
        unsafe { with_avx2(kernel) };
        return;
    }
    kernel.run();
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2(kernel: impl Kernel) {
    kernel.run();
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512, QAvx2, QAvx512Vnni, QAvxVnni};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Lanes, QLanes};

    /// `Lanes`' `add`, `mul`, `min` and `max` of a type over its element-wise intrinsics.
    macro_rules! binary_ops {
        ($ty:ident, $add:ident, $mul:ident, $min:ident, $max:ident) => {
            #[inline(always)]
            unsafe fn add(self, other: Self) -> Self {
                // SAFETY: the caller has the type's features (this trait's contract);
                // registers only.
                $ty(unsafe { $add(self.0, other.0) })
            }
            #[inline(always)]
            unsafe fn mul(self, other: Self) -> Self {
                // SAFETY: as `add`.
                $ty(unsafe { $mul(self.0, other.0) })
            }
            #[inline(always)]
            unsafe fn min(self, other: Self) -> Self {
                // SAFETY: as `add`.
                $ty(unsafe { $min(self.0, other.0) })
            }
            #[inline(always)]
            unsafe fn max(self, other: Self) -> Self {
                // SAFETY: as `add`.
                $ty(unsafe { $max(self.0, other.0) })
            }
        };
    }

    /// 8 lanes; needs AVX2 and FMA.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(__m256);

    impl Lanes for Avx2 {
        const N: usize = 8;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller has AVX2 (this trait's contract: only the AVX2 copies, chosen
            // after `simd()` detected it, use this type) and `p` points at 8 readable values;
            // `loadu` takes any alignment.
            Avx2(unsafe { _mm256_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            // SAFETY: the caller has AVX2 (this trait's contract); no memory is touched.
            Avx2(unsafe { _mm256_set1_ps(v) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller has AVX2 (this trait's contract) and `p` points at 8 writable
            // values; `storeu` takes any alignment.
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn mul_add(self, w: Self, acc: Self) -> Self {
            // SAFETY: the caller has FMA (this trait's contract: `simd()` picks Avx2 only where
            // it detected AVX2 and FMA); registers only.
            Avx2(unsafe { _mm256_fmadd_ps(self.0, w.0, acc.0) })
        }
        #[inline(always)]
        unsafe fn relu(self) -> Self {
            // SAFETY: the caller has AVX2 (this trait's contract); registers only.
            Avx2(unsafe { _mm256_max_ps(self.0, _mm256_setzero_ps()) })
        }
        binary_ops!(
            Avx2,
            _mm256_add_ps,
            _mm256_mul_ps,
            _mm256_min_ps,
            _mm256_max_ps
        );
    }

    /// 16 lanes; needs AVX-512F.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(__m512);

    impl Lanes for Avx512 {
        const N: usize = 16;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller has AVX-512F (this trait's contract: only the AVX-512 copies,
            // chosen after `simd()` detected it, use this type) and `p` points at 16 readable
            // values; `loadu` takes any alignment.
            Avx512(unsafe { _mm512_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            // SAFETY: the caller has AVX-512F (this trait's contract); no memory is touched.
            Avx512(unsafe { _mm512_set1_ps(v) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller has AVX-512F (this trait's contract) and `p` points at 16
            // writable values; `storeu` takes any alignment.
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn mul_add(self, w: Self, acc: Self) -> Self {
            // SAFETY: the caller has AVX-512F (this trait's contract), whose 512-bit FMA this
            // is; registers only.
            Avx512(unsafe { _mm512_fmadd_ps(self.0, w.0, acc.0) })
        }
        #[inline(always)]
        unsafe fn relu(self) -> Self {
            // SAFETY: the caller has AVX-512F (this trait's contract); registers only.
            Avx512(unsafe { _mm512_max_ps(self.0, _mm512_setzero_ps()) })
        }
        binary_ops!(
            Avx512,
            _mm512_add_ps,
            _mm512_mul_ps,
            _mm512_min_ps,
            _mm512_max_ps
        );
    }

    /// `QLanes`' loads, splat and add over 256-bit integer registers (AVX2's intrinsics).
    macro_rules! q256_common {
        ($ty:ident) => {
            const N: usize = 8;
            type F = Avx2;
            #[inline(always)]
            unsafe fn zero() -> Self {
                // SAFETY: the caller has AVX2 (this trait's contract); registers only.
                $ty(unsafe { _mm256_setzero_si256() })
            }
            #[inline(always)]
            unsafe fn load_bytes(p: *const i8) -> Self {
                // SAFETY: the caller has AVX2 and `p` points at 32 readable bytes (this
                // trait's contract); `loadu` takes any alignment.
                $ty(unsafe { _mm256_loadu_si256(p.cast()) })
            }
            #[inline(always)]
            unsafe fn load_i32(p: *const i32) -> Self {
                // SAFETY: as `load_bytes`, 8 values.
                $ty(unsafe { _mm256_loadu_si256(p.cast()) })
            }
            #[inline(always)]
            unsafe fn splat4(v: u32) -> Self {
                // SAFETY: the caller has AVX2 (this trait's contract); registers only.
                $ty(unsafe { _mm256_set1_epi32(v as i32) })
            }
            #[inline(always)]
            unsafe fn add(self, other: Self) -> Self {
                // SAFETY: as `splat4`.
                $ty(unsafe { _mm256_add_epi32(self.0, other.0) })
            }
            #[inline(always)]
            unsafe fn to_f32(self) -> Avx2 {
                // SAFETY: as `splat4`.
                Avx2(unsafe { _mm256_cvtepi32_ps(self.0) })
            }
        };
    }

    /// 8 lanes of `i32`; needs AVX2. Byte products by `vpmaddubsw` (summed in pairs, in 16
    /// bits with saturation: `qgemm`'s weight range keeps the pairs inside) and `vpmaddwd`.
    #[derive(Clone, Copy)]
    pub(crate) struct QAvx2(__m256i);

    impl QLanes for QAvx2 {
        q256_common!(QAvx2);
        #[inline(always)]
        unsafe fn dot(self, x: Self, w: Self) -> Self {
            // SAFETY: the caller has AVX2 (this trait's contract); registers only.
            unsafe {
                let pairs = _mm256_maddubs_epi16(x.0, w.0);
                let quads = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
                QAvx2(_mm256_add_epi32(self.0, quads))
            }
        }
    }

    /// 8 lanes of `i32`; needs AVX2 and AVX-VNNI (`vpdpbusd` on 256-bit registers).
    #[derive(Clone, Copy)]
    pub(crate) struct QAvxVnni(__m256i);

    impl QLanes for QAvxVnni {
        q256_common!(QAvxVnni);
        #[inline(always)]
        unsafe fn dot(self, x: Self, w: Self) -> Self {
            // SAFETY: the caller has AVX-VNNI (this trait's contract); registers only.
            QAvxVnni(unsafe { _mm256_dpbusd_avx_epi32(self.0, x.0, w.0) })
        }
    }

    /// 16 lanes of `i32`; needs AVX-512F and AVX512-VNNI.
    #[derive(Clone, Copy)]
    pub(crate) struct QAvx512Vnni(__m512i);

    impl QLanes for QAvx512Vnni {
        const N: usize = 16;
        type F = Avx512;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: the caller has AVX-512F (this trait's contract); registers only.
            QAvx512Vnni(unsafe { _mm512_setzero_si512() })
        }
        #[inline(always)]
        unsafe fn load_bytes(p: *const i8) -> Self {
            // SAFETY: the caller has AVX-512F and `p` points at 64 readable bytes (this
            // trait's contract); `loadu` takes any alignment.
            QAvx512Vnni(unsafe { _mm512_loadu_si512(p.cast()) })
        }
        #[inline(always)]
        unsafe fn load_i32(p: *const i32) -> Self {
            // SAFETY: as `load_bytes`, 16 values.
            QAvx512Vnni(unsafe { _mm512_loadu_si512(p.cast()) })
        }
        #[inline(always)]
        unsafe fn splat4(v: u32) -> Self {
            // SAFETY: the caller has AVX-512F (this trait's contract); registers only.
            QAvx512Vnni(unsafe { _mm512_set1_epi32(v as i32) })
        }
        #[inline(always)]
        unsafe fn dot(self, x: Self, w: Self) -> Self {
            // SAFETY: the caller has AVX512-VNNI (this trait's contract); registers only.
            QAvx512Vnni(unsafe { _mm512_dpbusd_epi32(self.0, x.0, w.0) })
        }
        #[inline(always)]
        unsafe fn add(self, other: Self) -> Self {
            // SAFETY: as `splat4`.
            QAvx512Vnni(unsafe { _mm512_add_epi32(self.0, other.0) })
        }
        #[inline(always)]
        unsafe fn to_f32(self) -> Avx512 {
            // SAFETY: as `splat4`.
            Avx512(unsafe { _mm512_cvtepi32_ps(self.0) })
        }
    }
}

/// `N` lanes in portable code: the portable int8 kernel's epilogue, and in tests a kernel's
/// geometry at a SIMD width (offsets, grouping, edges) checked on any machine.
#[derive(Clone, Copy)]
pub(crate) struct PortableLanes<const N: usize>([f32; N]);

/// The AVX-512 width in portable code (tests).
#[cfg(test)]
pub(crate) type Portable16 = PortableLanes<16>;

impl<const N: usize> Lanes for PortableLanes<N> {
    const N: usize = N;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` points at N readable values (this trait's contract); `read_unaligned`
        // takes any alignment.
        PortableLanes(unsafe { p.cast::<[f32; N]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        PortableLanes([v; N])
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` points at N writable values (this trait's contract); `write_unaligned`
        // takes any alignment.
        unsafe { p.cast::<[f32; N]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, w: Self, acc: Self) -> Self {
        PortableLanes(std::array::from_fn(|i| self.0[i].mul_add(w.0[i], acc.0[i])))
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        PortableLanes(self.0.map(|v| v.max(0.0)))
    }
    #[inline(always)]
    unsafe fn add(self, other: Self) -> Self {
        PortableLanes(std::array::from_fn(|i| self.0[i] + other.0[i]))
    }
    #[inline(always)]
    unsafe fn mul(self, other: Self) -> Self {
        PortableLanes(std::array::from_fn(|i| self.0[i] * other.0[i]))
    }
    #[inline(always)]
    unsafe fn min(self, other: Self) -> Self {
        PortableLanes(std::array::from_fn(|i| self.0[i].min(other.0[i])))
    }
    #[inline(always)]
    unsafe fn max(self, other: Self) -> Self {
        PortableLanes(std::array::from_fn(|i| self.0[i].max(other.0[i])))
    }
}

/// `N` lanes of `i32` for the int8 kernels (`qgemm`): accumulators, and the same register
/// read as `4 * N` bytes (packed weights, four broadcast activations).
///
/// SAFETY (every method): the CPU has the features of the implementing type; pointers point
/// at `N` readable values (`4 * N` bytes for `load_bytes`).
pub(crate) trait QLanes: Copy {
    const N: usize;
    /// The `f32` lanes of the same width (the epilogue).
    type F: Lanes;
    unsafe fn zero() -> Self;
    unsafe fn load_bytes(p: *const i8) -> Self;
    unsafe fn load_i32(p: *const i32) -> Self;
    /// The same four bytes in every lane.
    unsafe fn splat4(v: u32) -> Self;
    /// Lane j of `self` plus the dot product of lane j's four unsigned bytes of `x` with
    /// its four signed bytes of `w`.
    unsafe fn dot(self, x: Self, w: Self) -> Self;
    unsafe fn add(self, other: Self) -> Self;
    unsafe fn to_f32(self) -> Self::F;
}

/// [`QLanes`] in portable code: `SATURATE` sums the byte products in pairs saturated to 16
/// bits as AVX2's `vpmaddubsw` does (tests: that kernel's arithmetic on any machine), else
/// in 32 bits as VNNI's `vpdpbusd` does.
#[derive(Clone, Copy)]
pub(crate) struct QPortable<const N: usize, const SATURATE: bool>(pub(crate) [i32; N]);

impl<const N: usize, const SATURATE: bool> QLanes for QPortable<N, SATURATE> {
    const N: usize = N;
    type F = PortableLanes<N>;
    #[inline(always)]
    unsafe fn zero() -> Self {
        QPortable([0; N])
    }
    #[inline(always)]
    unsafe fn load_bytes(p: *const i8) -> Self {
        // SAFETY: `p` points at 4 * N readable bytes (this trait's contract).
        let bytes = unsafe { std::slice::from_raw_parts(p, 4 * N) };
        QPortable(std::array::from_fn(|j| {
            i32::from_le_bytes(std::array::from_fn(|q| bytes[4 * j + q] as u8))
        }))
    }
    #[inline(always)]
    unsafe fn load_i32(p: *const i32) -> Self {
        // SAFETY: `p` points at N readable values (this trait's contract).
        QPortable(unsafe { p.cast::<[i32; N]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn splat4(v: u32) -> Self {
        QPortable([v as i32; N])
    }
    #[inline(always)]
    unsafe fn dot(self, x: Self, w: Self) -> Self {
        QPortable(std::array::from_fn(|j| {
            let xs = (x.0[j] as u32).to_le_bytes();
            let ws = w.0[j].to_le_bytes();
            let product = |q: usize| i32::from(xs[q]) * i32::from(ws[q] as i8);
            let (low, high) = (product(0) + product(1), product(2) + product(3));
            let (low, high) = match SATURATE {
                true => (low.clamp(-32768, 32767), high.clamp(-32768, 32767)),
                false => (low, high),
            };
            self.0[j].wrapping_add(low + high)
        }))
    }
    #[inline(always)]
    unsafe fn add(self, other: Self) -> Self {
        QPortable(std::array::from_fn(|j| self.0[j].wrapping_add(other.0[j])))
    }
    #[inline(always)]
    unsafe fn to_f32(self) -> Self::F {
        PortableLanes(self.0.map(|v| v as f32))
    }
}
