// The benchmark's peer: the lesson's Node.js `cluster` server, serving the same /op1 as a
// scalelab node (same JSON, same x-node/x-worker/x-pid headers), so both are measured with
// the same load tool in the same run.
//
//   PORT=8181 WORKERS=1 node bench/node-cluster.js
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');

const port = Number(process.env.PORT || 8181);
const workers = Number(process.env.WORKERS || 1);
const name = process.env.NODE_NAME || 'nodejs-1';

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (w, code, signal) => {
    if (!w.exitedAfterDisconnect) console.error(`worker ${w.id} exited (${signal || code})`);
  });
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const worker = String(cluster.worker.id);
  const pid = String(process.pid);
  http.createServer((req, res) => {
    const headers = { 'content-type': 'application/json', 'x-node': name, 'x-worker': worker, 'x-pid': pid };
    if (req.url === '/op1' || req.url === '/health') {
      res.writeHead(200, headers);
      res.end(JSON.stringify({ node: name, worker: Number(worker), pid: process.pid }));
    } else {
      res.writeHead(404, headers);
      res.end('{"error":"not found"}');
    }
  }).listen(port, '127.0.0.1');
}
