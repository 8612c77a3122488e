//! Reading a step's results back to the CPU (natively: blocking, after the submission completes).

use crate::error::{LlmError, Result};

/// Copy `len` bytes of a mapped-for-reading buffer out after submission `index` completes
/// (blocking: in the browser build only the model's steps read back, through `web_read`).
pub(crate) fn read_back(
    device: &wgpu::Device,
    staging: &wgpu::Buffer,
    len: u64,
    index: wgpu::SubmissionIndex,
) -> Result<Vec<u8>> {
    if cfg!(target_arch = "wasm32") {
        return Err(LlmError::Gpu(
            "a blocking read-back would freeze the page; the browser build reads the model's \
             steps back asynchronously"
                .into(),
        ));
    }
    let slice = staging.slice(..len);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: Some(std::time::Duration::from_secs(30)),
        })
        .map_err(|e| LlmError::Gpu(format!("waiting for the GPU: {e}")))?;
    let mapped = loop {
        match rx.try_recv() {
            Ok(r) => break r,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                device
                    .poll(wgpu::PollType::Poll)
                    .map_err(|e| LlmError::Gpu(format!("waiting for the GPU: {e}")))?;
                std::thread::yield_now();
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(LlmError::Gpu("the device was lost".into()));
            }
        }
    };
    mapped.map_err(|e| LlmError::Gpu(format!("reading results back: {e}")))?;
    let bytes = slice.get_mapped_range().to_vec();
    staging.unmap();
    Ok(bytes)
}
