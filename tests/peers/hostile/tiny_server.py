#!/usr/bin/env python3
"""A tiny stdio MCP server for Warden's supervision, wrapper and multi-upstream tests (written here,
no dependencies). It is deliberately small and sometimes hostile.

    tiny_server.py --tools echo,add [--name NAME] [--crash-on TOOL] [--stderr-hello] [--exit-after-init]
                   [--stateless]

- `initialize` → a 2025-11-25 result with serverInfo NAME; `tools/list` → the named tools;
  `tools/call` → text "<NAME>:<tool>:<arguments as JSON>" (tool `env`: the sorted names of the
  variables in its environment); `ping` → {}.
- `--crash-on TOOL`: calling TOOL makes the process exit(3) without answering.
- `--stderr-hello`: writes "tiny-server stderr hello" to stderr at start (stderr passthrough tests).
- `--exit-after-init`: exits right after answering initialize (restart tests).
- `--stateless`: also answers 2026-07-28 `server/discover`.
- tool `huge`: answers with one line of about `arguments.bytes` bytes (default 100000).
- tool `slow`: sends one `notifications/progress` for the request's progressToken and never
  answers (cancellation tests: the `notifications/cancelled` it then receives is in $TINY_LOG).
It records every line it receives in $TINY_LOG (one JSON line each) when that variable is set.
"""
import json
import os
import sys


def main() -> None:
    args = sys.argv[1:]
    opt = lambda k, d=None: args[args.index(k) + 1] if k in args else d
    tools = [t for t in (opt("--tools", "echo") or "").split(",") if t]
    name = opt("--name", "tiny")
    crash_on = opt("--crash-on")
    log = os.environ.get("TINY_LOG")
    if "--stderr-hello" in args:
        print("tiny-server stderr hello", file=sys.stderr, flush=True)
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
        if method == "server/discover" and "--stateless" in args:
            result = {"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}, "serverInfo": {"name": name, "version": "1"}}
        elif method == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": name, "version": "1"}}
        elif method == "tools/list":
            result = {"tools": [{"name": t, "description": f"{t} from {name}", "inputSchema": {"type": "object"}} for t in tools]}
        elif method == "tools/call":
            tool = params.get("name")
            if tool == crash_on:
                sys.exit(3)
            if tool not in tools:
                reply = {"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": f"unknown tool {tool}"}}
                print(json.dumps(reply), flush=True)
                continue
            if tool == "slow":
                token = (params.get("_meta") or {}).get("progressToken")
                note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}}
                print(json.dumps(note), flush=True)
                continue
            if tool == "huge":
                # One answer line of `bytes` bytes (oversize-line tests).
                n = int((params.get("arguments") or {}).get("bytes", 100000))
                print(json.dumps({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "h" * n}]}}), flush=True)
                continue
            if tool == "env":
                text = json.dumps(sorted(os.environ))
            else:
                text = f"{name}:{tool}:{json.dumps(params.get('arguments', {}), sort_keys=True)}"
            result = {"content": [{"type": "text", "text": text}]}
        elif method == "ping":
            result = {}
        else:
            reply = {"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "Method not found"}}
            print(json.dumps(reply), flush=True)
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": mid, "result": result}), flush=True)
        if method == "initialize" and "--exit-after-init" in args:
            sys.exit(0)


if __name__ == "__main__":
    main()
