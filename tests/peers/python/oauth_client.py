"""The Python SDK's OAuth client, end to end through Warden (issue #14).

    oauth_client.py URL TOOL ARGS_JSON

Connects to URL (Streamable HTTP) with `mcp.client.auth.OAuthClientProvider`: on Warden's 401 it
reads the RFC 9728 protected-resource metadata, the authorization server's metadata, registers
dynamically, runs authorization code + PKCE and retries with the token; then it calls TOOL with
ARGS_JSON. The "browser" is an HTTP client with a cookie jar that follows the authorization
server's redirects (the test provider logs its test user in without a human) until one leads to
the registered redirect URI, whose `code` and `state` are handed back to the SDK. Prints one JSON
line: {"ok": true, "result": ..., "token_aud": ...} or {"ok": false, "error": "..."} (exit 1).
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.parse

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

REDIRECT_URI = "http://127.0.0.1:9/callback"


class Memory(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Browser:
    """Follows the authorization server's redirects to the redirect URI, keeping cookies."""

    def __init__(self) -> None:
        self.result: AuthorizationCodeResult | None = None

    async def redirect(self, authorization_url: str) -> None:
        async with httpx2.AsyncClient(follow_redirects=False, timeout=20) as http:
            url = authorization_url
            for _ in range(10):
                r = await http.get(url)
                location = r.headers.get("location")
                if r.status_code not in (301, 302, 303, 307, 308) or not location:
                    raise RuntimeError(f"authorization stopped at HTTP {r.status_code}: {r.text[:300]}")
                url = urllib.parse.urljoin(url, location)
                if url.startswith(REDIRECT_URI):
                    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
                    if "code" not in q:
                        raise RuntimeError(f"authorization refused: {q}")
                    self.result = AuthorizationCodeResult(
                        code=q["code"][0], state=q.get("state", [None])[0], iss=q.get("iss", [None])[0]
                    )
                    return
            raise RuntimeError("too many redirects")

    async def callback(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("no authorization code")
        return self.result


def audience(token: str) -> object:
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["aud"]
    except Exception:  # an opaque token has no readable audience
        return None


async def main(url: str, tool: str, args: dict) -> dict:
    storage, browser = Memory(), Browser()
    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="warden-python-oauth-peer",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30, read=30)) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                result = await client.call_tool(tool, args)
    token = storage.tokens.access_token if storage.tokens else ""
    return {
        "ok": True,
        "result": result.model_dump(mode="json", exclude_none=True),
        "token_aud": audience(token),
        "scope": storage.tokens.scope if storage.tokens else None,
    }


if __name__ == "__main__":
    try:
        out = anyio.run(main, sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
    except BaseException as e:  # noqa: BLE001 - every failure is reported as one JSON line
        leaves = [e]
        while leaves and isinstance(leaves[0], BaseExceptionGroup):
            leaves = list(leaves[0].exceptions)
        import traceback

        traceback.print_exception(leaves[0], file=sys.stderr)
        print(json.dumps({"ok": False, "error": f"{type(leaves[0]).__name__}: {leaves[0]}"}))
        sys.exit(1)
    print(json.dumps(out))
