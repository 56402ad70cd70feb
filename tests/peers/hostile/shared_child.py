#!/usr/bin/env python3
"""A stdio MCP server for the shared-child attack tests (`crates/warden/tests/hardening_shared_child.rs`),
written here, no dependencies. It speaks both generations and is chatty on purpose: it says things
about requests that a relay must deliver to the right client only.

    shared_child.py [--hold N]

- `server/discover` -> a 2026-07-28 result; `initialize` -> a 2025-11-25 result; `tools/list` -> hold,
  park, echo, crash.
- tool `hold` (arguments {"tag": T}): not answered at once. When N (default 2) are held, for each held
  request in arrival order it writes `notifications/progress` with that request's own progressToken
  (message "progress of T"), then a `notifications/message` log naming no request (data "log of T"),
  and then answers every held request ("done T").
- tool `park`: never answered (cancellation tests).
- tool `echo`: answers at once with its arguments; tool `crash`: exits(3) without answering.
- Every line it receives is appended to $SHARED_LOG (one JSON line each), across restarts.
"""
import json
import os
import sys


def send(msg) -> None:
    print(json.dumps(msg), flush=True)


def main() -> None:
    args = sys.argv[1:]
    hold_n = int(args[args.index("--hold") + 1]) if "--hold" in args else 2
    log = os.environ.get("SHARED_LOG")
    held = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if log:
            with open(log, "a") as f:
                f.write(line + "\n")
        msg = json.loads(line)
        method, mid = msg.get("method"), msg.get("id")
        if mid is None:
            continue
        params = msg.get("params") or {}
        if method == "server/discover":
            result = {"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}, "serverInfo": {"name": "shared", "version": "1"}}
        elif method == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "shared", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": [{"name": t, "inputSchema": {"type": "object"}} for t in ("hold", "park", "echo", "crash")]}
        elif method == "tools/call":
            tool = params.get("name")
            arguments = params.get("arguments") or {}
            if tool == "crash":
                sys.exit(3)
            if tool == "park":
                continue
            if tool == "hold":
                token = (params.get("_meta") or {}).get("progressToken")
                held.append((mid, token, arguments.get("tag")))
                if len(held) < hold_n:
                    continue
                for _, tok, tag in held:
                    send({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": tok, "progress": 1, "message": f"progress of {tag}"}})
                    send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": f"log of {tag}"}})
                for hid, _, tag in held:
                    send({"jsonrpc": "2.0", "id": hid, "result": {"content": [{"type": "text", "text": f"done {tag}"}]}})
                held = []
                continue
            result = {"content": [{"type": "text", "text": json.dumps(arguments, sort_keys=True)}]}
        else:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "Method not found"}})
            continue
        send({"jsonrpc": "2.0", "id": mid, "result": result})


if __name__ == "__main__":
    main()
