//! The browser build's side of the page (`wasm/index.html` defines `window.samemathPage`): the
//! app's arguments from the page's address, the model the page downloads (and caches), and the
//! markers the page and its tests read from the console.

use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// The command line the address asks for, as a JSON array of strings.
    #[wasm_bindgen(js_namespace = samemathPage, js_name = args)]
    fn page_args() -> String;
    /// "webgpu" or "webgl2": what the page found and the renderer is to use.
    #[wasm_bindgen(js_namespace = samemathPage, js_name = graphics)]
    fn page_graphics() -> String;
    /// The model file's bytes once downloaded (or read from the browser's cache), else undefined.
    #[wasm_bindgen(js_namespace = samemathPage, js_name = modelBytes)]
    fn page_model_bytes() -> JsValue;
    /// The app copied the model: the page drops its copy.
    #[wasm_bindgen(js_namespace = samemathPage, js_name = releaseModel)]
    fn page_release_model();
    /// Where the download is ("downloading the model: 41 of 98 MB"), or its error.
    #[wasm_bindgen(js_namespace = samemathPage, js_name = modelStatus)]
    fn page_model_status() -> String;
    /// True once the download failed for good (the status says why and what to do).
    #[wasm_bindgen(js_namespace = samemathPage, js_name = modelFailed)]
    fn page_model_failed() -> bool;
    /// A marker for the page and its tests: logged as `samemath:<kind> <detail>`.
    #[wasm_bindgen(js_namespace = samemathPage, js_name = signal)]
    fn page_signal(kind: &str, detail: &str);
    /// True once after the page asked for a frame (`samemathPage.capture()`).
    #[wasm_bindgen(js_namespace = samemathPage, js_name = captureWanted)]
    fn page_capture_wanted() -> bool;
    /// The frame asked for, as PNG bytes.
    #[wasm_bindgen(js_namespace = samemathPage, js_name = captured)]
    fn page_captured(png: &[u8]);
}

/// `samemath` followed by the arguments in the page's address (`?scene=llm&steps=8` ->
/// `--scene llm --steps 8`).
pub fn args() -> Vec<String> {
    let mut args = vec!["samemath".to_string()];
    match serde_json::from_str::<Vec<String>>(&page_args()) {
        Ok(more) => args.extend(more),
        Err(e) => signal("error", &format!("the page's arguments: {e}")),
    }
    args
}

/// Whether the page chose WebGPU (else WebGL2).
pub fn webgpu() -> bool {
    page_graphics() == "webgpu"
}

/// The model file as the page has it.
#[derive(Debug)]
pub enum PageModel {
    Ready(Vec<u8>),
    /// Still downloading: how far.
    Pending(String),
    Failed(String),
}

/// Taken once: the page then lets go of its copy, so the caller keeps the bytes.
pub fn model() -> PageModel {
    let bytes = page_model_bytes();
    if !bytes.is_undefined() && !bytes.is_null() {
        let copy = Uint8Array::new(&bytes).to_vec();
        page_release_model();
        return PageModel::Ready(copy);
    }
    if page_model_failed() {
        PageModel::Failed(page_model_status())
    } else {
        PageModel::Pending(page_model_status())
    }
}

/// While the download is under way, how far it is (without copying anything out of the page).
pub fn download_pending() -> Option<String> {
    let arrived = page_model_bytes();
    if !(arrived.is_undefined() || arrived.is_null()) || page_model_failed() {
        return None;
    }
    Some(page_model_status())
}

/// Tell the page (and the console) something happened.
pub fn signal(kind: &str, detail: &str) {
    page_signal(kind, detail);
}

/// Whether the page asked for a frame since the last call.
pub fn capture_wanted() -> bool {
    page_capture_wanted()
}

/// Hand the page the frame it asked for (PNG).
pub fn captured(png: &[u8]) {
    page_captured(png);
}
