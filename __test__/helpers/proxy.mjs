// An HTTP proxy in front of the local cloud, for what a real server rarely does on demand:
// answering one route differently, delaying it, or delivering a response body one byte at a
// time. WebSocket upgrades (the realtime socket) pass through untouched.
import { createServer, request } from 'node:http';
import { connect } from 'node:net';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';

/**
 * @param {string} target the cloud's URL
 * @param {{ intercept?: (req) => ({status, headers, body} | null), interceptBody?: (req, body: string) => ({status, headers, body} | null), delayMs?: (req) => number, byteByByte?: boolean }} options
 *   `interceptBody` reads the request body first and may answer from it; `delayMs` holds a
 *   request that many milliseconds before it is forwarded.
 */
export async function startProxy(target, { intercept = () => null, interceptBody = null, delayMs = () => 0, byteByByte = false } = {}) {
  const upstream = new URL(target);
  // bytes: response bytes taken from the cloud, which a client's backpressure holds back.
  const stats = { requests: 0, closedEarly: 0, bytes: 0 };
  const server = createServer(async (req, res) => {
    stats.requests++;
    const canned = intercept(req);
    if (canned) {
      req.resume();
      res.writeHead(canned.status, canned.headers ?? {});
      return res.end(canned.body ?? '');
    }
    const delay = delayMs(req);
    if (delay > 0) await sleep(delay);
    let buffered = null;
    if (interceptBody) {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      buffered = Buffer.concat(chunks);
      const answer = interceptBody(req, buffered.toString('utf8'));
      if (answer) {
        res.writeHead(answer.status, answer.headers ?? {});
        return res.end(answer.body ?? '');
      }
    }
    const out = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      async (up) => {
        res.writeHead(up.statusCode, up.headers);
        up.on('data', (chunk) => (stats.bytes += chunk.length));
        if (!byteByByte) return up.pipe(res);
        res.socket?.setNoDelay(true);
        for await (const chunk of up) {
          for (const byte of chunk) {
            if (res.destroyed) return;
            res.write(Buffer.of(byte));
            await tick();
          }
        }
        res.end();
      },
    );
    res.on('close', () => {
      if (!res.writableFinished) stats.closedEarly++;
      out.destroy();
    });
    out.on('error', () => res.destroy());
    if (buffered) out.end(buffered);
    else req.pipe(out);
  });
  // Upgraded sockets are the server's no longer: closed by hand with it.
  const tunnels = new Set();
  server.on('upgrade', (req, socket, head) => {
    const up = connect(Number(upstream.port), upstream.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    tunnels.add(socket).add(up);
    const end = () => {
      socket.destroy();
      up.destroy();
      tunnels.delete(socket);
      tunnels.delete(up);
    };
    for (const s of [socket, up]) s.on('error', end).on('close', end);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stats,
    close: () => {
      for (const s of tunnels) s.destroy();
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
