//! The talk's step file (RON, in assets/talk/): a title and steps, each a caption of one to
//! three lines of at most 100 characters and the state of the live app it shows. A speaker may
//! reorder, shorten, edit or translate it without rebuilding; a bad file is an error naming the
//! line, the column and the field, and the app starts without the talk.

use serde::Deserialize;

/// The talk shipped with the app.
pub const SHIPPED: &str = "talk/serverless.ron";
/// A caption longer than this many lines is refused (it would cover the scene).
pub const MAX_CAPTION_LINES: usize = 3;
/// A caption line longer than this many characters is refused: on a 1280x720 projector with the
/// large UI one wraps to two or three rows, a longer one to a wall of text over the scene (the
/// overlay cuts what still does not fit, `overlay::CAPTION_SHARE`).
pub const MAX_CAPTION_LINE_CHARS: usize = 100;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TalkFile {
    pub title: String,
    /// The remote endpoint the side-by-side steps ask (`--remote URL` overrides it).
    #[serde(default)]
    pub remote: Option<String>,
    pub steps: Vec<TalkStep>,
}

/// Which scene a step shows.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SceneName {
    Graphics,
    Llm,
    Bridge,
}

/// Where scene 2's model runs during a step (the local model; a remote server is the
/// side-by-side race's).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    /// The CPU engine.
    Cpu,
    /// The WGSL kernels on the device that draws the scenes.
    Gpu,
}

/// What moves while a step is shown.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Animation {
    /// t_x sweeps back and forth.
    SweepTx,
    /// s_y breathes between 0.5 and 1.5.
    PulseSy,
    /// θ_x turns.
    TurnThetaX,
    /// The light circles the mesh.
    CircleLight,
    /// One Step of the model (its forward pass plays up through the layers).
    Step,
    /// One Step, and the prompt's chips appear one by one as the tokenizer split it.
    Tokenize,
}

/// One step: a caption and whatever of the app's state it names; what it does not name stays
/// as the steps before it left it (`then`), so a step looks the same however it is reached.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TalkStep {
    /// One to three lines of at most 100 characters; `{tokens}` becomes the model's real split
    /// of the prompt, e.g. `This | ·is | ·a | ·prompt` (its first tokens, `CAPTION_TOKENS`).
    pub caption: String,
    pub scene: Option<SceneName>,
    /// Scene 2's middle: overview, embedding, head, layer:N or panels (as `--view`).
    pub view: Option<String>,
    /// Scene 2's prompt, and whether it is fed raw (no chat template).
    pub prompt: Option<String>,
    pub raw: Option<bool>,
    /// Scene 2's model on the CPU or on the GPU that draws the scenes.
    pub backend: Option<BackendName>,
    /// Scene 1's model matrix factors (each a triple).
    pub translation: Option<[f32; 3]>,
    pub scale: Option<[f32; 3]>,
    pub rotation_deg: Option<[f32; 3]>,
    /// Scene 1's light: azimuth and elevation in degrees.
    pub light: Option<[f32; 2]>,
    /// Scene 1's selected vertex.
    pub vertex: Option<usize>,
    /// Scene 1's lit surface point: the centre of this triangle of the mesh (the light
    /// inspector's N, L and N·L are then of that point).
    pub surface_point: Option<usize>,
    /// Scene 2's selected neuron: (layer, neuron).
    pub neuron: Option<(usize, usize)>,
    /// Scene 1's term picked out in the accent colour: translation, scale, rotation_x,
    /// rotation_y, rotation_z, model, normal, vertex or light.
    pub highlight: Option<crate::graphics::Term>,
    pub animation: Option<Animation>,
    /// The same prompt answered by the local model and by the remote endpoint side by side.
    pub side_by_side: Option<bool>,
    /// This step's remote endpoint (else the file's; `--remote URL` overrides both).
    pub remote: Option<String>,
}

impl TalkStep {
    /// This step's state on top of `self` (the state the steps before it left): whatever it
    /// names replaces what was there. The caption, highlight, animation, side-by-side race and
    /// remote are each step's own.
    pub fn then(mut self, next: &TalkStep) -> TalkStep {
        self.caption = next.caption.clone();
        self.scene = next.scene.or(self.scene);
        self.view = next.view.clone().or(self.view);
        self.prompt = next.prompt.clone().or(self.prompt);
        self.raw = next.raw.or(self.raw);
        self.backend = next.backend.or(self.backend);
        self.translation = next.translation.or(self.translation);
        self.scale = next.scale.or(self.scale);
        self.rotation_deg = next.rotation_deg.or(self.rotation_deg);
        self.light = next.light.or(self.light);
        self.vertex = next.vertex.or(self.vertex);
        self.surface_point = next.surface_point.or(self.surface_point);
        self.neuron = next.neuron.or(self.neuron);
        self.highlight = next.highlight;
        self.animation = next.animation;
        self.side_by_side = next.side_by_side;
        self.remote = next.remote.clone();
        self
    }
}

/// Read a talk file's text: every field known and of its type, every number finite, at least
/// one step, captions of one to three lines of at most `MAX_CAPTION_LINE_CHARS` characters,
/// views that `--view` takes.
pub fn parse(text: &str, name: &str) -> Result<TalkFile, String> {
    let file: TalkFile = ron::from_str(text).map_err(|e| {
        let (line, col) = (e.span.start.line, e.span.start.col);
        let field = super::locate::field_at(text, line, col)
            .map(|f| format!(" (field `{f}`)"))
            .unwrap_or_default();
        format!("{name}: line {line}, column {col}{field}: {}", e.code)
    })?;
    if file.steps.is_empty() {
        return Err(format!("{name}: no steps"));
    }
    if let Some(url) = &file.remote
        && let Err(e) = remote::RemoteConfig::new(url.trim()).base()
    {
        return Err(format!("{name}: remote: {e}"));
    }
    for (i, s) in file.steps.iter().enumerate() {
        let at = |field: &str, what: String| {
            let line = super::locate::line_of(text, i, field)
                .map(|l| format!("line {l}, "))
                .unwrap_or_default();
            Err(format!(
                "{name}: {line}step {} ({:?}), field `{field}`: {what}",
                i + 1,
                first_line(s)
            ))
        };
        let lines = s.caption.lines().count();
        if lines == 0 || lines > MAX_CAPTION_LINES {
            return at(
                "caption",
                format!("{lines} lines (1 to {MAX_CAPTION_LINES} fit on a projector)"),
            );
        }
        if let Some((n, chars)) = s
            .caption
            .lines()
            .map(|l| l.chars().count())
            .enumerate()
            .find(|(_, chars)| *chars > MAX_CAPTION_LINE_CHARS)
        {
            return at(
                "caption",
                format!(
                    "line {} of the caption is {chars} characters (at most \
                     {MAX_CAPTION_LINE_CHARS} fit on a projector)",
                    n + 1
                ),
            );
        }
        if let Some(v) = &s.view
            && let Err(e) = crate::llm_scene::world::parse_view(v)
        {
            return at("view", e.to_string());
        }
        if let Some(url) = &s.remote
            && let Err(e) = remote::RemoteConfig::new(url.trim()).base()
        {
            return at("remote", e.to_string());
        }
        let numbers: [(&str, &[f32]); 4] = [
            (
                "translation",
                s.translation.as_ref().map_or(&[], |v| &v[..]),
            ),
            ("scale", s.scale.as_ref().map_or(&[], |v| &v[..])),
            (
                "rotation_deg",
                s.rotation_deg.as_ref().map_or(&[], |v| &v[..]),
            ),
            ("light", s.light.as_ref().map_or(&[], |v| &v[..])),
        ];
        for (field, values) in numbers {
            if let Some(x) = values
                .iter()
                .find(|x| !x.is_finite() || x.abs() > MAX_NUMBER)
            {
                return at(field, format!("{x} is not a finite number within ±10,000"));
            }
        }
        // Indices a user typed: bounded here; checked against the mesh and the model when the
        // step is shown (a smaller model or mesh leaves them out and says so).
        let indices = [
            ("vertex", s.vertex),
            ("surface_point", s.surface_point),
            ("neuron", s.neuron.map(|(l, _)| l)),
            ("neuron", s.neuron.map(|(_, n)| n)),
        ];
        for (field, value) in indices {
            if let Some(v) = value.filter(|v| *v > MAX_INDEX) {
                return at(
                    field,
                    format!("{v} is beyond any mesh or model (at most {MAX_INDEX})"),
                );
            }
        }
    }
    Ok(file)
}

/// The largest number a step's factors and angles may hold.
const MAX_NUMBER: f32 = 1e4;
/// The largest index (vertex, triangle, layer, neuron) a step may name.
pub const MAX_INDEX: usize = 1 << 24;

fn first_line(s: &TalkStep) -> &str {
    s.caption.lines().next().unwrap_or("")
}
