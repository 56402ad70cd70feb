// Test helper: preload (`node -r ./bind-localhost.cjs ...`) that makes any net/http server which
// calls listen(port[, cb]) without a host bind 127.0.0.1 instead of all interfaces.
// Needed because server-everything's streamableHttp mode calls app.listen(PORT) with no host.
"use strict";
const net = require("node:net");
const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listen(...args) {
  const portOnly = typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0]));
  if (portOnly && typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  return originalListen.apply(this, args);
};
