#!/usr/bin/env node
/**
 * everything-loopback.mjs — runs @modelcontextprotocol/server-everything bound to 127.0.0.1 only.
 *
 * server-everything's HTTP modes call `app.listen(PORT)` with no host, i.e. they listen on ALL
 * interfaces, and it has no host env var or flag. This wrapper makes any listen() without a host
 * use 127.0.0.1, reports the bound address on stderr, then starts server-everything unchanged:
 *
 *   PORT=3001 node everything-loopback.mjs streamableHttp   # http://127.0.0.1:3001/mcp
 *   PORT=0    node everything-loopback.mjs streamableHttp   # free port, see "listening on" line
 *             node everything-loopback.mjs stdio            # stdio (no socket; same as upstream)
 */
import net from 'node:net';

const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  const [first, second] = args;
  if (first !== null && typeof first === 'object') {
    if (first.host === undefined && first.path === undefined) args[0] = { ...first, host: '127.0.0.1' };
  } else if ((typeof first === 'number' || /^\d+$/.test(String(first))) && typeof second !== 'string') {
    args.splice(1, 0, '127.0.0.1');
  }
  this.once('listening', () => {
    const a = this.address();
    console.error(`everything-loopback: listening on http://${a.address}:${a.port}/mcp`);
  });
  return originalListen.apply(this, args);
};

await import('@modelcontextprotocol/server-everything/dist/index.js');
