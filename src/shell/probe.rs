//! How the shell asks the scenes what it needs without reaching into them: each scene registers a
//! `SceneProbe` that says whether it has done what the command line asked (`--steps N` landed),
//! what it shows (for `--screenshot`'s sidecar), and whether it runs a bench of its own.

use bevy::prelude::*;

/// One scene's answers to the shell.
pub trait SceneProbe: Send + Sync + 'static {
    /// Where its sidecar JSON goes: a key of its own, or `None` to merge into the top level.
    fn key(&self) -> Option<&'static str>;

    /// Whether the scene has settled: what the command line asked of it has happened (or failed,
    /// saying why), so a screenshot shows it.
    fn settled(&self, _world: &World) -> bool {
        true
    }

    /// What it shows, for `--screenshot`'s sidecar (the matrices, the trace's numbers, ...).
    fn sidecar(&self, world: &World) -> serde_json::Value;

    /// True when this scene measures `bench` itself (scene 2: idle frames, then generating);
    /// the shell's plain frame bench then stays out.
    fn drives_bench(&self, _world: &World) -> bool {
        false
    }
}

/// The probes the scenes registered.
#[derive(Resource, Default)]
pub struct Probes(pub Vec<Box<dyn SceneProbe>>);

impl Probes {
    pub fn settled(&self, world: &World) -> bool {
        self.0.iter().all(|p| p.settled(world))
    }

    pub fn drives_bench(&self, world: &World) -> bool {
        self.0.iter().any(|p| p.drives_bench(world))
    }

    /// Every scene's sidecar in one object.
    pub fn sidecar(&self, world: &World) -> serde_json::Value {
        let mut out = serde_json::json!({});
        for p in &self.0 {
            let v = p.sidecar(world);
            match (p.key(), v) {
                (Some(key), v) => out[key] = v,
                (None, serde_json::Value::Object(map)) => {
                    for (k, v) in map {
                        out[k] = v;
                    }
                }
                (None, _) => {}
            }
        }
        out
    }
}

/// Register a scene's probe.
pub trait ProbeAppExt {
    fn add_probe(&mut self, probe: impl SceneProbe) -> &mut Self;
}

impl ProbeAppExt for App {
    fn add_probe(&mut self, probe: impl SceneProbe) -> &mut Self {
        self.init_resource::<Probes>();
        self.world_mut()
            .resource_mut::<Probes>()
            .0
            .push(Box::new(probe));
        self
    }
}

/// Message sent when the shell's frame bench starts (scene 1 starts animating on it).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchStarted;
