// samemath's page: picks WebGPU (else WebGL2, else says why not), downloads the model with a
// progress bar (resuming after a dropped connection, cached by the browser for next time),
// and starts the wasm app, which reads all of this through `window.samemathPage`.

const params = new URLSearchParams(location.search);
// Parameters for the page itself; every other one goes to the app as `--name value`.
const PAGE_ONLY = new Set(['graphics', 'model-url', 'webgpu-lost']);
const MODEL_URL = params.get('model-url') || 'model/SmolLM2-135M-Instruct.Q4_1.gguf';
const MODEL_CACHE = 'samemath-model-v1';
const TRIES = 4;
// The largest model the page takes: its bytes are held here, then copied into the app's wasm
// memory (4 GiB at most), so a link to a bigger file, or to a stream without end, is refused.
const MAX_MODEL_BYTES = 1 << 30;
// A download that sends nothing for this long (a server that stops mid-body without closing) is
// stopped and resumed like a dropped one; the .sha256 next to the model has this long in all.
const IDLE_MS = 30_000;

const $ = (id) => document.getElementById(id);
const state = {
  graphics: null,
  model: undefined,
  // The model arrived (the app may since have taken it: then `model` is null again).
  arrived: false,
  status: 'waiting for the model download to start',
  failed: false,
  appReady: false,
  // The app could not read the link's parameters (it then starts with its defaults).
  argsError: null,
  // The app panicked (it stops; the page says so once).
  panicked: false,
};
// Frames asked for through samemathPage.capture(), and whether the app has taken the request.
const captures = [];
let captureAsked = false;
// The download so far: kept across tries so a dropped connection resumes where it stopped,
// with the validator (ETag or Last-Modified) of the file it started on.
const download = { chunks: [], received: 0, total: 0, validator: null };

window.samemathPage = {
  args: () => JSON.stringify(appArgs()),
  graphics: () => state.graphics,
  modelBytes: () => state.model,
  // The app has its own copy: the page lets go of its one (98 MB less in the tab).
  releaseModel: () => {
    state.model = null;
  },
  modelStatus: () => state.status,
  modelFailed: () => state.failed,
  // A frame as the app's renderer drew it (read back from the GPU), as PNG bytes in base64:
  // what the tests keep, since a headless browser may not composite a WebGPU canvas.
  capture: () => new Promise((resolve) => {
    captures.push(resolve);
  }),
  captureWanted: () => captures.length > 0 && !captureAsked && (captureAsked = true),
  captured: (png) => {
    captureAsked = false;
    let text = '';
    for (let i = 0; i < png.length; i += 0x8000) text += String.fromCharCode(...png.subarray(i, i + 0x8000));
    for (const resolve of captures.splice(0)) resolve(btoa(text));
  },
  signal: (kind, detail) => {
    console.log(`samemath:${kind} ${detail}`);
    // A link whose parameters the app refused: said on the page (the box stays, in its corner).
    const badArgs = kind === 'error' && /^the page's arguments: (.*)/.exec(detail);
    if (badArgs && !state.argsError) {
      state.argsError = badArgs[1];
      show(undefined, { message: `This link's parameters could not be read (${state.argsError}); the app started with its defaults.`, error: true });
      tidyOverlay();
    }
    if (kind === 'ready') {
      state.appReady = true;
      console.log(`samemath:timing ${JSON.stringify({ ready_ms: Math.round(performance.now()) })}`);
      tidyOverlay();
    }
  },
};

// If the WebGPU device is lost (the renderer then stops), start again on WebGL2 and say why.
// (Bevy's log lines reach the console through console.log and console.error.)
let fallingBack = false;
for (const level of ['log', 'error']) {
  const original = console[level].bind(console);
  console[level] = (...parts) => {
    original(...parts);
    const text = parts.map(String).join(' ');
    watchForLostDevice(text);
    if (level === 'error') watchForPanic(text);
  };
}
// A panic in the app (a bug) stops it for good: wasm cannot unwind, so the canvas just freezes.
// Rust's panic hook writes "panicked at …" to console.error; the page says so, and how to go on.
function watchForPanic(text) {
  if (state.panicked || !text.includes('panicked at')) return;
  state.panicked = true;
  const where = text.slice(text.indexOf('panicked at')).split('\n').slice(0, 2).join(': ').slice(0, 300);
  console.log(`samemath:panic ${where}`);
  show('samemath stopped', { message: `The app met a bug and stopped (${where}). Reload the page to start again.`, error: true });
  $('loading').classList.remove('hidden', 'corner');
}
function watchForLostDevice(text) {
  if (state.graphics !== 'webgpu' || fallingBack || !text.includes('Caught DeviceLost')) return;
  fallingBack = true;
  const reason = (/DeviceLost error: (.*?)(?: color:|$)/.exec(text) || [])[1] || 'device lost';
  console.log(`samemath:fallback ${JSON.stringify({ from: 'webgpu', to: 'webgl2', reason })}`);
  const next = new URLSearchParams(location.search);
  next.set('graphics', 'webgl2');
  next.set('webgpu-lost', reason.slice(0, 200));
  location.replace(`?${next}`);
}

function appArgs() {
  const out = [];
  for (const [key, value] of params) {
    if (PAGE_ONLY.has(key)) continue;
    // `--key=value`: a value that starts with a hyphen (a prompt "-3 squared?") stays a value.
    out.push(value === '' ? `--${key}` : `--${key}=${value}`);
  }
  return out;
}

const mb = (bytes) => (bytes / 1e6).toFixed(1);

function show(what, { fraction, message, error = false, retry = false } = {}) {
  if (what !== undefined) $('what').textContent = what;
  if (fraction !== undefined) $('bar').firstElementChild.style.width = `${Math.round(fraction * 100)}%`;
  if (message !== undefined) {
    // Text, never markup: messages carry page parameters and server text (a crafted link must
    // not put script in the page).
    $('message').textContent = message;
    $('message').className = error ? 'error' : '';
  }
  $('retry').classList.toggle('hidden', !retry);
}

// Once the app draws, the box moves to a corner while the model downloads, then goes.
function tidyOverlay() {
  const box = $('loading');
  if (!state.appReady) return;
  if (state.arrived && !state.failed && !state.argsError) box.classList.add('hidden');
  else box.classList.add('corner');
}

async function pickGraphics() {
  const wanted = params.get('graphics');
  if (wanted !== 'webgl2' && navigator.gpu) {
    try {
      if (await navigator.gpu.requestAdapter()) return 'webgpu';
    } catch (e) {
      console.warn('WebGPU adapter request failed:', e);
    }
  }
  const probe = document.createElement('canvas');
  if (probe.getContext('webgl2')) return 'webgl2';
  return null;
}

async function openCache() {
  try {
    return 'caches' in window ? await caches.open(MODEL_CACHE) : null;
  } catch (e) {
    console.warn('no Cache API here:', e);
    return null;
  }
}

// Total size from a 200's Content-Length or a 206's Content-Range.
function totalOf(resp) {
  const range = resp.headers.get('Content-Range');
  if (resp.status === 206 && range && range.includes('/')) return Number(range.split('/')[1]) || 0;
  return Number(resp.headers.get('Content-Length')) || 0;
}

function startOver(d) {
  d.chunks = [];
  d.received = 0;
  d.total = 0;
  d.validator = null;
}

// One try of the download, stopped when nothing comes for IDLE_MS.
async function fetchOnce() {
  const abort = new AbortController();
  let idle;
  const alive = () => {
    clearTimeout(idle);
    idle = setTimeout(() => abort.abort(), IDLE_MS);
  };
  alive();
  try {
    await receive(abort.signal, alive);
  } catch (e) {
    throw abort.signal.aborted ? new Error(`the download stalled: no data for ${IDLE_MS / 1000} s`) : e;
  } finally {
    clearTimeout(idle);
  }
}

// The download's next bytes into `download`: the file from the start, or the rest of it with a
// byte range. `alive()` is called whenever something comes in (the answer, then each chunk).
async function receive(signal, alive) {
  const d = download;
  // Every byte of a known size came before an error: there is nothing left to ask for (a range
  // from the end would get a 416); the checks after the download decide.
  if (d.total && d.received >= d.total) return;
  // Resume only the same file: If-Range makes a server whose file changed send it whole.
  const headers = d.received > 0 && d.validator ? { Range: `bytes=${d.received}-`, 'If-Range': d.validator } : {};
  if (d.received > 0 && !d.validator) startOver(d);
  const resp = await fetch(MODEL_URL, { headers, cache: 'no-store', signal });
  alive();
  if (resp.status === 404) {
    const err = new Error(`${MODEL_URL} is not on this server (404): build the page with wasm/build.sh, which puts the model next to it`);
    err.fatal = true;
    throw err;
  }
  if (resp.status === 416 && d.received > 0) {
    // Nothing past the bytes here (the size was never said, or the file shrank).
    startOver(d);
    throw new Error('the server has no bytes past those already here (416): starting over');
  }
  if (!resp.ok) throw new Error(`the server answered ${resp.status} ${resp.statusText}`);
  if (d.received > 0) {
    const range = /^bytes (\d+)-\d+\/(\d+)$/.exec(resp.headers.get('Content-Range') || '');
    const sameFile = resp.status === 206 && range && Number(range[1]) === d.received &&
      (!d.total || Number(range[2]) === d.total);
    if (!sameFile) {
      // The server cannot resume, or the file changed: this answer is the whole file.
      console.log(`samemath:download the server sent the file whole (${resp.status}${range ? `, ${range[0]}` : ''}): starting over`);
      startOver(d);
      if (resp.status === 206) throw new Error('the server sent a range other than the one asked for');
    }
  }
  if (d.received === 0) d.validator = resp.headers.get('ETag') || resp.headers.get('Last-Modified');
  d.total = totalOf(resp) || d.total;
  const tooLarge = () => {
    const err = new Error(`${MODEL_URL} is larger than the ${mb(MAX_MODEL_BYTES)} MB this page takes`);
    err.fatal = true;
    return err;
  };
  if (d.total > MAX_MODEL_BYTES) throw tooLarge();
  const reader = resp.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    alive();
    if (done) break;
    if (d.received + value.length > MAX_MODEL_BYTES) {
      reader.cancel().catch(() => {});
      startOver(d);
      throw tooLarge();
    }
    d.chunks.push(value);
    d.received += value.length;
    state.status = `downloading the model: ${mb(d.received)} of ${mb(d.total)} MB`;
    show(state.status, { fraction: d.total ? d.received / d.total : 0 });
  }
  if (d.total && d.received < d.total) throw new Error('the connection closed early');
}

// The page's failed state: the status says why, the box comes back with the retry button.
function failModel(message) {
  state.failed = true;
  state.status = message;
  console.log(`samemath:download ${state.status}`);
  show('The model did not arrive', { message: state.status, error: true, retry: true });
  $('loading').classList.remove('hidden', 'corner');
}

// loadModel, whatever goes wrong in it ending in the failed state (never "pending" for good).
function startModel() {
  loadModel().catch((e) => {
    console.error(e);
    startOver(download);
    failModel(`The model could not be loaded: ${e.message}. ` +
      'Scene 1 works without it; "Download the model again" starts from the beginning.');
  });
}

async function loadModel() {
  state.failed = false;
  const cache = await openCache();
  if (cache) {
    // Best effort: a failed delete leaves an entry the next visit checks again.
    const forget = () => cache.delete(MODEL_URL).catch((e) => console.warn('could not delete the cached model:', e));
    let bytes = null;
    try {
      const hit = await cache.match(MODEL_URL);
      if (hit) {
        state.status = 'reading the model from the browser cache';
        show(state.status, { fraction: 1 });
        bytes = new Uint8Array(await hit.arrayBuffer());
      }
    } catch (e) {
      console.log(`samemath:download the cached model could not be read (${e.message}): downloading it again`);
      await forget();
    }
    if (bytes) {
      const check = await checkModel(bytes, 0);
      if (check.ok) return finishModel(bytes, `from the browser cache, ${check.note}`);
      console.log(`samemath:download the cached model is not the right file (${check.note}): downloading it again`);
      await forget();
    }
  }
  for (let attempt = 1; ; attempt++) {
    try {
      await fetchOnce();
      break;
    } catch (e) {
      const d = download;
      const where = `${mb(d.received)} of ${d.total ? mb(d.total) : '?'} MB`;
      if (e.fatal || attempt >= TRIES) {
        failModel(`The model download stopped at ${where}: ${e.message}. ` +
          'Scene 1 works without it; "Download the model again" resumes from there.');
        return;
      }
      state.status = `the download was interrupted at ${where} (${e.message}); resuming, try ${attempt + 1} of ${TRIES}`;
      console.log(`samemath:download ${state.status}`);
      show(state.status, { message: state.status });
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
  const d = download;
  const bytes = new Uint8Array(d.received);
  let at = 0;
  for (const c of d.chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  d.chunks = [];
  const check = await checkModel(bytes, d.total);
  if (!check.ok) {
    startOver(d);
    failModel(`The downloaded model is not the right file (${check.note}); it was not kept. ` +
      'Scene 1 works without it; "Download the model again" starts from the beginning.');
    return;
  }
  let note = `downloaded, ${check.note}`;
  if (cache) {
    try {
      await cache.put(MODEL_URL, new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream' } }));
      note = `${note}, kept in the browser cache for next time`;
    } catch (e) {
      note = `downloaded (not cached: ${e.message})`;
    }
  }
  return finishModel(bytes, note);
}

// Whether bytes can be the model, before they are cached or handed to the app: { ok, note }.
// A GGUF file starts with "GGUF", and has the size the server said (`total`, where it said one);
// then its sha256 decides, where there is one. Without a .sha256 (a model on another host) this
// is what keeps an HTML page answered 200, or a file cut short of its said size, out of the cache.
async function checkModel(bytes, total) {
  const head = String.fromCharCode(...bytes.subarray(0, 4));
  if (head !== 'GGUF') {
    const start = String.fromCharCode(...bytes.subarray(0, 16)).replace(/[^\x20-\x7e]/g, '.');
    return { ok: false, note: bytes.length ? `not a GGUF file: it starts with "${start}", not "GGUF"` : 'the file is empty' };
  }
  if (total && bytes.length !== total) {
    return { ok: false, note: `${bytes.length} bytes where the server said ${total}` };
  }
  return checkSha256(bytes);
}

// The model's sha256 against the one wasm/build.sh puts next to it (MODEL_URL + '.sha256'):
// { ok, note }. Without that file (or when it does not come within IDLE_MS), or without
// WebCrypto (pages not on https or localhost), the bytes are used unchecked and the note says so.
async function checkSha256(bytes) {
  let expected;
  let missing = 'no .sha256 next to the model';
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), IDLE_MS);
  try {
    const resp = await fetch(`${MODEL_URL}.sha256`, { cache: 'no-store', signal: abort.signal });
    // A sha256sum line; anything else (a server answering every path with a page) is none.
    const word = resp.ok ? ((await resp.text()).trim().split(/\s+/)[0] || '').toLowerCase() : '';
    if (/^[0-9a-f]{64}$/.test(word)) expected = word;
  } catch (e) {
    console.warn('no sha256 for the model:', e);
    missing = `the .sha256 did not come: ${abort.signal.aborted ? `no answer in ${IDLE_MS / 1000} s` : e.message}`;
  } finally {
    clearTimeout(timer);
  }
  if (!expected) return { ok: true, note: `sha256 not checked (${missing})` };
  if (!(crypto && crypto.subtle)) return { ok: true, note: 'sha256 not checked (no WebCrypto on this page)' };
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const actual = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  return actual === expected
    ? { ok: true, note: 'sha256 checked' }
    : { ok: false, note: `sha256 ${actual.slice(0, 16)}…, expected ${expected.slice(0, 16)}…` };
}

function finishModel(bytes, note) {
  state.model = bytes;
  state.arrived = true;
  state.status = `model ready (${mb(bytes.length)} MB, ${note})`;
  console.log(`samemath:model ${JSON.stringify({ bytes: bytes.length, note })}`);
  show(state.status, { fraction: 1 });
  tidyOverlay();
}

$('retry').addEventListener('click', () => {
  show('Downloading the model again…', { message: '' });
  startModel();
});

async function main() {
  show('Looking for WebGPU or WebGL2…');
  state.graphics = await pickGraphics();
  if (!state.graphics) {
    show('This browser cannot draw samemath', {
      message: 'samemath needs WebGPU or WebGL2, and this browser offers neither (or has them ' +
        'turned off). Try a current Chrome, Edge, Firefox or Safari with hardware acceleration ' +
        'switched on in its settings.',
      error: true,
    });
    $('bar').classList.add('hidden');
    console.log('samemath:unsupported neither WebGPU nor WebGL2');
    return;
  }
  console.log(`samemath:graphics ${state.graphics}`);
  const lost = params.get('webgpu-lost');
  const note = lost ? `WebGPU lost its device in this browser (${lost}), so samemath draws with ` +
    'WebGL2 and the model runs on the CPU. ' : '';
  show(`Starting the app (${state.graphics === 'webgpu' ? 'WebGPU' : 'WebGL2'})…`, { message: note });
  startModel();
  try {
    const { default: init } = await import('./pkg/samemath.js');
    await init();
  } catch (e) {
    // winit hands control to the browser's event loop by throwing this on purpose.
    if (!String(e).includes('Using exceptions for control flow')) {
      console.error(e);
      show('samemath stopped', { message: String(e), error: true });
      console.log(`samemath:error ${String(e)}`);
    }
  }
}

main();
