// A small static server for the web build (node, no dependencies): correct MIME types (wasm
// streaming compile needs application/wasm) and byte ranges (the page resumes the model
// download with them). Usage: node wasm/serve.mjs DIR [PORT]
// For the browser tests, SAMEMATH_CUT_MODEL_AT=N closes the connection after N bytes of the
// model's first full (non-range) response, as a dropped network would; with
// SAMEMATH_MODEL_CHANGES_AT_CUT=1 the file is then "replaced": a new ETag, and ranges asked for
// without If-Range get other bytes (what mixing two versions of a file gives).
// SAMEMATH_STALL_MODEL_AT=N sends N bytes of the model's first full response and then nothing,
// holding the connection open (a server that hangs mid-body).
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { extname, isAbsolute, join, relative, resolve, sep } from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.png': 'image/png',
  '.gguf': 'application/octet-stream',
};

export function serve(dir, port = 0, host = '127.0.0.1') {
  const root = resolve(dir);
  let cutAt = Number(process.env.SAMEMATH_CUT_MODEL_AT || 0);
  let stallAt = Number(process.env.SAMEMATH_STALL_MODEL_AT || 0);
  const changesAtCut = process.env.SAMEMATH_MODEL_CHANGES_AT_CUT === '1';
  let version = 1;
  const server = createServer((req, res) => {
    // A request line that is no path (`//`, `/%`) is refused, never thrown: a throw here would
    // end the server.
    let path;
    try {
      path = join(root, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    } catch {
      res.writeHead(400, { 'Content-Type': 'text/plain' }).end('bad path\n');
      return;
    }
    // Only what lies under root (`/..%2fweb-opt/x` is root's sibling `web-opt`, not in root).
    const inside = relative(root, path);
    if (inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) {
      res.writeHead(403).end();
      return;
    }
    let st;
    try {
      st = statSync(path);
      if (st.isDirectory()) {
        path = join(path, 'index.html');
        st = statSync(path);
      }
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}-v${version}"`;
    const headers = {
      'Content-Type': TYPES[extname(path)] || 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-cache',
      ETag: etag,
    };
    const ifRange = req.headers['if-range'];
    const range = (!ifRange || ifRange === etag) && /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), st.size - 1) : st.size - 1;
      if (start >= st.size || start > end) {
        res.writeHead(416, { 'Content-Range': `bytes */${st.size}` }).end();
        return;
      }
      res.writeHead(206, {
        ...headers,
        'Content-Range': `bytes ${start}-${end}/${st.size}`,
        'Content-Length': end - start + 1,
      });
      if (version > 1 && !ifRange && extname(path) === '.gguf') {
        // The "new version" of the file differs from the old one: every byte flipped.
        const flipped = createReadStream(path, { start, end });
        flipped.on('data', (chunk) => res.write(Buffer.from(chunk.map((b) => b ^ 0xff))));
        flipped.on('end', () => res.end());
        return;
      }
      createReadStream(path, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Length': st.size });
    if (stallAt > 0 && extname(path) === '.gguf') {
      const n = stallAt;
      stallAt = 0;
      createReadStream(path, { start: 0, end: n - 1 }).pipe(res, { end: false });
      return;
    }
    if (cutAt > 0 && extname(path) === '.gguf') {
      const n = cutAt;
      cutAt = 0;
      if (changesAtCut) version += 1;
      const stream = createReadStream(path, { start: 0, end: n - 1 });
      stream.on('end', () => res.destroy());
      stream.pipe(res, { end: false });
      return;
    }
    createReadStream(path).pipe(res);
  });
  return new Promise((ok) => server.listen(port, host, () => ok(server)));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [dir = 'target/web', port = '8080'] = process.argv.slice(2);
  const server = await serve(dir, Number(port));
  console.log(`serving ${dir} on http://127.0.0.1:${server.address().port}/`);
}
