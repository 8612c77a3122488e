//! The LLM kernels' WGSL: each file in `shaders/llm/` with its `#import` lines replaced by the
//! modules they name. The syntax is naga_oil's, which Bevy uses for scene 1's material, so the
//! mat-vec kernel imports `dot4` from `shaders/samemath_math.wgsl` the same way the vertex shader
//! imports `mat_vec4` (built on `dot4`) from it. The reductions come in two versions:
//! `reduce.wgsl` (trees in workgroup memory, for every device) and `reduce_subgroup.wgsl`
//! (subgroup operations, for devices with wgpu's SUBGROUP feature), one import path for both;
//! the same for the prompt's eight-token row sums (`reduce_tokens*.wgsl`).

/// Modules a kernel may import: (import path, source); the reductions are added by `compose`.
const MODULES: &[(&str, &str)] = &[
    (
        "samemath::math",
        include_str!("../../../../shaders/samemath_math.wgsl"),
    ),
    (
        "samemath::llm::blocks",
        include_str!("../../../../shaders/llm/blocks.wgsl"),
    ),
    (
        "samemath::llm",
        include_str!("../../../../shaders/llm/common.wgsl"),
    ),
];

/// The kernels: (name, source).
pub const KERNELS: &[(&str, &str)] = &[
    ("embed", include_str!("../../../../shaders/llm/embed.wgsl")),
    (
        "matvec",
        include_str!("../../../../shaders/llm/matvec.wgsl"),
    ),
    (
        "matmul",
        include_str!("../../../../shaders/llm/matmul.wgsl"),
    ),
    (
        "attention",
        include_str!("../../../../shaders/llm/attention.wgsl"),
    ),
    (
        "quantize",
        include_str!("../../../../shaders/llm/quantize.wgsl"),
    ),
    ("lens", include_str!("../../../../shaders/llm/lens.wgsl")),
];

/// The reductions, each in two versions: (import path, trees in workgroup memory, subgroup
/// operations).
const REDUCTIONS: &[(&str, &str, &str)] = &[
    (
        "samemath::llm::reduce",
        include_str!("../../../../shaders/llm/reduce.wgsl"),
        include_str!("../../../../shaders/llm/reduce_subgroup.wgsl"),
    ),
    (
        "samemath::llm::reduce_tokens",
        include_str!("../../../../shaders/llm/reduce_tokens.wgsl"),
        include_str!("../../../../shaders/llm/reduce_tokens_subgroup.wgsl"),
    ),
];

/// One kernel's source with its imports inlined (each module once, imports of imports too),
/// reducing with subgroup operations when `subgroups` (the device must have wgpu's SUBGROUP).
pub fn compose(name: &str, subgroups: bool) -> Option<String> {
    let (_, src) = KERNELS.iter().find(|(n, _)| *n == name)?;
    let mut modules = MODULES.to_vec();
    modules.extend(
        REDUCTIONS
            .iter()
            .map(|&(path, trees, sub)| (path, if subgroups { sub } else { trees })),
    );
    let mut included = Vec::new();
    let mut out = String::new();
    inline(src, &modules, &mut included, &mut out);
    Some(out)
}

fn inline(
    src: &str,
    modules: &[(&'static str, &'static str)],
    included: &mut Vec<&'static str>,
    out: &mut String,
) {
    for line in src.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("#define_import_path") {
            continue;
        }
        if let Some(path) = trimmed.strip_prefix("#import") {
            // The longest module path the import starts with: `samemath::math::dot4` names the
            // module `samemath::math`, `samemath::llm::blocks` a module of its own.
            let path = path.trim();
            let module = modules
                .iter()
                .filter(|(m, _)| path == *m || path.starts_with(&format!("{m}::")))
                .max_by_key(|(m, _)| m.len());
            if let Some((m, module_src)) = module
                && !included.contains(m)
            {
                included.push(m);
                inline(module_src, modules, included, out);
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
}

/// Every kernel is validated with naga in tests/it/shaders.rs.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mat_vec_kernel_uses_the_math_files_dot4() {
        let src = compose("matvec", false).unwrap();
        let math = include_str!("../../../../shaders/samemath_math.wgsl");
        let dot4 = &math[math.find("fn dot4").unwrap()..];
        let dot4 = &dot4[..dot4.find("\n}").unwrap() + 2];
        assert!(src.contains(dot4));
        assert!(include_str!("../../../../shaders/llm/matvec.wgsl").contains("dot4(nibbles4"));
    }
}
