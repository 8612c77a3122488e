// Browser tests of the web build (wasm/build.sh's folder), in Debian's headless Chromium driven
// by playwright-core: the page loads and reports ready, scenes switch, a short greedy generation
// with the local model gives the native engine's tokens (WebGPU: the GPU backend on the
// renderer's device; WebGL2: the CPU backend), an interrupted model download resumes and the
// model is cached, and a browser without WebGPU and WebGL2 gets a message. Screenshots and a
// summary (timings, tokens/s) go to the output folder.
//   node tests/web/browser.mjs WEB_DIR REFERENCE_JSON OUT_DIR
import { spawn } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { serve } from '../../wasm/serve.mjs';

const [webDir = 'target/web', referencePath, outDir = 'target/web-test'] = process.argv.slice(2);
const PROMPT = process.env.SAMEMATH_WEB_PROMPT || 'What is 2+2?';
const referenceSteps = JSON.parse(readFileSync(referencePath, 'utf8'));
const reference = referenceSteps.map((s) => s.sampled.id);
const referenceText = referenceSteps.map((s) => s.text).join('');
// The native binary, for `samemath serve` (the remote runs).
const SAMEMATH = process.env.SAMEMATH_BIN;
const STEPS = reference.length;
const MODEL_BYTES = statSync(join(webDir, 'model/SmolLM2-135M-Instruct.Q4_1.gguf')).size;
mkdirSync(outDir, { recursive: true });

const BASE_FLAGS = ['--headless=new', '--no-sandbox', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  '--window-size=1600,900'];
const GPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader'];

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

// One run: load, ready, scene 1 shot, switch to scene 2, wait for the N steps, compare.
async function generationRun(browser, base, graphics, backend) {
  const label = `${graphics}/${backend}`;
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  const markers = watch(page, label);
  const query = new URLSearchParams({ graphics, steps: String(STEPS), prompt: PROMPT, backend });
  const started = Date.now();
  await page.goto(`${base}/?${query}`);
  const chosen = await markers.wait('graphics', 30_000);
  check(chosen.detail === graphics, `${label}: the page chose ${graphics}`);
  // WebGPU's device can be lost (seen with SwiftShader): the page then reloads on WebGL2.
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
  check(ran === graphics || (graphics === 'webgpu' && fallback), `${label}: the app draws with ${ran}`);
  await page.screenshot({ path: join(outDir, `${ran}${fallback ? '-fallback' : ''}-scene1.png`) });
  await press(page, 'Digit2');
  await markers.wait('scene', 30_000, (m) => m.detail === 'Llm');
  check(true, `${label}: key 2 switched to the LLM scene`);
  const done = await markers.wait('done', 900_000);
  const report = JSON.parse(done.detail);
  const same = JSON.stringify(report.ids) === JSON.stringify(reference);
  check(same, `${label}: ${report.ids.length} greedy tokens on "${report.backend}" equal the native engine's ` +
    `(${same ? report.ids.join(' ') : `got ${report.ids.join(' ')}, native ${reference.join(' ')}`})`);
  const expected = backend === 'gpu' && !fallback ? 'gpu' : 'cpu';
  check(report.backend.startsWith(expected), `${label}: generated on the ${expected.toUpperCase()} backend (${report.backend})`);
  await page.waitForTimeout(800);
  await page.screenshot({ path: join(outDir, `${ran}${fallback ? '-fallback' : ''}-scene2.png`) });
  await press(page, 'Digit3');
  await markers.wait('scene', 30_000, (m) => m.detail === 'Bridge');
  await page.waitForTimeout(800);
  await page.screenshot({ path: join(outDir, `${ran}${fallback ? '-fallback' : ''}-scene3.png`) });
  results.push({ run: label, drew_with: ran, webgpu_lost: fallback ? JSON.parse(fallback.detail).reason : null,
    adapter: info.adapter, api: info.backend, ready_ms: readyMs,
    tokens_per_sec: report.tokens_per_sec, backend: report.backend, ids: report.ids,
    seconds_to_done: (done.at - started) / 1000 });
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
    const query = new URLSearchParams({ graphics: 'webgl2', scene: 'llm', remote: allowed.url, steps: String(STEPS), prompt: PROMPT });
    await page.goto(`${base}/?${query}`);
    const done = JSON.parse((await markers.wait('done', 300_000)).detail);
    check(done.backend.startsWith('remote') && done.text === referenceText,
      `remote from the page (samemath serve --cors '*'): "${done.text}" equals the native engine's answer (${done.backend})`);
    await page.waitForTimeout(800);
    await page.screenshot({ path: join(outDir, 'remote-scene2.png') });
    await page.close();
  } finally {
    allowed.stop();
  }
  const closed = await startServe(null);
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
    const markers = watch(page, 'cors');
    const query = new URLSearchParams({ graphics: 'webgl2', scene: 'llm', remote: closed.url, steps: String(STEPS), prompt: PROMPT });
    await page.goto(`${base}/?${query}`);
    const error = await markers.wait('error', 120_000, (m) => /CORS/.test(m.detail));
    check(/--cors/.test(error.detail) && /OLLAMA_ORIGINS/.test(error.detail),
      `remote without CORS: the page says so and how to fix it ("${error.detail.slice(0, 160)}...")`);
    await page.waitForTimeout(500);
    await page.screenshot({ path: join(outDir, 'remote-cors-refused.png') });
    await page.close();
  } finally {
    closed.stop();
  }
}

const server = await serve(webDir, 0);
const base = `http://127.0.0.1:${server.address().port}`;
try {
  // WebGPU (SwiftShader) where this Chromium offers it, the GPU backend on the renderer's device.
  const gpuBrowser = await launch([...BASE_FLAGS, ...GPU_FLAGS]);
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
    else await generationRun(gpuBrowser, base, graphics, backend);
  }
  if (SAMEMATH) await remoteRuns(gpuBrowser, base);
  else console.log('skip remote: SAMEMATH_BIN (the native binary, for samemath serve) is not set');
  await gpuBrowser.close();
  if (process.env.SAMEMATH_WEB_RUNS) throw new Error('SAMEMATH_WEB_RUNS set: the other checks were skipped');

  // A dropped connection mid-download: the page resumes with a byte range; a reload reads the
  // browser's cache.
  process.env.SAMEMATH_CUT_MODEL_AT = String(20_000_000);
  const cutServer = await serve(webDir, 0);
  delete process.env.SAMEMATH_CUT_MODEL_AT;
  const cutBase = `http://127.0.0.1:${cutServer.address().port}`;
  const b = await launch([...BASE_FLAGS, ...GPU_FLAGS]);
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
  check(/browser cache/.test(again.note) && again.bytes === MODEL_BYTES, `reload: the model comes from the browser cache (${again.note})`);
  await b.close();
  cutServer.close();

  // Neither WebGPU nor WebGL2: a message, not a blank canvas.
  const bare = await launch([...BASE_FLAGS, '--disable-3d-apis', '--disable-webgl', '--disable-features=WebGPU']);
  page = await bare.newPage({ viewport: { width: 1200, height: 700 } });
  markers = watch(page, 'bare');
  await page.goto(`${base}/`);
  await markers.wait('unsupported', 30_000);
  const text = await page.textContent('#loading');
  check(/neither/.test(text), 'no WebGPU, no WebGL2: the page says what is missing');
  await page.screenshot({ path: join(outDir, 'unsupported.png') });
  await bare.close();
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
