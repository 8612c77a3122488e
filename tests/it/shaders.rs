//! Every WGSL file in shaders/ parses and validates with naga (no GPU needed). Bevy-style
//! `#import samemath::math::{...}` lines are resolved against the shared math file,
//! `#{MATERIAL_BIND_GROUP}` gets the group Bevy would substitute, and a file with
//! `#ifdef NAME` blocks is checked once without and once with each name defined.

use std::path::{Path, PathBuf};

const MATH_IMPORT_PATH: &str = "samemath::math";

fn shader_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders")
}

fn wgsl_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![shader_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "wgsl") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The shared math body without its `#define_import_path` line.
fn math_body() -> String {
    let text = std::fs::read_to_string(shader_dir().join("samemath_math.wgsl")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("#define_import_path"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The world material reads each instance's model matrix and tag through Bevy's mesh functions;
/// for naga alone, a stand-in with the same signatures over a storage buffer shaped like Bevy's
/// (Bevy's own module is checked when the app builds the pipeline).
const BEVY_MESH_FUNCTIONS: &str = "bevy_pbr::mesh_functions::";
const BEVY_MESH_STAND_IN: &str = "
struct StandInMesh { world_from_local: mat3x4<f32>, tag: u32 }
@group(2) @binding(0) var<storage> stand_in_mesh: array<StandInMesh>;
fn get_world_from_local(i: u32) -> mat4x4<f32> {
    let m = transpose(stand_in_mesh[i].world_from_local);
    return mat4x4<f32>(vec4<f32>(m[0], 0.0), vec4<f32>(m[1], 0.0), vec4<f32>(m[2], 0.0), vec4<f32>(m[3], 1.0));
}
fn get_tag(i: u32) -> u32 { return stand_in_mesh[i].tag; }
";

/// The `#ifdef` names a file tests.
fn shader_defs(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut defs: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("#ifdef "))
        .map(|d| d.trim().to_string())
        .collect();
    defs.sort();
    defs.dedup();
    defs
}

fn compose(path: &Path, defs: &[&str]) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    // One entry per open #ifdef: whether its lines are kept (the current branch).
    let mut open: Vec<bool> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("#ifdef ") {
            open.push(defs.contains(&name.trim()));
            continue;
        }
        if t.starts_with("#else") {
            let top = open.last_mut().expect("#else without #ifdef");
            *top = !*top;
            continue;
        }
        if t.starts_with("#endif") {
            open.pop().expect("#endif without #ifdef");
            continue;
        }
        if open.iter().any(|keep| !keep) {
            continue;
        }
        if t.starts_with("#define_import_path") {
            continue;
        }
        if let Some(rest) = t.strip_prefix("#import ")
            && rest.starts_with(BEVY_MESH_FUNCTIONS)
        {
            out.push_str(BEVY_MESH_STAND_IN);
            continue;
        }
        if let Some(rest) = t.strip_prefix("#import ") {
            assert!(
                rest.starts_with(MATH_IMPORT_PATH),
                "{}: unknown import {rest}",
                path.display()
            );
            out.push_str(&math_body());
            out.push('\n');
            continue;
        }
        assert!(
            !t.starts_with('#'),
            "{}: unhandled directive {t}",
            path.display()
        );
        out.push_str(&line.replace("#{MATERIAL_BIND_GROUP}", "3"));
        out.push('\n');
    }
    out
}

#[test]
fn every_shader_validates_with_naga() {
    let files = wgsl_files();
    assert!(
        files.len() >= 2,
        "expected the shared math and the scene shader"
    );
    for path in files {
        // The LLM kernels go through the engine's own composer (crates/llm/src/gpu/shaders.rs); the
        // modules they import (common, blocks) are checked inside them.
        // Each once with trees and once with subgroup reductions (reduce.wgsl and reduce_tokens.wgsl,
        // or their _subgroup twins), the latter with the capability wgpu's SUBGROUP feature grants.
        let none = naga::valid::Capabilities::empty();
        let sources: Vec<(String, String, naga::valid::Capabilities)> =
            if path.parent() == Some(&shader_dir().join("llm")) {
                let stem = path.file_stem().unwrap().to_str().unwrap();
                match (
                    llm::gpu::shaders::compose(stem, false),
                    llm::gpu::shaders::compose(stem, true),
                ) {
                    (Some(trees), Some(subgroups)) => vec![
                        (String::new(), trees, none),
                        (
                            " with subgroups".to_string(),
                            subgroups,
                            naga::valid::Capabilities::SUBGROUP,
                        ),
                    ],
                    _ => continue,
                }
            } else {
                let defs = shader_defs(&path);
                std::iter::once((String::new(), compose(&path, &[]), none))
                    .chain(
                        defs.iter()
                            .map(|d| (format!(" with {d}"), compose(&path, &[d.as_str()]), none)),
                    )
                    .collect()
            };
        for (variant, source, extra) in sources {
            let what = format!("{}{variant}", path.display());
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&source)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                // unpack2x16float (the Q4_1 / Q8_0 scales) is core WGSL; naga files it under
                // this capability, which wgpu grants on Vulkan, Metal, DX12, GLES 3 and WebGPU.
                naga::valid::Capabilities::default()
                    | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32
                    | extra,
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        }
    }
}

#[test]
fn scene_shader_uses_the_shared_math() {
    let scene = std::fs::read_to_string(shader_dir().join("matrix_material.wgsl")).unwrap();
    assert!(scene.contains("#import samemath::math::"));
    assert!(scene.contains("mat_vec4(scene.world_from_local"));
    let math = std::fs::read_to_string(shader_dir().join("samemath_math.wgsl")).unwrap();
    for f in [
        "fn dot4",
        "fn mat_vec4",
        "fn lambert",
        "fn blinn_phong",
        "fn shade",
    ] {
        assert!(math.contains(f), "{f} missing from the shared math");
    }
    // The uniform struct on the Rust side has the WGSL struct's size (8 x 16-byte rows + 3 mat4).
    use bevy::render::render_resource::ShaderType;
    assert_eq!(
        samemath::graphics::material::SceneUniform::min_size().get(),
        3 * 64 + 5 * 16
    );
    // The world's columns go through the same two functions: T * S by mat_vec4, light by shade.
    let world = std::fs::read_to_string(shader_dir().join("world_material.wgsl")).unwrap();
    assert!(world.contains("#import samemath::math::"));
    assert!(world.contains("mat_vec4(world_from_local, vec4<f32>(in.position, 1.0))"));
    assert!(world.contains("shade(n, world.light_dir.xyz"));
    assert_eq!(
        samemath::llm_scene::world::WorldUniform::min_size().get(),
        64 + 9 * 16
    );
}
