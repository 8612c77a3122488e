//! The app's pure functions (its library builds no test binary of its own: one binary links
//! Bevy, not two): the activation grid's layout and colormap, the command line, the panel's
//! fields, the bench's percentiles, the state file against hostile input, a FIFO given as a
//! file, scene 1's inspectors in a narrow panel.

mod activations {
    use samemath::llm_scene::activations::*;

    #[test]
    fn layout_round_trips_every_neuron() {
        let g = GridLayout::new(30, 1536);
        assert_eq!(g.size(), (6 * 48 + 5 * 2, 5 * 32 + 4 * 2));
        for layer in 0..30 {
            for neuron in (0..1536).step_by(7) {
                let (x, y) = g.texel(layer, neuron);
                assert_eq!(g.cell(x, y), Some((layer, neuron)));
            }
        }
        assert_eq!(g.cell(48, 0), None, "gap");
        // A model whose tiles are not full: the empty texels are nobody.
        let odd = GridLayout::new(7, 50);
        let (x, y) = odd.texel(6, 49);
        assert_eq!(odd.cell(x, y), Some((6, 49)));
        assert_eq!(odd.cell(x + 1, y), None);
    }

    #[test]
    fn colormap_is_diverging_and_clamped() {
        assert_eq!(activation_color(0.0, 1.0)[..3], [24, 26, 33]);
        assert_eq!(activation_color(5.0, 1.0)[..3], [255, 176, 48]);
        assert_eq!(activation_color(-5.0, 1.0)[..3], [64, 150, 255]);
        assert_eq!(activation_color(f32::NAN, 1.0), activation_color(0.0, 1.0));
        let half = activation_color(0.5, 1.0);
        assert!(half[0] > 24 && half[0] < 255);
        let mut v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        v.push(1e9);
        assert!((color_scale(&v) - 990.0).abs() <= 1.0);
    }
}

mod cli {
    use clap::Parser;
    use samemath::cli::*;

    #[test]
    fn window_sizes() {
        assert_eq!(parse_window_size("1280x720"), Ok((1280, 720)));
        assert_eq!(parse_window_size("1X1"), Ok((1, 1)));
        assert!(parse_window_size("1280").is_err());
        assert!(parse_window_size("0x10").is_err());
        assert!(parse_window_size("axb").is_err());
    }

    #[test]
    fn command_line_parses() {
        let cli =
            Cli::try_parse_from(["samemath", "--scene", "llm", "--window", "800x600"]).unwrap();
        assert_eq!(cli.app.scene, SceneArg::Llm);
        assert_eq!(cli.app.window, Some((800, 600)));
        let cli =
            Cli::try_parse_from(["samemath", "bench", "--scene", "graphics", "--frames", "5"])
                .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Bench(BenchArgs {
                frames: 5,
                llm: false,
                ..
            }))
        ));
        assert!(Cli::try_parse_from(["samemath", "--scene", "nope"]).is_err());
    }
}

mod panel {
    use samemath::graphics::panel::*;

    #[test]
    fn refused_input_keeps_the_value() {
        let mut b = FieldBuffers::default();
        let mut v = 1.5;
        for bad in ["NaN", "inf", "abc", ""] {
            assert!(!b.commit("t_x", bad, &mut v, TYPED_TS));
            assert_eq!(v, 1.5);
            assert!(b.refused.as_deref().unwrap().contains("t_x"));
        }
        // Finite but past what a state file may hold: 3e38 made the clip space inf and NaN.
        for far in ["3e38", "-101", "1e6"] {
            assert!(!b.commit("s_x", far, &mut v, TYPED_TS));
            assert_eq!(v, 1.5);
            let refused = b.refused.as_deref().unwrap();
            assert!(refused.contains("outside -100 to 100"), "{refused}");
        }
        assert!(!b.commit("θ_x°", "1e30", &mut v, TYPED_DEG));
        assert!(b.commit("t_x", "-2", &mut v, TYPED_TS));
        assert_eq!(v, -2.0);
        assert!(b.refused.is_none());
        assert!(b.commit("t_x", "100", &mut v, TYPED_TS));
        assert!(b.commit("θ_x°", "270", &mut v, TYPED_DEG));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt_num(1.0), "1");
        assert_eq!(fmt_num(-0.0001), "0");
        assert_eq!(fmt_num(2.125), "2.125");
    }

    #[test]
    fn counts_take_their_noun_in_the_singular_only_for_one() {
        use samemath::llm_scene::panels::counted;
        assert_eq!(counted(1, "step"), "1 step");
        assert_eq!(counted(0, "step"), "0 steps");
        assert_eq!(counted(3, "answer"), "3 answers");
    }
}

mod bench {
    use samemath::shell::bench::summarize;

    #[test]
    fn p95_of_known_samples() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let (mean, p95) = summarize(&samples).unwrap();
        assert_eq!(mean, 50.5);
        assert_eq!(p95, 95.0);
        assert!(summarize(&[]).is_none());
    }
}

mod free_area {
    use bevy_egui::egui::{Rect, pos2};
    use samemath::shell::FreeArea;

    #[test]
    fn side_panels_top_bars_and_a_panel_wider_than_the_window() {
        let mut free = FreeArea(Rect::from_min_max(pos2(0.0, 0.0), pos2(1280.0, 720.0)));
        free.take(Rect::from_min_max(pos2(0.0, 0.0), pos2(1280.0, 45.0)));
        free.take(Rect::from_min_max(pos2(0.0, 45.0), pos2(358.0, 720.0)));
        assert_eq!(
            free.0,
            Rect::from_min_max(pos2(358.0, 45.0), pos2(1280.0, 720.0))
        );
        // A right panel whose content reaches past the window's edge is still a right panel.
        free.take(Rect::from_min_max(pos2(973.0, 45.0), pos2(1340.0, 720.0)));
        assert_eq!(
            free.0,
            Rect::from_min_max(pos2(358.0, 45.0), pos2(973.0, 720.0))
        );
        free.take(Rect::from_min_max(pos2(358.0, 680.0), pos2(973.0, 720.0)));
        assert_eq!(free.0.max.y, 680.0, "a bottom bar");
        // A full-height panel as wide as what is left takes it from the side, not the top.
        free.take(Rect::from_min_max(pos2(358.0, 45.0), pos2(973.0, 680.0)));
        assert_eq!((free.0.width(), free.0.height()), (0.0, 635.0));
    }
}

mod state_file {
    use samemath::graphics::{
        GraphicsSettings, MeshLibrary, SceneMatrices, SurfacePick, parse_state,
    };
    use samemath::shell::SceneViewport;

    /// Every number the scene derives from a state: what goes to the GPU and the panels.
    fn all_finite(m: &SceneMatrices) -> bool {
        let c = &m.chain;
        let mats = [c.world_from_local, c.view_from_world, c.clip_from_view];
        mats.iter().all(|x| x.is_finite())
            && m.normal.matrix.is_finite()
            && m.light_dir.is_finite()
            && m.eye.is_finite()
            && m.probe.as_ref().is_none_or(|p| {
                p.terms.intensity.is_finite() && p.terms.color.is_finite() && p.half.is_finite()
            })
    }

    #[test]
    fn degenerate_numbers_are_brought_into_range() {
        let text = r#"{"camera":{"distance":0,"pitch_deg":90,"fov_y_deg":0,"near":0},
            "model":{"scale":[1e39,0,1],"translation":[3e38,0,0],"rotation_deg":[1e39,0,720]},
            "lighting":{"shininess":1e39,"azimuth_deg":-1e39,"base_color":[2,-1,1e39]},
            "animate_deg_per_sec":1e39}"#;
        let s = parse_state(text).expect("a state");
        let m = SceneMatrices::compute(&s, &SceneViewport::default(), &MeshLibrary::load(None));
        assert!(all_finite(&m), "{m:?}");
        assert_eq!(s.model.rotation_deg[2], 0.0);
        assert!(s.lighting.shininess <= 256.0 && s.animate_deg_per_sec.is_finite());
        assert!(parse_state("{not json").is_err());
        assert!(parse_state(r#"{"camera":{"distance":"far"}}"#).is_err());
    }

    #[test]
    fn hostile_state_files_load_within_range_or_are_refused() {
        let library = MeshLibrary::load(None);
        let mut base = GraphicsSettings {
            surface_pick: Some(SurfacePick {
                triangle: 3,
                weights: [0.2, 0.3, 0.5],
            }),
            ..Default::default()
        };
        base.selected_vertex = Some(5);
        let base = serde_json::to_value(&base).unwrap();
        let (mut loaded, mut refused) = (0, 0);
        for v in testkit::json::mutated(&base, 5, 3000) {
            match parse_state(&v.to_string()) {
                Err(_) => refused += 1,
                Ok(s) => {
                    loaded += 1;
                    let m = SceneMatrices::compute(&s, &SceneViewport::default(), &library);
                    assert!(all_finite(&m), "{v}\n{m:?}");
                }
            }
        }
        // Bytes that are not JSON at all: refused, never a panic.
        let mut rng = llm::sampling::Rng::new(3);
        for n in 0..500 {
            let bytes: Vec<u8> = (0..n % 64).map(|_| rng.next_u64() as u8).collect();
            let _ = parse_state(&String::from_utf8_lossy(&bytes));
        }
        println!("{loaded} hostile states loaded within range, {refused} refused");
        assert!(loaded > 0 && refused > 0);
    }
}

/// Scene 2's status line never says "0.0 tokens/s" for a rate it measured: lavapipe's first
/// GPU step (prompt and token, about a minute) is 0.017 tokens/s.
#[test]
fn a_slow_rate_keeps_its_digits() {
    use samemath::llm_scene::panels::tokens_per_sec_text;
    assert_eq!(tokens_per_sec_text(17.84), "17.8 tokens/s");
    assert_eq!(tokens_per_sec_text(1.0 / 60.0), "0.017 tokens/s");
    assert_eq!(tokens_per_sec_text(0.0), "0.0 tokens/s");
}

mod inspectors {
    use bevy_egui::egui;
    use glam::{Vec3, Vec4};
    use math::lighting::shade;
    use samemath::graphics::inspect::inspectors;
    use samemath::graphics::{GraphicsSettings, Highlight, LightProbe, SceneMatrices};

    /// The size the inspectors' content takes in a panel `panel` points wide, and the width the
    /// panel shows without scrolling sideways.
    fn laid_out(panel: f32) -> (egui::Vec2, f32) {
        let mut settings = GraphicsSettings::default();
        let mut matrices = SceneMatrices::default();
        let local = Vec3::new(-1.234, 0.5, 2.25);
        let steps = vec![("S·v", Vec4::new(-2.468, 1.0, 4.5, 1.0))];
        matrices.journey = Some((7, matrices.chain.journey(steps, local)));
        let (n, l, v) = (Vec3::Y, Vec3::new(0.3, 0.8, 0.5), Vec3::Z);
        matrices.probe = Some(LightProbe {
            point_world: Vec3::new(-0.123, 1.456, -2.789),
            normal_world: n,
            to_light: l.normalize(),
            to_eye: v,
            half: (l.normalize() + v).normalize(),
            terms: shade(n, l, v, &settings.lighting),
        });
        let mut highlight = Highlight::default();
        let ctx = egui::Context::default();
        let mut sizes = (egui::Vec2::ZERO, 0.0);
        let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(panel, 4000.0));
        let input = egui::RawInput {
            screen_rect: Some(screen),
            ..Default::default()
        };
        ctx.run_ui(input, |ui| {
            // As in the panel: a scroll area both ways, where a long line does not wrap.
            let out = egui::ScrollArea::both().show(ui, |ui| {
                inspectors(ui, &mut settings, &matrices, None, &mut highlight);
            });
            sizes = (out.content_size, out.inner_rect.width());
        })
        .drop_without_applying_deltas();
        sizes
    }

    /// A 1280-wide projector with large UI leaves scene 1's right panel about 210 points: each
    /// vector goes under its label, wrapped, rather than past the panel's edge (where the panel
    /// scrolled sideways), and a wide panel keeps label and vector side by side: as tall as in
    /// a panel wider still (stacked rows would double its height).
    #[test]
    fn inspectors_fit_a_narrow_panel_and_use_a_wide_one() {
        let (used, panel) = laid_out(210.0);
        assert!(
            used.x <= panel,
            "{} points of content in a {panel}-point panel",
            used.x
        );
        let (wide, _) = laid_out(460.0);
        let (wider, _) = laid_out(2000.0);
        assert_eq!(wide.y, wider.y, "side by side in a 460-point panel");
        assert!(used.y > 1.5 * wide.y, "stacked in a 210-point panel");
    }
}

/// `--mesh`, `--state` and `--talk` name files the app reads at start: a FIFO there (no writer)
/// blocked the open for good, before the window appeared.
#[cfg(unix)]
#[test]
fn a_fifo_given_as_a_file_is_refused_not_waited_on() {
    use std::sync::mpsc;
    let dir = std::env::temp_dir().join(format!("samemath-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("mesh.obj");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (tx, rx) = mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(samemath::platform::read_user_text(&path));
    });
    // Generous: the answer comes at once, but a blocked open must fail the test, not hang it.
    let answer = rx.recv_timeout(std::time::Duration::from_secs(60));
    if answer.is_err() {
        // Unblock the reader (a writer opening the FIFO), so the test process can end.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let e = answer
        .expect("reading a FIFO blocked")
        .expect_err("a FIFO is not a file to read");
    assert!(e.contains("not a regular file"), "{e}");
    let e = samemath::platform::read_user_text(&std::env::temp_dir()).unwrap_err();
    assert!(e.contains("is a directory"), "{e}");
}
