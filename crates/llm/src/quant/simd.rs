//! The x86-64 block sums: AVX2's, and AVX-512 VNNI's for one input where the CPU has it.
//! Unaligned loads through raw pointers, after every slice length has been checked once per
//! row (safe loads through arrays made the compiler round-trip each vector through the stack).
use std::arch::x86_64::*;

use super::{BlockType, Q8Vec, QK, Row};

#[target_feature(enable = "avx2")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Dot products of one row with up to four inputs (unused lanes are 0).
pub(super) fn dot_many(row: &Row, xs: &[&Q8Vec]) -> [f32; 4] {
    let mut out = [0f32; 4];
    // SAFETY: this module is compiled only when the whole crate targets AVX2 and FMA
    // (x86-64-v3, `.cargo/config.toml`), so every CPU that runs this binary has them.
    unsafe {
        match *xs {
            [a] => one_input(row, row.d.len(), a, &mut out[..1]),
            [a, b] => out[..2].copy_from_slice(&dot_n::<2>(row, [a, b])),
            [a, b, c] => out[..3].copy_from_slice(&dot_n::<3>(row, [a, b, c])),
            [a, b, c, d, ..] => out = dot_n::<4>(row, [a, b, c, d]),
            [] => {}
        }
    }
    out
}

#[target_feature(enable = "avx2,fma")]
pub(super) fn dot_n<const N: usize>(row: &Row, xs: [&Q8Vec; N]) -> [f32; N] {
    let nb = row.d.len();
    let packed = row.ty.packed_bytes();
    // Every pointer below stays inside these lengths.
    assert!(row.qs.len() >= nb * packed && (row.ty == BlockType::Q8_0 || row.m.len() >= nb));
    for x in &xs {
        assert!(x.qs.len() >= nb * QK && x.d.len() >= nb && x.s.len() >= nb);
    }
    // SAFETY: lengths checked above; loads are unaligned (`loadu`).
    unsafe {
        match row.ty {
            BlockType::Q4_1 => dot_typed::<N, false>(row, xs, nb),
            BlockType::Q8_0 => dot_typed::<N, true>(row, xs, nb),
        }
    }
}

/// One weight row against `N` inputs; `N` and the block type are constants, so the
/// accumulators stay in registers and each block's weights are unpacked once for all
/// inputs. Even and odd blocks alternate two accumulators so consecutive FMAs do not wait
/// on each other.
///
/// # Safety
/// `row.qs` holds `nb` packed blocks, `row.d` (and for Q4_1 `row.m`) `nb` values, and
/// every input `nb * QK` values and `nb` scales and sums.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_typed<const N: usize, const Q8: bool>(
    row: &Row,
    xs: [&Q8Vec; N],
    nb: usize,
) -> [f32; N] {
    let ones = _mm256_set1_epi16(1);
    let low = _mm_set1_epi8(0x0F);
    let wp = row.qs.as_ptr();
    let dw = row.d.as_ptr();
    let xq: [*const i8; N] = std::array::from_fn(|i| xs[i].qs.as_ptr());
    let xd: [*const f32; N] = std::array::from_fn(|i| xs[i].d.as_ptr());
    // Block b's products added into `acc`, one vector per input.
    macro_rules! step {
        ($b:expr, $acc:ident) => {{
            let b: usize = $b;
            // SAFETY (all loads): b < nb, lengths as documented.
            let w = unsafe {
                if Q8 {
                    _mm256_loadu_si256(wp.add(b * 32) as *const __m256i)
                } else {
                    // Low nibbles are weights 0..16, high nibbles 16..32.
                    let nib = _mm_loadu_si128(wp.add(b * 16) as *const __m128i);
                    let lo = _mm_and_si128(nib, low);
                    let hi = _mm_and_si128(_mm_srli_epi16::<4>(nib), low);
                    _mm256_set_m128i(hi, lo)
                }
            };
            // maddubs wants one unsigned operand: Q4_1's weights are; for Q8_0, |w| times x
            // carrying w's sign.
            let u = if Q8 { _mm256_sign_epi8(w, w) } else { w };
            let d = unsafe { *dw.add(b) };
            for i in 0..N {
                let x = unsafe { _mm256_loadu_si256(xq[i].add(b * QK) as *const __m256i) };
                let x = if Q8 { _mm256_sign_epi8(x, w) } else { x };
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), ones);
                let scale = _mm256_set1_ps(d * unsafe { *xd[i].add(b) });
                $acc[i] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(p), $acc[i]);
            }
        }};
    }
    // Even and odd blocks into separate accumulators.
    let mut even = [_mm256_setzero_ps(); N];
    let mut odd = [_mm256_setzero_ps(); N];
    let mut b = 0;
    while b + 1 < nb {
        step!(b, even);
        step!(b + 1, odd);
        b += 2;
    }
    if b < nb {
        step!(b, even);
    }
    let acc: [__m256; N] = std::array::from_fn(|i| _mm256_add_ps(even[i], odd[i]));
    std::array::from_fn(|i| {
        // Q4_1's offset: sum over blocks of m * s, a plain dot product of two arrays.
        let offset = if Q8 {
            0.0
        } else {
            dot_f32(&row.m[..nb], &xs[i].s[..nb])
        };
        hsum(acc[i]) + offset
    })
}

/// Whether this CPU has AVX-512 VNNI (with BW for the byte masks): one input's products
/// then take `rows_vnni` (std caches the answer; this is a load and a test).
#[inline]
fn vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// `out[i] = dot(row i of run, x)` for a run of `out.len()` rows of `nb` blocks, a whole run a
/// call (the checks once, no dispatch a row: the decode's rows are only 18 or 48 blocks, and
/// this is 1.1-1.5x `dot_many` a row there): `rows_vnni` where this CPU has AVX-512 VNNI,
/// `rows_avx2` where not, the same bits either way.
pub(super) fn one_input(run: &Row, nb: usize, x: &Q8Vec, out: &mut [f32]) {
    let (count, q8) = (out.len(), run.ty == BlockType::Q8_0);
    // Every pointer below stays inside these lengths.
    assert!(run.d.len() >= count * nb);
    assert!(run.qs.len() >= count * nb * run.ty.packed_bytes());
    assert!(q8 || run.m.len() >= count * nb);
    assert!(x.qs.len() >= nb * QK && x.d.len() >= nb && x.s.len() >= nb);
    // SAFETY: lengths checked above; VNNI where `vnni()` says so, AVX2 and FMA are this
    // build's baseline (x86-64-v3).
    unsafe {
        match (vnni(), q8) {
            (true, true) => rows_vnni::<true>(run, nb, x, out),
            (true, false) => rows_vnni::<false>(run, nb, x, out),
            (false, true) => rows_avx2::<true>(run, nb, x, out),
            (false, false) => rows_avx2::<false>(run, nb, x, out),
        }
    }
}

/// Rows against one input with AVX2: `dot_typed::<1, _>` a row (so its bits) from one loop.
///
/// # Safety
/// The CPU has AVX2 and FMA; the lengths as `one_input` checks.
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<const Q8: bool>(run: &Row, nb: usize, x: &Q8Vec, out: &mut [f32]) {
    for (r, o) in out.iter_mut().enumerate() {
        let row = run.blocks(r * nb, (r + 1) * nb);
        // SAFETY: the row holds `nb` blocks, `x` `nb` blocks (checked by `one_input`).
        *o = unsafe { dot_typed::<1, Q8>(&row, [x], nb) }[0];
    }
}

/// Rows against one input (the decode's products, and the head's), two blocks a 512-bit
/// register: block b's 32 weights in the low half, b + 1's in the high half, and one
/// `vpdpbusd` gives the same sixteen four-product integers as `dot_typed`'s two
/// `maddubs`/`madd` steps (Q4_1's weights are unsigned, as `vpdpbusd` wants; Q8_0's go in as
/// |w| against x carrying w's sign, as there; nothing saturates). The low half is
/// `dot_typed`'s even accumulator, the high half its odd one, each block's scale the same
/// product `d * dx`, so each row's sum comes out in the same bits with fewer instructions.
///
/// # Safety
/// As `blocks_vnni`, for every row of the run (`one_input` checks the lengths).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
unsafe fn rows_vnni<const Q8: bool>(run: &Row, nb: usize, x: &Q8Vec, out: &mut [f32]) {
    let packed = run.ty.packed_bytes();
    for (r, o) in out.iter_mut().enumerate() {
        // SAFETY: row r < count is inside the run.
        let acc = unsafe {
            blocks_vnni::<Q8>(
                run.qs.as_ptr().add(r * nb * packed),
                run.d.as_ptr().add(r * nb),
                x,
                nb,
            )
        };
        *o = if Q8 {
            hsum(acc) + 0.0
        } else {
            hsum(acc) + dot_f32(&run.m[r * nb..(r + 1) * nb], &x.s[..nb])
        };
    }
}

/// The block sums of `rows_vnni`, even and odd accumulators added (`dot_typed`'s `acc`).
///
/// # Safety
/// The CPU has AVX-512F, BW and VNNI; `qs` holds `nb` packed blocks (16 bytes each for
/// Q4_1, 32 for Q8_0), `d` `nb` scales, `x` `nb` blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[inline]
unsafe fn blocks_vnni<const Q8: bool>(
    qs: *const u8,
    d: *const f32,
    x: &Q8Vec,
    nb: usize,
) -> __m256 {
    let low = _mm512_set1_epi8(0x0F);
    // Q4_1: the 16 nibble bytes twice in each half; the second copy shifted down by 4
    // (the weights 16..32 of the block).
    let shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    let (xq, xd) = (x.qs.as_ptr(), x.d.as_ptr());
    let mut acc = _mm512_setzero_ps();
    let mut chunk = 0;
    while chunk < nb {
        // Sixteen blocks' scales at once (the same f32 products `dot_typed` makes one by
        // one), then a pair's two scales spread over the halves.
        let n = (nb - chunk).min(16);
        let mask: __mmask16 = if n == 16 { 0xFFFF } else { (1u16 << n) - 1 };
        // SAFETY (every load here): blocks chunk..chunk + n < nb; masked lanes are not read.
        unsafe {
            let scales = _mm512_mul_ps(
                _mm512_maskz_loadu_ps(mask, d.add(chunk)),
                _mm512_maskz_loadu_ps(mask, xd.add(chunk)),
            );
            let mut pick = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
            let two = _mm512_set1_epi32(2);
            let mut b = chunk;
            while b < chunk + n {
                // A pair, or the last block alone (its half of the register only).
                let pair = b + 1 < chunk + n;
                let lanes: __mmask16 = if pair { 0xFFFF } else { 0x00FF };
                let xv = if pair {
                    _mm512_loadu_si512(xq.add(b * QK) as *const __m512i)
                } else {
                    _mm512_castsi256_si512(_mm256_loadu_si256(xq.add(b * QK) as *const __m256i))
                };
                let (w, xv) = if Q8 {
                    let w = if pair {
                        _mm512_loadu_si512(qs.add(b * 32) as *const __m512i)
                    } else {
                        _mm512_zextsi256_si512(_mm256_loadu_si256(qs.add(b * 32) as *const __m256i))
                    };
                    // |w| (-128 becomes 128 unsigned) and x negated where w < 0.
                    let negative = _mm512_movepi8_mask(w);
                    let xv = _mm512_mask_sub_epi8(xv, negative, _mm512_setzero_si512(), xv);
                    (_mm512_abs_epi8(w), xv)
                } else {
                    let nibbles = if pair {
                        _mm256_loadu_si256(qs.add(b * 16) as *const __m256i)
                    } else {
                        _mm256_zextsi128_si256(_mm_loadu_si128(qs.add(b * 16) as *const __m128i))
                    };
                    let wide = _mm512_castsi256_si512(nibbles);
                    let twice = _mm512_shuffle_i64x2::<0b01_01_00_00>(wide, wide);
                    (_mm512_and_si512(_mm512_srlv_epi64(twice, shift), low), xv)
                };
                let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xv);
                let scale = _mm512_permutexvar_ps(pick, scales);
                acc = _mm512_mask3_fmadd_ps(scale, _mm512_cvtepi32_ps(p), acc, lanes);
                pick = _mm512_add_epi32(pick, two);
                b += 2;
            }
        }
        chunk += n;
    }
    _mm256_add_ps(
        _mm512_castps512_ps256(acc),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc))),
    )
}

/// Four independent partial sums, so the adds do not wait on each other.
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut part = [0f32; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..4 {
            part[k] += x[k] * y[k];
        }
    }
    part.iter().sum::<f32>() + tail
}

/// `quantize`'s block with AVX2: the largest magnitude, then each value times 1/d rounded half
/// away from zero (adding the largest float below 1/2 with the value's sign, then truncating,
/// is exact for these magnitudes, below 128), packed to bytes in order, and their sum; the
/// same results as the scalar block, eight values an instruction.
pub(super) fn quantize_block(chunk: &[f32], q: &mut [i8]) -> (f32, i32) {
    assert!(chunk.len() >= QK && q.len() >= QK);
    // SAFETY: AVX2 is this build's baseline; lengths checked above.
    unsafe { quantize_avx2(chunk, q) }
}

/// # Safety
/// The CPU has AVX2; `chunk` and `q` hold a block each.
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_avx2(chunk: &[f32], q: &mut [i8]) -> (f32, i32) {
    // SAFETY (loads and the store): 32 values and 32 bytes, checked by the caller.
    unsafe {
        let v: [__m256; 4] = [0, 8, 16, 24].map(|at| _mm256_loadu_ps(chunk.as_ptr().add(at)));
        let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
        let most = v.iter().fold(_mm256_setzero_ps(), |m, v| {
            _mm256_max_ps(m, _mm256_and_ps(*v, magnitude))
        });
        let s = _mm_max_ps(
            _mm256_castps256_ps128(most),
            _mm256_extractf128_ps::<1>(most),
        );
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_movehdup_ps(s));
        let amax = _mm_cvtss_f32(s);
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let half = _mm256_set1_ps(0.499_999_97);
        let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
        let ints = v.map(|v| {
            let p = _mm256_mul_ps(v, id);
            let nudge = _mm256_or_ps(half, _mm256_and_ps(p, sign));
            _mm256_cvttps_epi32(_mm256_add_ps(p, nudge))
        });
        let total = _mm256_add_epi32(
            _mm256_add_epi32(ints[0], ints[1]),
            _mm256_add_epi32(ints[2], ints[3]),
        );
        let t = _mm_add_epi32(
            _mm256_castsi256_si128(total),
            _mm256_extracti128_si256::<1>(total),
        );
        let t = _mm_add_epi32(t, _mm_shuffle_epi32::<0b01_00_11_10>(t));
        let t = _mm_add_epi32(t, _mm_shuffle_epi32::<0b10_11_00_01>(t));
        let sum = _mm_cvtsi128_si32(t);
        // packs works within 128-bit lanes; the permute puts the four-byte groups back in
        // order.
        let words = [
            _mm256_packs_epi32(ints[0], ints[1]),
            _mm256_packs_epi32(ints[2], ints[3]),
        ];
        let bytes = _mm256_packs_epi16(words[0], words[1]);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let bytes = _mm256_permutevar8x32_epi32(bytes, order);
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, bytes);
        (d, sum)
    }
}
