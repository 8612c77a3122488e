//! The talk's step file (RON, in assets/talk/): a title and steps, each a caption of one to
//! three lines and the state of the live app it shows. A speaker may reorder, shorten, edit or
//! translate it without rebuilding; a bad file is an error naming the line, the column and the
//! field, and the app starts without the talk.

use serde::Deserialize;

/// The talk shipped with the app.
pub const SHIPPED: &str = "talk/serverless.ron";
/// A caption longer than this many lines is refused (it would cover the scene).
pub const MAX_CAPTION_LINES: usize = 3;

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

/// One step: a caption and whatever of the app's state it names (the rest stays as it is).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TalkStep {
    /// One to three lines; `{tokens}` becomes the model's real split of the prompt, e.g.
    /// `This | ·is | ·a | ·prompt`.
    pub caption: String,
    pub scene: Option<SceneName>,
    /// Scene 2's middle: overview, embedding, head, layer:N or panels (as `--view`).
    pub view: Option<String>,
    /// Scene 2's prompt, and whether it is fed raw (no chat template).
    pub prompt: Option<String>,
    pub raw: Option<bool>,
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

/// Read a talk file's text: every field known and of its type, every number finite, at least
/// one step, captions of one to three lines, views that `--view` takes.
pub fn parse(text: &str, name: &str) -> Result<TalkFile, String> {
    let file: TalkFile = ron::from_str(text).map_err(|e| {
        format!(
            "{name}: line {}, column {}: {}",
            e.span.start.line, e.span.start.col, e.code
        )
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
        let at = |what: String| {
            Err(format!(
                "{name}: step {} ({:?}): {what}",
                i + 1,
                first_line(s)
            ))
        };
        let lines = s.caption.lines().count();
        if lines == 0 || lines > MAX_CAPTION_LINES {
            return at(format!(
                "caption: {lines} lines (1 to {MAX_CAPTION_LINES} fit on a projector)"
            ));
        }
        if let Some(v) = &s.view
            && let Err(e) = crate::llm_scene::world::parse_view(v)
        {
            return at(format!("view: {e}"));
        }
        if let Some(url) = &s.remote
            && let Err(e) = remote::RemoteConfig::new(url.trim()).base()
        {
            return at(format!("remote: {e}"));
        }
        let numbers = [s.translation, s.scale, s.rotation_deg]
            .iter()
            .flatten()
            .flatten()
            .chain(s.light.iter().flatten())
            .all(|x| x.is_finite() && x.abs() <= 1e4);
        if !numbers {
            return at("a number that is not finite or beyond ±10,000".into());
        }
    }
    Ok(file)
}

fn first_line(s: &TalkStep) -> &str {
    s.caption.lines().next().unwrap_or("")
}
