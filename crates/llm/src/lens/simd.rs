//! The lens's x86-64 kernels: the products (AVX-512 VNNI, AVX2) and the online softmax fold
//! (AVX-512). Loads are unaligned, through raw pointers into slices whose lengths the callers
//! checked.
use std::arch::x86_64::*;

use super::{LANES, LensInputs, QK, STEPS};

/// Four weights as one little-endian i32 (a broadcast lane).
///
/// # Safety
/// `at + 4 <= qs.len()`.
#[inline(always)]
unsafe fn four(qs: &[u8], at: usize) -> i32 {
    // SAFETY: in bounds per the contract.
    unsafe { std::ptr::read_unaligned(qs.as_ptr().add(at) as *const i32) }
}

/// AVX-512 VNNI: 16 inputs a register. Four rows and two registers of inputs at once: each
/// step loads the inputs' bytes once for the four rows and broadcasts each row's four
/// weights once for both registers, and the eight sums are independent chains, so the
/// `vpdpbusd`s run at the unit's rate instead of waiting on each other (one row alone was a
/// chain of eight). The inputs come offset by 128 (`vpdpbusd` takes them unsigned), so 128
/// times the weights' block sum (`sums`) comes off each block's integer sum.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512 VNNI; the lengths `products` checks.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn rows_vnni(
    d: &[f32],
    qs: &[u8],
    sums: &[i32],
    x: &LensInputs,
    out: &mut [f32],
) {
    let count = d.len() / x.blocks;
    let mut r = 0;
    while r < count {
        // SAFETY (each): rows r.. exist (r + R <= count) and the features are on.
        unsafe {
            match count - r {
                1 => tile::<1>(d, qs, sums, x, out, r),
                2 => tile::<2>(d, qs, sums, x, out, r),
                3 => tile::<3>(d, qs, sums, x, out, r),
                _ => tile::<4>(d, qs, sums, x, out, r),
            }
        }
        r += (count - r).min(4);
    }
}

/// Rows `first..first + R` of a run against every group of inputs, two groups at a time.
///
/// # Safety
/// As `rows_vnni`, and `first + R` rows are in the run.
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
unsafe fn tile<const R: usize>(
    d: &[f32],
    qs: &[u8],
    sums: &[i32],
    x: &LensInputs,
    out: &mut [f32],
    first: usize,
) {
    let mut g = 0;
    while g < x.groups {
        // SAFETY: as this function's; groups g.. exist.
        unsafe {
            if x.groups - g >= 2 {
                groups::<R, 2>(d, qs, sums, x, out, first, g);
            } else {
                groups::<R, 1>(d, qs, sums, x, out, first, g);
            }
        }
        g += 2;
    }
}

/// Rows `first..first + R` against the `G` groups from `group`.
///
/// # Safety
/// As `tile`, and `group + G <= x.groups`.
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
unsafe fn groups<const R: usize, const G: usize>(
    d: &[f32],
    qs: &[u8],
    sums: &[i32],
    x: &LensInputs,
    out: &mut [f32],
    first: usize,
    group: usize,
) {
    let (blocks, width) = (x.blocks, x.groups * LANES);
    let mut totals = [[_mm512_setzero_ps(); G]; R];
    for b in 0..blocks {
        // SAFETY (every load): indices inside the lengths `LensInputs` made and `products`
        // checked (rows first..first + R, blocks b < blocks, groups group..group + G).
        unsafe {
            // Each sum starts at minus the row's correction, so it ends as the exact block
            // sum without a subtraction of its own.
            let mut acc = [[_mm512_setzero_si512(); G]; R];
            for (r, acc) in acc.iter_mut().enumerate() {
                let at = (first + r) * blocks + b;
                *acc = [_mm512_set1_epi32(-*sums.get_unchecked(at)); G];
            }
            for k in 0..STEPS {
                let mut v = [_mm512_setzero_si512(); G];
                for (j, v) in v.iter_mut().enumerate() {
                    let at = (x.group_base(group + j, b) * STEPS + k) * LANES * 4;
                    *v = _mm512_loadu_si512(x.xq.as_ptr().add(at) as *const __m512i);
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_epi32(four(qs, ((first + r) * blocks + b) * QK + 4 * k));
                    for (a, v) in acc.iter_mut().zip(&v) {
                        *a = _mm512_dpbusd_epi32(*a, *v, w);
                    }
                }
            }
            for (r, (acc, totals)) in acc.iter().zip(totals.iter_mut()).enumerate() {
                let at = (first + r) * blocks + b;
                let wd = _mm512_set1_ps(*d.get_unchecked(at));
                for (j, (a, total)) in acc.iter().zip(totals.iter_mut()).enumerate() {
                    let dx = x.dx.as_ptr().add(x.group_base(group + j, b) * LANES);
                    let scale = _mm512_mul_ps(wd, _mm512_loadu_ps(dx));
                    let sum = _mm512_cvtepi32_ps(*a);
                    *total = _mm512_fmadd_ps(sum, scale, *total);
                }
            }
        }
    }
    for (r, totals) in totals.iter().enumerate() {
        for (j, total) in totals.iter().enumerate() {
            let at = (first + r) * width + (group + j) * LANES;
            // SAFETY: out holds count * width floats.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(at), *total) };
        }
    }
}

/// `Online::fold` with a group's sixteen lanes in one register.
///
/// # Safety
/// The CPU has AVX-512F; `lane + LANES <= width` and `values` holds whole rows of `width`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn fold_avx512(
    online: &mut super::Online,
    values: &[f32],
    width: usize,
    lane: usize,
    first: usize,
) {
    // SAFETY (every load and store): `lane + LANES <= width` for every row of `values`,
    // and the `Online` arrays hold LANES each.
    unsafe {
        let old_max = _mm512_loadu_ps(online.max.as_ptr());
        let mut max = old_max;
        let mut row = _mm512_loadu_si512(online.row.as_ptr() as *const __m512i);
        let rows = values.len() / width;
        let at = |r: usize| values.as_ptr().add(r * width + lane);
        for r in 0..rows {
            let v = _mm512_loadu_ps(at(r));
            // Strictly larger: a tie keeps the earlier row.
            let better = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, max);
            max = _mm512_mask_mov_ps(max, better, v);
            row = _mm512_mask_mov_epi32(row, better, _mm512_set1_epi32((first + r) as i32));
        }
        let mut sum = _mm512_mul_ps(
            _mm512_loadu_ps(online.sum.as_ptr()),
            exp(_mm512_sub_ps(old_max, max)),
        );
        for r in 0..rows {
            sum = _mm512_add_ps(sum, exp(_mm512_sub_ps(_mm512_loadu_ps(at(r)), max)));
        }
        _mm512_storeu_ps(online.max.as_mut_ptr(), max);
        _mm512_storeu_ps(online.sum.as_mut_ptr(), sum);
        _mm512_storeu_si512(online.row.as_mut_ptr() as *mut __m512i, row);
    }
}

/// `attend::exp` on sixteen lanes: the same operations (none fused) in the same order.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp(x: __m512) -> __m512 {
    let c = _mm512_set1_ps;
    let x = _mm512_max_ps(x, c(-87.0));
    let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_add_ps(
        _mm512_mul_ps(x, c(std::f32::consts::LOG2_E)),
        c(0.5),
    ));
    let r = _mm512_sub_ps(
        _mm512_sub_ps(x, _mm512_mul_ps(k, c(crate::attend::LN2_HI))),
        _mm512_mul_ps(k, c(crate::attend::LN2_LO)),
    );
    let step = |coef: f32, p: __m512| _mm512_add_ps(c(coef), _mm512_mul_ps(r, p));
    let p = step(1.0 / 120.0, c(1.0 / 720.0));
    let p = step(1.0 / 24.0, p);
    let p = step(1.0 / 6.0, p);
    let p = step(0.5, p);
    let p = step(1.0, p);
    let p = step(1.0, p);
    const MAGIC: f32 = 12_582_912.0;
    let k = _mm512_sub_epi32(
        _mm512_castps_si512(_mm512_add_ps(k, c(MAGIC))),
        _mm512_set1_epi32(MAGIC.to_bits() as i32),
    );
    let scale = _mm512_slli_epi32::<23>(_mm512_add_epi32(k, _mm512_set1_epi32(127)));
    _mm512_mul_ps(p, _mm512_castsi512_ps(scale))
}

/// AVX2: 8 inputs a register, two registers a group; |w| times x carrying w's sign, so
/// `maddubs` never saturates (|x| <= 127).
///
/// # Safety
/// The CPU has AVX2 and FMA; the lengths `row` checks.
#[cfg_attr(
    not(all(target_feature = "avx2", target_feature = "fma")),
    allow(dead_code)
)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn row_avx2(d: &[f32], qs: &[u8], x: &LensInputs, out: &mut [f32]) {
    let ones = _mm256_set1_epi16(1);
    for g in 0..x.groups {
        let mut total = [_mm256_setzero_ps(); 2];
        for b in 0..x.blocks {
            let base = x.group_base(g, b);
            // SAFETY (every load): indices inside the checked lengths.
            unsafe {
                let xq = x.xq.as_ptr().add(base * STEPS * LANES * 4);
                let mut acc = [_mm256_setzero_si256(); 2];
                for k in 0..STEPS {
                    let w = _mm256_set1_epi32(four(qs, b * QK + 4 * k));
                    let aw = _mm256_sign_epi8(w, w);
                    for (h, a) in acc.iter_mut().enumerate() {
                        let v =
                            _mm256_loadu_si256(xq.add((k * LANES + 8 * h) * 4) as *const __m256i);
                        let p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(v, w));
                        *a = _mm256_add_epi32(*a, _mm256_madd_epi16(p, ones));
                    }
                }
                let wd = _mm256_set1_ps(*d.get_unchecked(b));
                for (h, t) in total.iter_mut().enumerate() {
                    let dx = _mm256_loadu_ps(x.dx.as_ptr().add(base * LANES + 8 * h));
                    let scale = _mm256_mul_ps(wd, dx);
                    *t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[h]), scale, *t);
                }
            }
        }
        for (h, t) in total.iter().enumerate() {
            // SAFETY: out holds groups * LANES floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(g * LANES + 8 * h), *t) };
        }
    }
}
