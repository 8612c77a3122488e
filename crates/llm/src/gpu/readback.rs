//! Reading a step's results back to the CPU (natively: blocking, after the submission completes).

use crate::error::{LlmError, Result};

/// How long one submission may take before the backend gives up on the device: far longer than
/// any step of this model on a working GPU, long enough for software Vulkan on a busy machine
/// (which takes seconds a step), so a slow device gives a slow answer, not an error.
pub(crate) const GPU_STEP_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Wait for submission `index`, in slices (wgpu's own wait gives up after its timeout), for at
/// most `GPU_STEP_LIMIT` in all.
pub(crate) fn wait_for(device: &wgpu::Device, index: wgpu::SubmissionIndex) -> Result<()> {
    let started = web_time::Instant::now();
    loop {
        match device.poll(wgpu::PollType::Wait {
            submission_index: Some(index.clone()),
            timeout: Some(std::time::Duration::from_secs(5)),
        }) {
            Ok(_) => return Ok(()),
            Err(wgpu::PollError::Timeout) if started.elapsed() < GPU_STEP_LIMIT => continue,
            Err(wgpu::PollError::Timeout) => {
                return Err(LlmError::Gpu(format!(
                    "the GPU did not finish a step in {} s: it is stalled or far too slow for \
                     this model",
                    GPU_STEP_LIMIT.as_secs()
                )));
            }
            Err(e) => return Err(LlmError::Gpu(format!("waiting for the GPU: {e}"))),
        }
    }
}

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
    wait_for(device, index)?;
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
