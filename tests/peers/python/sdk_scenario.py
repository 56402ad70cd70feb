#!/usr/bin/env python3
"""Warden test peer: drive an MCP server (built for server-everything) with the official Python SDK.

Usage:
    sdk_scenario.py --url http://127.0.0.1:PORT/mcp [--header 'Name: value' ...] [--mode auto|legacy|VERSION]
    sdk_scenario.py --stdio -- CMD ARGS...

Prints ONE normalized JSON transcript (sorted keys) on stdout, so that two runs (directly against the
server, or through Warden) can be compared with `diff`.  Exit status: 0 = transcript printed,
1 = connection failure or unexpected exception (message on stderr), 2 = bad command line.
The whole run is bounded by RUN_TIMEOUT_S (plus a hard watchdog), so it never hangs.

Normalizations (applied by `norm_text` / `norm_value`, each marked N1..N7 below):
  N1  UUIDs (random ids from the server: session ids, elicitation ids)       -> "<UUID>"
  N2  "created at <time of day>" in server-everything dynamic resources      -> "created at <TIME>"
  N3  "for session <id>" in the toggle-* tools' replies (a UUID over HTTP,
      "undefined" over stdio, where the server has no session id)           -> "for session <SESSION>"
  N4  get-env's text (a dump of the server process environment)             -> "<ENV_DUMP is_json_object=True>"
      is replaced wholesale; the env differs per host and per transport (the SDK's stdio client
      passes only a minimal env), so not even the key count is kept.
  N5  base64 blobs are decoded; if the decoded text contains N2 timestamps it is normalized and
      stored as "<BASE64 TEXT: ...>"; otherwise kept verbatim (or hashed per N6).
  N6  Strings longer than LONG_TEXT chars (docs, images, instructions) -> "<sha256=HEX len=N>":
      not per-run variance, only to keep the transcript readable; equality is still checked.
  N7  Server->client notifications that are timing dependent (simulated random-level logs,
      roots sync at +350 ms) are not recorded; only deterministic facts about them are.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import threading
import traceback
import warnings
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

# server-everything is a 2025-11-25 server: subscribe/logging/roots are deprecated only for 2026-07-28.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

RUN_TIMEOUT_S = 50.0      # whole scenario (anyio.fail_after)
WATCHDOG_S = 58.0         # hard exit if even the cleanup hangs
REQUEST_TIMEOUT_S = 20.0  # per request (Client.read_timeout_seconds)
EVENT_WAIT_S = 3.0        # wait for an asynchronous notification
LONG_TEXT = 1024

# ---------------------------------------------------------------- normalization
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
TIME_RE = re.compile(r"(created at )\d{1,2}:\d{2}:\d{2}(?:[\s\u202f\u00a0]?[AaPp]\.?[Mm]\.?)?")
SESSION_RE = re.compile(r"(for session )\S+")


def norm_text(s: str) -> str:
    s = UUID_RE.sub("<UUID>", s)  # N1
    s = TIME_RE.sub(r"\1<TIME>", s)  # N2
    s = SESSION_RE.sub(r"\1<SESSION>", s)  # N3
    if len(s) > LONG_TEXT:  # N6
        s = f"<sha256={hashlib.sha256(s.encode()).hexdigest()} len={len(s)}>"
    return s


def norm_blob(b64: str) -> str:
    try:  # N5
        decoded = base64.b64decode(b64, validate=True).decode("utf-8")
        if TIME_RE.search(decoded):
            return f"<BASE64 TEXT: {norm_text(decoded)}>"
    except (ValueError, UnicodeDecodeError):
        pass
    return norm_text(b64)


def norm_value(v: Any, key: str = "") -> Any:
    if isinstance(v, dict):
        return {k: norm_value(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [norm_value(x, key) for x in v]
    if isinstance(v, str):
        return norm_blob(v) if key in ("blob", "data") else norm_text(v)
    return v


def dump(model: Any) -> Any:
    """Wire-shaped (camelCase) JSON of an SDK model."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def error_record(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, MCPError):
        return {"error": {"code": exc.code, "message": exc.message, "data": exc.error.data}}
    return {"exception": type(exc).__name__, "message": str(exc)}


# ---------------------------------------------------------------- call plans
# Arguments for every tool server-everything 2026.8.31 lists to this client (sampling, elicitation
# and roots declared; no tasks).  Each entry: list of (arguments, options).
GZIP_DATA = "data:text/plain;base64," + base64.b64encode(b"Warden gzip test payload\n").decode()
URL = "https://example.com/warden-consent"
TOOL_PLAN: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {
    "echo": [({"message": "hello from warden"}, {})],
    "get-annotated-message": [({"messageType": "error", "includeImage": True}, {}),
                              ({"messageType": "success"}, {}), ({"messageType": "debug"}, {})],
    "get-env": [({}, {"env_dump": True})],
    "get-resource-links": [({"count": 3}, {})],
    "get-resource-reference": [({"resourceType": "Text", "resourceId": 2}, {}),
                               ({"resourceType": "Blob", "resourceId": 1}, {})],
    "get-roots-list": [({}, {})],
    "get-structured-content": [({"location": "Chicago"}, {})],
    "get-sum": [({"a": 19, "b": 23}, {})],
    "get-tiny-image": [({}, {})],
    # Default data URL is on GitHub (no network here): use a data: URI; then read the linked resource.
    "gzip-file-as-resource": [({"name": "warden.txt.gz", "data": GZIP_DATA, "outputType": "resource"}, {}),
                              ({"name": "warden.txt.gz", "data": GZIP_DATA, "outputType": "resourceLink"},
                               {"read_links": True})],
    # Start, then stop (the replies name the session: N3).  Random-level log stream: N7.
    "toggle-simulated-logging": [({}, {}), ({}, {})],
    # Start/stop are driven by the "subscriptions" section (needs a subscribed resource).
    "toggle-subscriber-updates": [],
    "trigger-elicitation-request": [({}, {})],
    "trigger-long-running-operation": [({"duration": 2, "steps": 4}, {"progress": True})],
    "trigger-sampling-request": [({"prompt": "Say hello to Warden", "maxTokens": 64}, {})],
    # Request path, then error path (-32042 URLElicitationRequired), then its retry (proceeds).
    "trigger-url-elicitation": [({"url": URL, "elicitationId": "warden-elicit-1"}, {}),
                                ({"url": URL, "elicitationId": "warden-elicit-2", "errorPath": True}, {}),
                                ({"url": URL, "elicitationId": "warden-elicit-2", "errorPath": True}, {})],
    # taskSupport "required": needs a task-augmented tools/call (SEP-1686), which the Python SDK
    # 2.3.0 client cannot send.  Called plainly anyway so the server's refusal is recorded.
    "simulate-research-query": [({"topic": "gateways"}, {"note": "taskSupport=required; the Python SDK "
                                 "client has no tasks support, so the server refuses the plain call"})],
}
# Tools server-everything registers only for clients declaring capabilities this SDK lacks.
EXPECTED_ABSENT = {
    "trigger-sampling-request-async": "registered only if the client declares tasks.requests.sampling",
    "trigger-elicitation-request-async": "registered only if the client declares tasks.requests.elicitation",
}
PROMPT_ARGS: dict[str, dict[str, str]] = {
    "simple-prompt": {},
    "args-prompt": {"city": "Lyon", "state": "Rhone"},
    "completable-prompt": {"department": "Engineering", "name": "Alice"},
    "resource-prompt": {"resourceType": "Text", "resourceId": "1"},
}
PROMPT_COMPLETIONS: list[tuple[str, dict[str, str], dict[str, str] | None]] = [
    ("completable-prompt", {"name": "department", "value": "S"}, None),
    ("completable-prompt", {"name": "name", "value": ""}, {"department": "Engineering"}),
    ("resource-prompt", {"name": "resourceType", "value": "B"}, None),
]
ROOTS = [types.Root(uri="file:///tmp/warden-root", name="warden-root")]


# ---------------------------------------------------------------- client callbacks
class Peer:
    """Deterministic answers to server-initiated requests, plus a log of what was asked."""

    def __init__(self) -> None:
        self.server_requests: list[dict[str, Any]] = []
        self.roots_requests = 0  # N7: timing dependent, not recorded
        self.updated_uris: list[str] = []
        self.log_messages = 0  # N7: simulated logs are random-level and timing dependent, not recorded
        self.updated_event = anyio.Event()

    async def sampling(self, ctx: ClientRequestContext, params: types.CreateMessageRequestParams):
        self.server_requests.append({"method": "sampling/createMessage", "params": dump(params)})
        return types.CreateMessageResult(
            role="assistant", model="warden-deterministic-model", stop_reason="endTurn",
            content=types.TextContent(type="text", text=f"Deterministic reply to {len(params.messages)} message(s)"))

    async def elicitation(self, ctx: ClientRequestContext, params: types.ElicitRequestParams):
        self.server_requests.append({"method": "elicitation/create", "params": dump(params)})
        if isinstance(params, types.ElicitRequestURLParams):
            return types.ElicitResult(action="accept")
        return types.ElicitResult(action="accept", content=answer_form(dump(params).get("requestedSchema", {})))

    async def roots(self, ctx: ClientRequestContext):
        self.roots_requests += 1
        return types.ListRootsResult(roots=ROOTS)

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        self.log_messages += 1

    async def messages(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.updated_uris.append(message.params.uri)
            self.updated_event.set()


def answer_form(schema: dict[str, Any]) -> dict[str, Any]:
    """A valid, deterministic answer for a form elicitation schema."""
    out: dict[str, Any] = {}
    for name, prop in sorted(schema.get("properties", {}).items()):
        kind, fmt = prop.get("type"), prop.get("format")
        if "default" in prop:
            out[name] = prop["default"]
        elif "enum" in prop:
            out[name] = prop["enum"][0]
        elif "oneOf" in prop:
            out[name] = prop["oneOf"][0]["const"]
        elif kind == "string":
            out[name] = {"email": "tester@example.com", "uri": "https://example.com/tester",
                         "date": "2000-01-02", "date-time": "2000-01-02T03:04:05Z"}.get(fmt, "Warden Tester")
        elif kind == "boolean":
            out[name] = True
        elif kind in ("integer", "number"):
            out[name] = prop.get("minimum", 7)
        elif kind == "array":
            items = prop.get("items", {})
            choices = items.get("enum") or [c["const"] for c in items.get("anyOf", [])]
            out[name] = choices[:1]
    return out


# ---------------------------------------------------------------- scenario
async def paged(fetch, attr: str) -> list[Any]:
    items, cursor = [], None
    for _ in range(50):
        page = await fetch(cursor=cursor)
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            break
    return items


async def guarded(coro) -> dict[str, Any]:
    try:
        return {"result": dump(await coro)}
    except MCPError as exc:
        return error_record(exc)


async def call_tool(client: Client, peer: Peer, name: str, args: dict[str, Any], opts: dict[str, Any]):
    rec: dict[str, Any] = {"tool": name, "arguments": args}
    if "note" in opts:
        rec["note"] = opts["note"]
    progress: list[dict[str, Any]] = []

    async def on_progress(p: float, total: float | None, msg: str | None) -> None:
        progress.append({"progress": p, "total": total, "message": msg})

    asked = len(peer.server_requests)
    rec.update(await guarded(client.call_tool(
        name, args, progress_callback=on_progress if opts.get("progress") else None)))
    rec["server_requests"] = peer.server_requests[asked:]
    if opts.get("progress"):
        rec["progress_notifications"] = {"count": len(progress), "values": progress}
    if opts.get("env_dump") and "result" in rec:  # N4
        for block in rec["result"].get("content", []):
            if block.get("type") == "text":
                block["text"] = f"<ENV_DUMP is_json_object={isinstance(json.loads(block['text']), dict)}>"
    if opts.get("read_links") and "result" in rec:
        rec["linked_reads"] = [{"uri": b["uri"], **await guarded(client.read_resource(b["uri"]))}
                               for b in rec["result"].get("content", []) if b.get("type") == "resource_link"]
    return rec


async def cancellation(client: Client) -> dict[str, Any]:
    """Start a 5-step long-running call, cancel it right after the first progress notification."""
    progress: list[float] = []
    first = anyio.Event()

    async def on_progress(p: float, total: float | None, msg: str | None) -> None:
        progress.append(p)
        first.set()

    rec: dict[str, Any] = {"tool": "trigger-long-running-operation", "arguments": {"duration": 5, "steps": 5}}
    scope = anyio.CancelScope()

    async def run() -> None:
        with scope:
            res = await client.call_tool("trigger-long-running-operation", rec["arguments"],
                                         progress_callback=on_progress)
            rec["unexpected_result"] = dump(res)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(10):
            await first.wait()
        scope.cancel()
    rec["outcome"] = "cancelled (call raised no result to the caller)" if scope.cancelled_caught else "completed"
    rec["progress_before_cancel"] = list(progress)
    await anyio.sleep(1.5)  # the server keeps running the tool; no more progress may reach the caller
    rec["progress_after_cancel_1500ms"] = len(progress) - len(rec["progress_before_cancel"])
    rec["session_alive_after_cancel"] = await guarded(client.call_tool("echo", {"message": "after cancel"}))
    return rec


async def subscriptions(client: Client, peer: Peer, uri: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"uri": uri, "subscribe": await guarded(client.subscribe_resource(uri))}
    rec["toggle_on"] = await guarded(client.call_tool("toggle-subscriber-updates", {}))
    with anyio.move_on_after(EVENT_WAIT_S):
        await peer.updated_event.wait()
    rec["updated_notification_received_for_uri"] = uri in peer.updated_uris
    rec["toggle_off"] = await guarded(client.call_tool("toggle-subscriber-updates", {}))
    rec["unsubscribe"] = await guarded(client.unsubscribe_resource(uri))
    return rec


async def scenario(client: Client, peer: Peer) -> dict[str, Any]:
    t: dict[str, Any] = {
        "protocol_version": client.protocol_version,
        "server_info": dump(client.server_info) if client.server_info else None,
        "server_capabilities": dump(client.server_capabilities),
        "instructions": client.instructions,
    }
    # Tools: list, then call every listed tool per plan (unknown tools are recorded, not called).
    tools = sorted(await paged(client.list_tools, "tools"), key=lambda x: x.name)
    t["tools_list"] = [dump(x) for x in tools]
    names = [x.name for x in tools]
    t["tools_expected_absent"] = {n: {"reason": r, "listed": n in names} for n, r in EXPECTED_ABSENT.items()}
    calls, not_called = [], {}
    for name in names:
        if name not in TOOL_PLAN:
            not_called[name] = "no argument plan for this tool (not part of server-everything 2026.8.31)"
        elif not TOOL_PLAN[name]:
            not_called[name] = "exercised in section 'subscriptions'"
        for args, opts in TOOL_PLAN.get(name, []):
            calls.append(await call_tool(client, peer, name, args, opts))
    t["tool_calls"], t["tools_not_called_here"] = calls, not_called
    t["tool_errors"] = [
        {"tool": "no-such-tool", **await guarded(client.call_tool("no-such-tool", {}))},
        {"tool": "get-sum", "arguments": {"a": "x"}, **await guarded(client.call_tool("get-sum", {"a": "x"}))},
    ]
    # Resources and templates.
    resources = sorted(await paged(client.list_resources, "resources"), key=lambda x: x.uri)
    t["resources_list"] = [dump(x) for x in resources]
    t["resource_reads"] = [{"uri": r.uri, **await guarded(client.read_resource(r.uri))} for r in resources]
    templates = sorted(await paged(client.list_resource_templates, "resource_templates"),
                       key=lambda x: x.uri_template)
    t["resource_templates_list"] = [dump(x) for x in templates]
    t["resource_template_reads"] = []
    for tpl in templates:
        uri = tpl.uri_template.replace("{resourceId}", "1")
        comp = await guarded(client.complete(types.ResourceTemplateReference(uri=tpl.uri_template),
                                             {"name": "resourceId", "value": "7"}))
        t["resource_template_reads"].append({"template": tpl.uri_template, "uri": uri, "complete_resourceId_7": comp,
                                             **await guarded(client.read_resource(uri))})
    t["resource_read_unknown"] = await guarded(client.read_resource("demo://resource/does-not-exist"))
    static = [r.uri for r in resources if r.uri.startswith("demo://resource/static/")] or [r.uri for r in resources]
    t["subscriptions"] = await subscriptions(client, peer, static[0]) if static else "no resources to subscribe to"
    # Prompts.
    prompts = sorted(await paged(client.list_prompts, "prompts"), key=lambda x: x.name)
    t["prompts_list"] = [dump(x) for x in prompts]
    t["prompt_gets"] = []
    for p in prompts:
        if p.name not in PROMPT_ARGS:
            t["prompt_gets"].append({"prompt": p.name, "not_called": "no argument plan for this prompt"})
            continue
        t["prompt_gets"].append({"prompt": p.name, "arguments": PROMPT_ARGS[p.name],
                                 **await guarded(client.get_prompt(p.name, PROMPT_ARGS[p.name]))})
    t["prompt_completions"] = [
        {"prompt": name, "argument": arg, "context": ctx,
         **await guarded(client.complete(types.PromptReference(name=name), arg, ctx))}
        for name, arg, ctx in PROMPT_COMPLETIONS]
    t["logging_set_level"] = await guarded(client.set_logging_level("info"))
    t["cancellation"] = await cancellation(client)
    t["summary"] = {
        "tools_listed": len(tools), "tool_calls": len(calls),
        "tool_calls_is_error_or_error": sum(1 for c in calls if "error" in c or c["result"].get("isError")),
        "server_requests_answered": len(peer.server_requests), "resources_listed": len(resources),
        "resource_templates_listed": len(templates), "prompts_listed": len(prompts),
    }
    return t


# ---------------------------------------------------------------- entry point
def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    cmd: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--url", help="Streamable HTTP endpoint")
    group.add_argument("--stdio", action="store_true", help="spawn the server given after --")
    ap.add_argument("--header", action="append", default=[], help="'Name: value', sent on every HTTP request")
    ap.add_argument("--mode", default="auto", help="Client mode: auto (default), legacy, or a modern version")
    ns = ap.parse_args(argv)
    if ns.stdio and not cmd:
        ap.error("--stdio needs a command after --")
    if ns.url and (cmd or not ns.url.startswith(("http://", "https://"))):
        ap.error("--url takes an http(s) URL and no command")
    for h in ns.header:
        if ":" not in h:
            ap.error(f"bad --header {h!r}, expected 'Name: value'")
    return ns, cmd


async def run(ns: argparse.Namespace, cmd: list[str]) -> dict[str, Any]:
    peer = Peer()
    callbacks = dict(sampling_callback=peer.sampling, elicitation_callback=peer.elicitation,
                     list_roots_callback=peer.roots, logging_callback=peer.logging,
                     message_handler=peer.messages, read_timeout_seconds=REQUEST_TIMEOUT_S,
                     client_info=types.Implementation(name="warden-python-sdk-peer", version="1.0.0"),
                     mode=ns.mode)
    with anyio.fail_after(RUN_TIMEOUT_S):
        if ns.stdio:
            server = StdioServerParameters(command=cmd[0], args=cmd[1:])
            async with Client(server, **callbacks) as client:
                transcript = await scenario(client, peer)
            transport = "stdio"
        else:
            headers = dict((k.strip(), v.strip()) for k, v in (h.split(":", 1) for h in ns.header))
            async with httpx2.AsyncClient(headers=headers, follow_redirects=True,
                                          timeout=httpx2.Timeout(REQUEST_TIMEOUT_S, read=30.0)) as http:
                async with Client(streamable_http_client(ns.url, http_client=http), **callbacks) as client:
                    transcript = await scenario(client, peer)
            transport = "streamable-http"
    return {"transport": transport, "client_mode": ns.mode, **norm_value(transcript)}


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaf_exceptions(sub)]
    return [exc]


def main() -> int:
    ns, cmd = parse_args(sys.argv[1:])
    watchdog = threading.Timer(WATCHDOG_S, lambda: (print("sdk_scenario: watchdog timeout", file=sys.stderr),
                                                    os._exit(1)))
    watchdog.daemon = True
    watchdog.start()
    try:
        transcript = anyio.run(run, ns, cmd)
    except BaseException as exc:  # noqa: BLE001 - report anything (incl. exception groups) and fail
        for leaf in leaf_exceptions(exc):
            print(f"sdk_scenario: {type(leaf).__name__}: {leaf}", file=sys.stderr)
        if os.environ.get("SDK_SCENARIO_DEBUG"):
            traceback.print_exc()
        return 1
    json.dump(transcript, sys.stdout, sort_keys=True, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
