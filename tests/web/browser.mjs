// Browser tests of the web build (wasm/build.sh's folder), in Debian's headless Chromium driven
// by playwright-core: the page loads and reports ready, scenes switch and draw, a short greedy
// generation with the local model gives the native engine's tokens (WebGPU: the GPU backend on
// the renderer's device; WebGL2: the CPU backend), the page against `samemath serve` (with and
// without CORS, and connected while the model still downloads), a Connect to a server that never answers stopped with Escape, a link's
// parameters read as given (or refused, saying so), an interrupted model download resumes and
// the model is cached, the download's faults (a body that stalls, a file that is not a model, a
// cache entry that cannot be read, an error after the last byte) end in a resume, a new download
// or the retry button, and a browser without WebGPU and WebGL2 gets a message. The reference tokens come from the native binary's
// `samemath trace` on the same prompts. Frames (as the app's renderer drew them), page
// screenshots and a summary (timings, tokens/s) go to the output folder.
//   SAMEMATH_BIN=path/to/samemath node tests/web/browser.mjs WEB_DIR OUT_DIR
// SAMEMATH_WEB_ONLY=downloads runs only the model download checks, which need neither
// SAMEMATH_BIN nor an app built from the current sources (a built folder with page.js copied in).
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { serve } from '../../wasm/serve.mjs';

const [webDir = 'target/web', outDir = 'target/web-test'] = process.argv.slice(2);
const ONLY_DOWNLOADS = process.env.SAMEMATH_WEB_ONLY === 'downloads';
// The native binary: the reference tokens (`samemath trace`) and `samemath serve`.
const SAMEMATH = process.env.SAMEMATH_BIN;
if (!SAMEMATH && !ONLY_DOWNLOADS) throw new Error('set SAMEMATH_BIN to the native samemath binary');
const MODEL_FILE = join(webDir, 'model/SmolLM2-135M-Instruct.Q4_1.gguf');
const MODEL_BYTES = statSync(MODEL_FILE).size;
mkdirSync(outDir, { recursive: true });

// The native engine's greedy steps for a prompt (kept in OUT_DIR as reference-NAME.json).
function reference(name, prompt, steps, raw) {
  const path = join(outDir, `reference-${name}.json`);
  execFileSync(SAMEMATH, ['trace', ...(raw ? ['--raw'] : []), '--max-tokens', String(steps), prompt, '--json', path],
    { stdio: ['ignore', 'ignore', 'inherit'] });
  const trace = JSON.parse(readFileSync(path, 'utf8'));
  return { prompt, raw, ids: trace.map((s) => s.sampled.id), text: trace.map((s) => s.text).join('') };
}
// The chat prompt: the CPU backend and the remote runs.
const CHAT = ONLY_DOWNLOADS ? null : reference('chat', 'What is 2+2?', 8, false);
// The GPU backend on SwiftShader (Chromium's software WebGPU) runs a token in tens of seconds
// (its workgroup barriers are slow), so its run is a short raw prompt without the logit lens.
const RAW = ONLY_DOWNLOADS ? null : reference('raw', 'The capital of France is', 2, true);

const BASE_FLAGS = ['--headless=new', '--no-sandbox', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  '--window-size=1600,900'];
// WebGPU on SwiftShader. ANGLE on Vulkan is what keeps a WebGPU canvas's device alive in headless
// Chromium here (with ANGLE's default GL backend the device is lost within a few frames: no
// shared-image backing for the WebGPU swap chain). The compositor still shows such a canvas as
// transparent, so the tests look at frames the app reads back itself (samemathPage.capture).
const GPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-angle=vulkan',
  '--enable-features=Vulkan,VulkanFromANGLE,DefaultANGLEVulkan'];
// WebGL2 on SwiftShader through ANGLE's default (GL) backend: with GPU_FLAGS there is no WebGL2,
// so each run gets the browser that offers its graphics API.
const GL_FLAGS = ['--enable-unsafe-swiftshader'];

const results = [];
let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
}

async function launch(flags) {
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: flags });
}

// The page's `samemath:<kind> <detail>` console markers, awaitable.
function watch(page, label) {
  const seen = [];
  const waiters = [];
  page.on('console', (msg) => {
    const text = msg.text();
    if (process.env.SAMEMATH_WEB_VERBOSE || /error|panic/i.test(text)) console.log(`  [${label}] ${text.slice(0, 400)}`);
    const m = /^samemath:(\S+) ?(.*)$/s.exec(text);
    if (!m) return;
    const marker = { kind: m[1], detail: m[2], at: Date.now() };
    seen.push(marker);
    for (const w of waiters.splice(0)) if (!w(marker)) waiters.push(w);
  });
  page.on('pageerror', (e) => console.log(`  [${label}] page error: ${e.message}`));
  return {
    seen,
    wait(kind, timeoutMs, test = () => true) {
      const hit = seen.find((m) => m.kind === kind && test(m));
      if (hit) return Promise.resolve(hit);
      return new Promise((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`${label}: no samemath:${kind} within ${timeoutMs / 1000} s (errors: ${seen.filter((m) => m.kind === 'error').map((m) => m.detail).join(' | ') || 'none'})`)), timeoutMs);
        waiters.push((m) => {
          if (m.kind !== kind || !test(m)) return false;
          clearTimeout(timer);
          ok(m);
          return true;
        });
      });
    },
  };
}

async function press(page, key) {
  await page.click('#samemath-canvas', { position: { x: 800, y: 880 } }).catch(() => {});
  await page.keyboard.press(key);
}

// A frame as the app drew it (read back from its own GPU surface), saved as NAME.png, and how
// many distinct colours it has (a cleared or blank frame has one).
async function frame(page, name) {
  const b64 = await page.evaluate(() => window.samemathPage.capture());
  const png = Buffer.from(b64, 'base64');
  writeFileSync(join(outDir, `${name}.png`), png);
  return page.evaluate(async (data) => {
    const img = new Image();
    img.src = `data:image/png;base64,${data}`;
    await img.decode();
    const canvas = new OffscreenCanvas(img.width, img.height);
    const g = canvas.getContext('2d');
    g.drawImage(img, 0, 0);
    const px = g.getImageData(0, 0, img.width, img.height).data;
    const colours = new Set();
    for (let i = 0; i < px.length; i += 4) colours.add((px[i] << 16) | (px[i + 1] << 8) | px[i + 2]);
    return { width: img.width, height: img.height, colours: colours.size };
  }, b64);
}

// Playwright's page screenshots wait for a quiet page (fonts, a composited frame); a page drawing
// 60,000 boxes on SwiftShader can be busy past the default 30 s, and a WebGPU canvas in headless
// Chromium sometimes never gives the compositor a frame at all. The checked picture is always the
// app's own frame (`frame`); the page screenshot is only for a look, so one that does not come in
// time is reported and the run goes on.
const PAGE_SHOT_MS = 90_000;
async function pageShot(page, file) {
  const started = Date.now();
  try {
    await page.screenshot({ path: join(outDir, file), timeout: PAGE_SHOT_MS });
  } catch (e) {
    console.log(`  note: no page screenshot ${file} after ${Math.round((Date.now() - started) / 1000)} s ` +
      `(${e.message.split('\n')[0]}); the checks use the app's own frames`);
  }
}

// A frame of the scene on show: saved, and it must be a drawn picture, not a cleared screen.
async function lookAt(page, label, name) {
  const f = await frame(page, name);
  check(f.colours > 200, `${label}: ${name}.png, ${f.width}x${f.height} as the app drew it, has ${f.colours} colours`);
  await pageShot(page, `${name}-page.png`);
}

// One run: load, ready, look at scene 1, switch to scene 2, wait for the steps, compare with the
// native engine, look at scenes 2 and 3.
async function generationRun(browser, base, graphics, backend, want) {
  const label = `${graphics}/${backend}`;
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  const markers = watch(page, label);
  const query = new URLSearchParams({ graphics, steps: String(want.ids.length), prompt: want.prompt, backend });
  if (want.raw) query.set('raw', '');
  if (want.raw) query.set('no-lens', '');
  const started = Date.now();
  await page.goto(`${base}/?${query}`);
  const chosen = await markers.wait('graphics', 30_000);
  check(chosen.detail === graphics, `${label}: the page chose ${graphics}`);
  // WebGPU's device can be lost (see GPU_FLAGS): the page then reloads on WebGL2.
  let ready = await markers.wait('ready', 120_000);
  await page.waitForTimeout(1500);
  const fallback = markers.seen.find((m) => m.kind === 'fallback');
  if (fallback) {
    console.log(`  ${label}: WebGPU device lost (${JSON.parse(fallback.detail).reason}); the page fell back to WebGL2`);
    ready = await markers.wait('ready', 120_000, (m) => m.at > fallback.at && JSON.parse(m.detail).graphics === 'webgl2');
  }
  const timing = markers.seen.filter((m) => m.kind === 'timing').pop();
  const readyMs = JSON.parse(timing.detail).ready_ms;
  const info = JSON.parse(ready.detail);
  const ran = info.graphics;
  console.log(`  ${label}: first frames after ${readyMs} ms on ${info.adapter || '(unnamed adapter)'} (${info.backend})`);
  check(ran === graphics, `${label}: the app draws with ${ran}${fallback ? ' (after losing WebGPU)' : ''}`);
  const shot = `${ran}-${backend}`;
  await lookAt(page, label, `${shot}-scene1`);
  await press(page, 'Digit2');
  await markers.wait('scene', 30_000, (m) => m.detail === 'Llm');
  check(true, `${label}: key 2 switched to the LLM scene`);
  const done = await markers.wait('done', 900_000);
  const report = JSON.parse(done.detail);
  const same = JSON.stringify(report.ids) === JSON.stringify(want.ids);
  check(same, `${label}: ${report.ids.length} greedy tokens of "${want.prompt}"${want.raw ? ' (raw)' : ''} on ` +
    `"${report.backend}" equal the native engine's (${same ? report.ids.join(' ') : `got ${report.ids.join(' ')}, native ${want.ids.join(' ')}`})`);
  const held = await page.evaluate(() => ({
    kept: window.samemathPage.modelBytes()?.length ?? 0,
    boxHidden: document.getElementById('loading').classList.contains('hidden'),
  }));
  check(held.kept === 0 && held.boxHidden,
    `${label}: the page let go of its copy of the model once the app had it, and hid the loading box`);
  const expected = backend === 'gpu' && !fallback ? 'gpu' : 'cpu';
  check(report.backend.startsWith(expected), `${label}: generated on the ${expected.toUpperCase()} backend (${report.backend})`);
  await page.waitForTimeout(800);
  await lookAt(page, label, `${shot}-scene2`);
  await press(page, 'Digit3');
  await markers.wait('scene', 30_000, (m) => m.detail === 'Bridge');
  await page.waitForTimeout(800);
  await lookAt(page, label, `${shot}-scene3`);
  results.push({ run: label, drew_with: ran, webgpu_lost: fallback ? JSON.parse(fallback.detail).reason : null,
    adapter: info.adapter, api: info.backend, ready_ms: readyMs, prompt: want.prompt, raw: want.raw,
    tokens_per_sec: report.tokens_per_sec, backend: report.backend, ids: report.ids,
    seconds_to_done: (done.at - started) / 1000 });
  await page.close();
}

// The talk in the browser (?talk): the clicker's PageDown moves it step by step, the steps drive
// the scenes, B blanks the screen.
async function talkRun(browser, base) {
  const label = 'talk';
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  const markers = watch(page, label);
  await page.goto(`${base}/?graphics=webgl2&talk`);
  await markers.wait('ready', 120_000);
  const first = await markers.wait('talk', 60_000);
  const steps = Number(/of (\d+)/.exec(first.detail)?.[1] ?? 0);
  check(first.detail.startsWith('1 of ') && steps >= 12, `talk: ?talk opened the shipped talk at step ${first.detail}`);
  await lookAt(page, label, 'talk-step01');
  for (let n = 2; n <= 7; n++) {
    await press(page, 'PageDown');
    await markers.wait('talk', 30_000, (m) => m.detail.startsWith(`${n} of `));
  }
  await markers.wait('scene', 30_000, (m) => m.detail === 'Llm');
  check(true, 'talk: PageDown moved to step 7, which switched to the LLM scene');
  await page.waitForTimeout(1500);
  await lookAt(page, label, 'talk-step07');
  // B with the pointer in a corner (no hover tooltip under it).
  await page.mouse.move(2, 2);
  await page.keyboard.press('KeyB');
  await page.waitForTimeout(800);
  const blank = await frame(page, 'talk-blank');
  check(blank.colours <= 2, `talk: B blanked the screen (${blank.colours} colour(s))`);
  await page.close();
}

async function freePort() {
  const probe = createServer();
  await new Promise((ok) => probe.listen(0, '127.0.0.1', ok));
  const { port } = probe.address();
  await new Promise((ok) => probe.close(ok));
  return port;
}

// `samemath serve` on loopback (with or without CORS), once its /health says the model is in.
async function startServe(cors) {
  const port = await freePort();
  const args = ['serve', '--port', String(port), ...(cors ? ['--cors', cors] : [])];
  const child = spawn(SAMEMATH, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    const ok = await fetch(`${url}/health`).then((r) => r.ok, () => false);
    if (ok) return { url, stop: () => child.kill('SIGTERM') };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error('samemath serve did not become healthy within 60 s');
}

// The page against `samemath serve`: with CORS the answer streams in; without, the page says
// why and how to fix it.
async function remoteRuns(browser, base) {
  const allowed = await startServe('*');
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
    const markers = watch(page, 'remote');
    const query = new URLSearchParams({ graphics: 'webgl2', scene: 'llm', remote: allowed.url, steps: String(CHAT.ids.length), prompt: CHAT.prompt });
    await page.goto(`${base}/?${query}`);
    const done = JSON.parse((await markers.wait('done', 300_000)).detail);
    check(done.backend.startsWith('remote') && done.text === CHAT.text,
      `remote from the page (samemath serve --cors '*'): "${done.text}" equals the native engine's answer (${done.backend})`);
    await page.waitForTimeout(800);
    await pageShot(page, 'remote-scene2.png');
    await page.close();
  } finally {
    allowed.stop();
  }
  const closed = await startServe(null);
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
    const markers = watch(page, 'cors');
    const query = new URLSearchParams({ graphics: 'webgl2', scene: 'llm', remote: closed.url, steps: String(CHAT.ids.length), prompt: CHAT.prompt });
    await page.goto(`${base}/?${query}`);
    const error = await markers.wait('error', 120_000, (m) => /CORS/.test(m.detail));
    check(/--cors/.test(error.detail) && /OLLAMA_ORIGINS/.test(error.detail),
      `remote without CORS: the page says so and how to fix it ("${error.detail.slice(0, 160)}...")`);
    await page.waitForTimeout(500);
    await pageShot(page, 'remote-cors-refused.png');
    await page.close();
  } finally {
    closed.stop();
  }
}

// A Connect made while the page still downloads the model (100 MB on a slow line; here the
// download is held until the answer is in): the server answers without waiting for it, and the
// model still arrives and loads afterwards. The Connect used to wait behind the page's Load.
async function connectDuringDownload(browser, base) {
  const server = await startServe('*');
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
    const markers = watch(page, 'connect-first');
    // Held until the answer is in, or 90 s (the page retries a download silent for 30 s, four
    // tries in all): a Connect that waited for the download would have no answer by then.
    let release;
    const released = new Promise((ok) => { release = ok; });
    const deadline = setTimeout(release, 90_000);
    let held = 0;
    await page.route(/\.gguf$/, async (route) => {
      held++;
      await released;
      // (A request the page gave up on meanwhile, its stall timer, is gone: nothing to answer.)
      await route.continue().catch(() => {});
    });
    const query = new URLSearchParams({ graphics: 'webgl2', scene: 'llm', remote: server.url, steps: String(CHAT.ids.length), prompt: CHAT.prompt });
    const started = Date.now();
    await page.goto(`${base}/?${query}`);
    const done = await Promise.race([markers.wait('done', 300_000).catch(() => null), released.then(() => null)]);
    const answered = done ? JSON.parse(done.detail) : null;
    const before = !!done && !markers.seen.some((m) => m.kind === 'model' || m.kind === 'loaded');
    clearTimeout(deadline);
    release();
    // The app itself loads the model once its bytes come: the page's Load was not lost.
    const loaded = await markers.wait('loaded', 300_000);
    await page.waitForTimeout(1500);
    const errors = markers.seen.filter((m) => m.kind === 'error').map((m) => m.detail);
    check(held > 0 && before && answered.backend.startsWith('remote') && answered.text === CHAT.text && errors.length === 0,
      `Connect while the model downloads: ${answered ? `"${answered.text}" from the server ${Math.round((done.at - started) / 1000)} s after the page opened, ` +
        `before the model came (${before})` : 'no answer from the server in 90 s while the model downloaded'}, ` +
      `then the model loaded (${loaded.detail}${errors.length ? `; errors: ${errors.join(' | ')}` : ''})`);
    await page.close();
  } finally {
    server.stop();
  }
}

// A Connect to a server that takes the connection and never answers (a cold start that does not
// end): Escape (Stop) ends the wait with "Connect was stopped", and nothing else goes wrong.
async function stoppedConnect(browser, base) {
  let asked = 0;
  const held = [];
  const silent = createServer((socket) => { asked++; held.push(socket); });
  await new Promise((ok) => silent.listen(0, '127.0.0.1', ok));
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
    const markers = watch(page, 'stopped-connect');
    const url = `http://127.0.0.1:${silent.address().port}`;
    const query = new URLSearchParams({ graphics: 'webgl2', scene: 'llm', remote: url, prompt: CHAT.prompt });
    await page.goto(`${base}/?${query}`);
    await markers.wait('model', 300_000);
    for (let i = 0; i < 600 && asked === 0; i++) await page.waitForTimeout(100);
    await page.waitForTimeout(2500);
    // (Software rendering: a frame, and so a key, can take a second or more here.)
    await press(page, 'Escape');
    const pressed = Date.now();
    const stopped = await markers.wait('error', 60_000, (m) => /Connect was stopped/.test(m.detail));
    await page.waitForTimeout(3000);
    const errors = markers.seen.filter((m) => m.kind === 'error');
    check(asked > 0 && errors.length === 1 && !markers.seen.some((m) => m.kind === 'done'),
      `Connect to a server that never answers: Escape stopped it ${stopped.at - pressed} ms after the key ("${stopped.detail}", the only error)`);
    await page.close();
  } finally {
    for (const s of held) s.destroy();
    silent.close();
  }
}

// A link's parameters: a prompt that starts with a hyphen is a prompt, not a flag; parameters
// the app refuses are said on the page, which then starts with its defaults.
async function linkArguments(browser, base) {
  let page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
  let markers = watch(page, 'hyphen');
  await page.goto(`${base}/?${new URLSearchParams({ graphics: 'webgl2', scene: 'llm', prompt: '-3 squared?' })}`);
  const scene = await markers.wait('scene', 120_000);
  const errors = markers.seen.filter((m) => m.kind === 'error').map((m) => m.detail);
  check(scene.detail === 'Llm' && errors.length === 0,
    `a link's prompt that starts with a hyphen ("-3 squared?") is read as the prompt (scene ${scene.detail}${errors.length ? `, errors: ${errors.join(' | ')}` : ''})`);
  await page.close();
  page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
  markers = watch(page, 'bad-args');
  await page.goto(`${base}/?graphics=webgl2&scene=llm&raw=1`);
  await markers.wait('error', 120_000, (m) => /page's arguments/.test(m.detail));
  const first = await markers.wait('scene', 120_000);
  await page.waitForTimeout(500);
  const shown = await page.textContent('#message');
  check(/could not be read/.test(shown) && /raw/.test(shown) && first.detail === 'Graphics',
    `a link with a parameter the app refuses (raw=1): the page says so ("${shown.slice(0, 140)}..."), the app starts with its defaults (${first.detail})`);
  await pageShot(page, 'bad-arguments.png');
  await page.close();
}

// The app's runs: generation with each graphics API, remote (also while the model downloads), a stopped Connect, a link's
// parameters, the talk.
async function appRuns(base) {
  // WebGPU (SwiftShader) where this Chromium offers it: the GPU backend on the renderer's device.
  const browsers = {
    webgpu: await launch([...BASE_FLAGS, ...GPU_FLAGS]),
    webgl2: await launch([...BASE_FLAGS, ...GL_FLAGS]),
  };
  // Asked in a browser of its own: closing a page that held a WebGPU device loses the devices
  // of the browser's other pages (SwiftShader).
  const prober = await launch([...BASE_FLAGS, ...GPU_FLAGS]);
  const probe = await prober.newPage();
  await probe.goto(`${base}/model/`);
  const hasWebGpu = await probe.evaluate(async () => !!(navigator.gpu && await navigator.gpu.requestAdapter()));
  await prober.close();
  // (SAMEMATH_WEB_RUNS, e.g. "webgpu/cpu,webgl2/cpu", picks runs when debugging.)
  const runs = (process.env.SAMEMATH_WEB_RUNS ?? 'webgpu/gpu,webgl2/cpu').split(',').filter(Boolean);
  for (const run of runs) {
    const [graphics, backend] = run.split('/');
    if (graphics === 'webgpu' && !hasWebGpu) console.log('skip webgpu: this Chromium offers no WebGPU adapter');
    else await generationRun(browsers[graphics], base, graphics, backend, backend === 'gpu' ? RAW : CHAT);
  }
  await remoteRuns(browsers.webgl2, base);
  await connectDuringDownload(browsers.webgl2, base);
  await stoppedConnect(browsers.webgl2, base);
  await linkArguments(browsers.webgl2, base);
  await talkRun(browsers.webgl2, base);
  for (const b of Object.values(browsers)) await b.close();
  if (process.env.SAMEMATH_WEB_RUNS) throw new Error('SAMEMATH_WEB_RUNS set: the other checks were skipped');
}

// Another host for ?model-url= (open to the page with CORS, no .sha256 next to the model): its
// /model.gguf answers what `host.answer` says, 'page' (an HTML page with a 200, what a sign-in
// wall or a wrong link gives) or 'model'.
async function otherHost() {
  const model = readFileSync(MODEL_FILE);
  const host = { answer: 'page' };
  const server = createHttpServer((req, res) => {
    const cors = { 'Access-Control-Allow-Origin': '*' };
    if (new URL(req.url, 'http://x').pathname !== '/model.gguf') {
      res.writeHead(404, cors).end();
    } else if (host.answer === 'page') {
      res.writeHead(200, { ...cors, 'Content-Type': 'text/html' }).end('<!doctype html><title>Sign in</title><p>Sign in to download this file.</p>\n');
    } else {
      res.writeHead(200, { ...cors, 'Content-Type': 'application/octet-stream', 'Content-Length': model.length }).end(model);
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  host.url = `http://127.0.0.1:${server.address().port}/model.gguf`;
  host.close = () => server.close();
  return host;
}

// The download's faults, each through the real page in a browser context of its own (its own
// cache): a body that stalls, an error after the last byte, a failure outside the download, a
// file from another host that is not a model, and cached entries that are wrong or unreadable.
async function downloadFaults() {
  const b = await launch([...BASE_FLAGS, ...GL_FLAGS]);
  // Served once with a stall (SAMEMATH_STALL_MODEL_AT), then as usual.
  process.env.SAMEMATH_STALL_MODEL_AT = String(20_000_000);
  const local = await serve(webDir, 0);
  delete process.env.SAMEMATH_STALL_MODEL_AT;
  const localBase = `http://127.0.0.1:${local.address().port}`;
  const host = await otherHost();
  const downloads = (markers, pattern) => markers.seen.filter((m) => m.kind === 'download' && pattern.test(m.detail));
  const shown = (page) => page.evaluate(() => ({
    failed: window.samemathPage.modelFailed(),
    retry: !document.getElementById('retry').classList.contains('hidden'),
    message: document.getElementById('message').textContent,
  }));
  try {
    // 20 MB, then nothing with the connection left open: after 30 s without data the page stops
    // that try and resumes where it stopped.
    let page = await (await b.newContext()).newPage();
    let markers = watch(page, 'stalled');
    await page.goto(`${localBase}/?graphics=webgl2`);
    let model = JSON.parse((await markers.wait('model', 300_000)).detail);
    const stalled = downloads(markers, /stalled: no data for 30 s/);
    check(stalled.length === 1 && model.bytes === MODEL_BYTES && /sha256 checked/.test(model.note),
      `a body that stops after 20 MB, the connection open: "${stalled[0]?.detail}", then the rest came (${model.note})`);
    await page.close();

    // A read error after the last byte (the size known): the download is complete; no range from
    // the end is asked for (its 416, try after try, was the failure).
    page = await (await b.newContext()).newPage();
    markers = watch(page, 'error-at-end');
    await page.addInitScript(() => {
      const read = ReadableStreamDefaultReader.prototype.read;
      const got = new WeakMap();
      let failed = false;
      ReadableStreamDefaultReader.prototype.read = async function () {
        const r = await read.call(this);
        got.set(this, (got.get(this) || 0) + (r.value?.length ?? 0));
        if (r.done && !failed && got.get(this) > 1e6) {
          failed = true;
          throw new TypeError('network error after the last byte (injected)');
        }
        return r;
      };
    });
    await page.goto(`${localBase}/?graphics=webgl2`);
    model = JSON.parse((await markers.wait('model', 300_000)).detail);
    const atEnd = downloads(markers, /interrupted/);
    check(atEnd.length === 1 && /at (\S+) of \1 MB \(network error after the last byte/.test(atEnd[0].detail) &&
      downloads(markers, /416|starting over/).length === 0 && model.bytes === MODEL_BYTES && /sha256 checked/.test(model.note),
      `an error after the last byte: "${atEnd[0]?.detail}", then the model without asking again (${model.note})`);
    await page.close();

    // A failure outside the download (WebCrypto's digest, once): the failed state with its message
    // and retry button, not "pending" for good; the retry brings the model.
    page = await (await b.newContext()).newPage();
    markers = watch(page, 'digest-fails');
    await page.addInitScript(() => {
      const digest = SubtleCrypto.prototype.digest;
      let failed = false;
      SubtleCrypto.prototype.digest = function (...args) {
        if (failed) return digest.apply(this, args);
        failed = true;
        return Promise.reject(new Error('digest failed (injected)'));
      };
    });
    await page.goto(`${localBase}/?graphics=webgl2`);
    await markers.wait('download', 300_000, (m) => /could not be loaded/.test(m.detail));
    let seen = await shown(page);
    check(seen.failed && seen.retry && /digest failed \(injected\)/.test(seen.message),
      `a failure after the download: the page says so with the retry button ("${seen.message.slice(0, 100)}...")`);
    await page.click('#retry');
    model = JSON.parse((await markers.wait('model', 300_000)).detail);
    check(model.bytes === MODEL_BYTES && /^downloaded, sha256 checked/.test(model.note),
      `... and "Download the model again" brings it (${model.note})`);
    await page.close();

    // ?model-url= on another host without a .sha256, which answers an HTML page with a 200: refused
    // for not starting with "GGUF", not cached, the retry button shown; once the host has the
    // model, the retry brings it.
    const ctx = await b.newContext();
    const link = `${localBase}/?graphics=webgl2&model-url=${encodeURIComponent(host.url)}`;
    const cached = (page) => page.evaluate(async (url) => !!(await (await caches.open('samemath-model-v1')).match(url)), host.url);
    page = await ctx.newPage();
    markers = watch(page, 'not-a-model');
    await page.goto(link);
    await markers.wait('download', 300_000, (m) => /not the right file/.test(m.detail));
    seen = await shown(page);
    check(seen.failed && seen.retry && /not a GGUF file: it starts with "<!doctype html>/.test(seen.message) && !(await cached(page)),
      `another host answers an HTML page for the model: refused, not cached ("${seen.message.slice(0, 120)}...")`);
    host.answer = 'model';
    await page.click('#retry');
    model = JSON.parse((await markers.wait('model', 300_000)).detail);
    check(model.bytes === MODEL_BYTES && /sha256 not checked \(no \.sha256/.test(model.note) &&
      /kept in the browser cache/.test(model.note) && await cached(page),
      `... and once it has the model, the retry brings it (${model.note})`);
    // A cached entry there that is not a model (no .sha256 to tell): found out, downloaded anew.
    await page.evaluate(async (url) => (await caches.open('samemath-model-v1')).put(url, new Response('<!doctype html><p>Sign in</p>')), host.url);
    await page.close();
    page = await ctx.newPage();
    markers = watch(page, 'cached-not-a-model');
    await page.goto(link);
    model = JSON.parse((await markers.wait('model', 300_000)).detail);
    check(downloads(markers, /cached model is not the right file \(not a GGUF file/).length === 1 &&
      model.bytes === MODEL_BYTES && /^downloaded/.test(model.note),
      `a cached file that is not a model (no .sha256): refused and downloaded again (${model.note})`);
    await page.close();

    // A cached entry that cannot be read: deleted, and the model downloaded again.
    page = await ctx.newPage();
    markers = watch(page, 'cache-unreadable');
    await page.addInitScript(() => {
      const match = Cache.prototype.match;
      const remove = Cache.prototype.delete;
      Cache.prototype.match = async function (...args) {
        const hit = await match.apply(this, args);
        if (hit) hit.arrayBuffer = () => Promise.reject(new Error('the disk said no (injected)'));
        return hit;
      };
      Cache.prototype.delete = function (...args) {
        window.cacheDeletes = (window.cacheDeletes || 0) + 1;
        return remove.apply(this, args);
      };
    });
    await page.goto(link);
    model = JSON.parse((await markers.wait('model', 300_000)).detail);
    const deletes = await page.evaluate(() => window.cacheDeletes || 0);
    check(downloads(markers, /cached model could not be read \(the disk said no/).length === 1 && deletes === 1 &&
      model.bytes === MODEL_BYTES && /^downloaded/.test(model.note),
      `a cached model that cannot be read: deleted and downloaded again (${model.note})`);
    await page.close();

    // A panic in the app: wasm cannot unwind, so the canvas would just freeze; the page sees the
    // panic hook's console.error line and says so (the line is written here as the hook does).
    page = await (await b.newContext()).newPage();
    markers = watch(page, 'panic');
    await page.goto(`${localBase}/?graphics=webgl2`);
    await page.evaluate(() => console.error('panicked at src/worker/engine.rs:1:1:\nan injected bug'));
    const panic = await markers.wait('panic', 30_000);
    const said = await shown(page);
    check(/engine\.rs:1:1:: an injected bug/.test(panic.detail) && /met a bug and stopped/.test(said.message) &&
      /Reload the page/.test(said.message), `a panic is said on the page: "${said.message}"`);
    await page.close();
  } finally {
    await b.close();
    host.close();
    local.closeAllConnections();
    local.close();
  }
}

const server = await serve(webDir, 0);
const base = `http://127.0.0.1:${server.address().port}`;
try {
  if (ONLY_DOWNLOADS) console.log('SAMEMATH_WEB_ONLY=downloads: only the model download checks');
  else await appRuns(base);

  // A dropped connection mid-download: the page resumes with a byte range; a reload reads the
  // browser's cache.
  process.env.SAMEMATH_CUT_MODEL_AT = String(20_000_000);
  const cutServer = await serve(webDir, 0);
  delete process.env.SAMEMATH_CUT_MODEL_AT;
  const cutBase = `http://127.0.0.1:${cutServer.address().port}`;
  const b = await launch([...BASE_FLAGS, ...GL_FLAGS]);
  const ctx = await b.newContext();
  let page = await ctx.newPage();
  let markers = watch(page, 'download');
  await page.goto(`${cutBase}/?graphics=webgl2`);
  const model = JSON.parse((await markers.wait('model', 300_000)).detail);
  const sawInterrupted = markers.seen.some((m) => m.kind === 'download' && /interrupted/.test(m.detail));
  check(sawInterrupted && model.bytes === MODEL_BYTES,
    `download cut at 20 MB: the page said so and resumed (${model.bytes} of ${MODEL_BYTES} bytes, ${model.note})`);
  await page.close();
  page = await ctx.newPage();
  markers = watch(page, 'cached');
  await page.goto(`${cutBase}/?graphics=webgl2`);
  const again = JSON.parse((await markers.wait('model', 120_000)).detail);
  check(/browser cache/.test(again.note) && /sha256 checked/.test(again.note) && again.bytes === MODEL_BYTES,
    `reload: the model comes from the browser cache, sha256-checked (${again.note})`);
  // A cached copy that is not the model (a bad disk, an old version): found out, downloaded anew.
  await page.evaluate(async () => {
    const cache = await caches.open('samemath-model-v1');
    await cache.put('model/SmolLM2-135M-Instruct.Q4_1.gguf', new Response(new Uint8Array(4096)));
  });
  await page.close();
  page = await ctx.newPage();
  markers = watch(page, 'poisoned');
  await page.goto(`${cutBase}/?graphics=webgl2`);
  const fresh = JSON.parse((await markers.wait('model', 300_000)).detail);
  const sawBadCache = markers.seen.some((m) => m.kind === 'download' && /cached model is not the right file/.test(m.detail));
  check(sawBadCache && fresh.bytes === MODEL_BYTES && /^downloaded, sha256 checked/.test(fresh.note),
    `a corrupt cached model is refused and downloaded again (${fresh.note})`);
  await b.close();
  cutServer.close();

  // The file changes on the server while the download is cut: the resume asks If-Range, the
  // server sends the new file whole, and the page starts over instead of mixing the two.
  process.env.SAMEMATH_CUT_MODEL_AT = String(20_000_000);
  process.env.SAMEMATH_MODEL_CHANGES_AT_CUT = '1';
  const changeServer = await serve(webDir, 0);
  delete process.env.SAMEMATH_CUT_MODEL_AT;
  delete process.env.SAMEMATH_MODEL_CHANGES_AT_CUT;
  const b2 = await launch([...BASE_FLAGS, ...GL_FLAGS]);
  page = await (await b2.newContext()).newPage();
  markers = watch(page, 'changed');
  await page.goto(`http://127.0.0.1:${changeServer.address().port}/?graphics=webgl2`);
  const changed = JSON.parse((await markers.wait('model', 300_000)).detail);
  const sawRestart = markers.seen.some((m) => m.kind === 'download' && /starting over/.test(m.detail));
  check(sawRestart && changed.bytes === MODEL_BYTES && /sha256 checked/.test(changed.note),
    `the file changed mid-download: the page started over and got the whole new file (${changed.note})`);
  // A crafted link: page parameters are shown as text, never run as markup.
  page = await (await b2.newContext()).newPage();
  markers = watch(page, 'xss');
  const payload = '<img src=x onerror="console.log(\'samemath:xss ran\')">';
  await page.goto(`http://127.0.0.1:${changeServer.address().port}/?graphics=webgl2&webgpu-lost=${encodeURIComponent(payload)}`);
  await markers.wait('graphics', 60_000);
  await page.waitForTimeout(1000);
  const shown = await page.textContent('#message');
  check(!markers.seen.some((m) => m.kind === 'xss') && shown.includes('<img'),
    'a crafted webgpu-lost parameter is shown as text, not run');
  await b2.close();
  changeServer.close();
  await downloadFaults();

  // Neither WebGPU nor WebGL2: a message, not a blank canvas.
  if (!ONLY_DOWNLOADS) {
    const bare = await launch([...BASE_FLAGS, '--disable-3d-apis', '--disable-webgl', '--disable-features=WebGPU']);
    page = await bare.newPage({ viewport: { width: 1200, height: 700 } });
    markers = watch(page, 'bare');
    await page.goto(`${base}/`);
    await markers.wait('unsupported', 30_000);
    const text = await page.textContent('#loading');
    check(/neither/.test(text), 'no WebGPU, no WebGL2: the page says what is missing');
    await pageShot(page, 'unsupported.png');
    await bare.close();
  }
} catch (e) {
  console.log(`FAIL ${e.message}`);
  failures++;
} finally {
  server.close();
}
writeFileSync(join(outDir, 'summary.json'), JSON.stringify(results, null, 2));
for (const r of results) {
  console.log(`${r.run}: first frames ${r.ready_ms} ms, ${r.tokens_per_sec.toFixed(2)} tokens/s (${r.backend}), done after ${r.seconds_to_done.toFixed(1)} s`);
}
console.log(failures ? `${failures} browser check(s) failed` : 'browser checks passed');
process.exit(failures ? 1 : 0);
