#!/usr/bin/env node
/**
 * oidc-provider.mjs — a real OpenID Connect / OAuth 2.1 authorization server for Warden's tests:
 * panva's oidc-provider (pinned in package.json), configured for Warden as a resource server.
 *
 *   PORT=0 node oidc-provider.mjs   # free port; prints "oidc-provider: listening on http://127.0.0.1:PORT"
 *
 * Loopback only; the issuer is http://127.0.0.1:PORT (no trailing slash). It exits by itself when
 * its stdin closes (the test harness keeps a pipe open and drops it) and on SIGTERM/SIGINT.
 * With stdin at /dev/null it therefore exits at once: keep a pipe (or a terminal) on stdin.
 *
 * What it offers (see crates/warden/tests/support/oidc.rs for the Rust side):
 * - Signing keys made at start: one RS256 and one ES256 key, each with its own kid.
 * - Access tokens for a resource indicator (`resource=http://127.0.0.1...|http://localhost...|urn:...`)
 *   are RFC 9068 JWTs (header typ at+jwt), aud = the resource, scope filtered to
 *   `mcp tools.read tools.write tools.admin`. Without a resource the token is opaque (oidc-provider
 *   never mints a JWT access token without an audience).
 * - Confidential clients alice/alice-secret, bob/bob-secret, warden/warden-secret (client_secret_basic
 *   or client_secret_post): client_credentials, authorization_code, refresh_token; warden also has the
 *   RFC 8693 token-exchange grant. A client_credentials token's sub is the client id.
 * - Test knobs on the token request (form fields next to grant_type):
 *     ttl=SECONDS       access-token lifetime (exp - iat)
 *     amr=a b           the amr array claim
 *     acr=STRING        the acr claim
 *     alg=RS256|ES256   which key signs the token
 *     nbf_offset=SECS   nbf = now + SECS (negative allowed), for not-yet-valid tokens
 *   oidc-provider's `extraParams` only reach the authorization endpoint, so these are read from the
 *   token request body (ctx.oidc.body) in extraTokenClaims / ttl / getResourceServerInfo.
 * - POST /test/rotate: new RS256 + ES256 keys (new kids), old ones leave the JWKS; answers
 *   {"kids":[...]}. GET /test/kids: the current kids. Done by building a new Provider with the new
 *   keys and swapping the HTTP server's handler (clients, grants and sessions live in the shared
 *   in-memory adapter, so they survive).
 * - RFC 8693 token exchange for warden: subject_token (a JWT access token of this provider, checked
 *   against the current keys) + subject_token_type access_token + audience and/or resource
 *   (+ optional scope, a subset of the subject's) -> a JWT with the subject's sub, aud = the target,
 *   act {sub: warden}, client_id warden. A bad subject token is 400 invalid_grant.
 * - Authorization code + PKCE (S256, required) with open dynamic client registration and no human:
 *   GET /interaction/:uid logs in "carol" (amr pwd mfa) and grants the requested scopes and
 *   resources, then oidc-provider redirects back to the client's redirect_uri with the code.
 * - Discovery: /.well-known/openid-configuration and /.well-known/oauth-authorization-server
 *   (oidc-provider serves both), JWKS at /jwks, introspection at /token/introspection.
 */
import crypto from 'node:crypto';
import http from 'node:http';

import { createLocalJWKSet, importJWK, jwtVerify, SignJWT } from 'jose';
import Provider, { errors } from 'oidc-provider';

const SCOPES = ['openid', 'offline_access', 'mcp', 'tools.read', 'tools.write', 'tools.admin'];
const RESOURCE_SCOPE = 'mcp tools.read tools.write tools.admin';
const ALGS = ['RS256', 'ES256'];
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const TEST_USER = 'carol';
const TEST_USER_AMR = ['pwd', 'mfa'];
const DEFAULT_TTL = 3600;
const EXCHANGE_TTL = 300;

const log = (msg) => process.stderr.write(`oidc-provider: ${msg}\n`);

// ---- keys -----------------------------------------------------------------------------------

function makeKeys() {
  const tag = crypto.randomBytes(6).toString('hex');
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const priv = [
    { ...rsa.export({ format: 'jwk' }), kid: `rs256-${tag}`, alg: 'RS256', use: 'sig' },
    { ...ec.export({ format: 'jwk' }), kid: `es256-${tag}`, alg: 'ES256', use: 'sig' },
  ];
  const pub = priv.map(({ kty, n, e, crv, x, y, kid, alg, use }) => (
    kty === 'RSA' ? { kty, n, e, kid, alg, use } : { kty, crv, x, y, kid, alg, use }
  ));
  return { priv, pub, verifySet: createLocalJWKSet({ keys: pub }) };
}

// ---- test knobs read from the token request -------------------------------------------------

function bodyParam(ctx, name) {
  const v = ctx?.oidc?.body?.[name];
  if (Array.isArray(v)) throw new errors.InvalidRequest(`'${name}' must not be repeated`);
  return v === undefined || v === '' ? undefined : String(v);
}

function intParam(ctx, name, { positive }) {
  const v = bodyParam(ctx, name);
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v) || (positive && Number(v) <= 0)) {
    throw new errors.InvalidRequest(`'${name}' must be ${positive ? 'a positive' : 'an'} integer`);
  }
  return Number(v);
}

function algParam(ctx) {
  const alg = bodyParam(ctx, 'alg') ?? 'RS256';
  if (!ALGS.includes(alg)) throw new errors.InvalidRequest(`'alg' must be one of ${ALGS.join(', ')}`);
  return alg;
}

function ttlFor(ctx, token) {
  return intParam(ctx, 'ttl', { positive: true }) ?? token?.resourceServer?.accessTokenTTL ?? DEFAULT_TTL;
}

const epoch = () => Math.floor(Date.now() / 1000);

function allowedTarget(uri) {
  return typeof uri === 'string'
    && (/^http:\/\/(127\.0\.0\.1|localhost)([:/?]|$)/.test(uri) || /^urn:[^#\s]+$/.test(uri));
}

// ---- the provider ---------------------------------------------------------------------------

function staticClient(id) {
  return {
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials', 'authorization_code', 'refresh_token',
      ...(id === 'warden' ? [TOKEN_EXCHANGE] : [])],
    response_types: ['code'],
    redirect_uris: [`http://127.0.0.1/${id}/callback`],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: SCOPES.join(' '),
  };
}

function buildProvider(issuer, keys, cookieKeys) {
  const provider = new Provider(issuer, {
    clients: ['alice', 'bob', 'warden'].map(staticClient),
    jwks: { keys: keys.priv },
    cookies: { keys: cookieKeys },
    scopes: SCOPES,
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'],
    responseTypes: ['code'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // RFC 9449: a token request with a DPoP proof gets a token bound to its key (cnf.jkt).
      dPoP: { enabled: true },
      introspection: { enabled: true, allowedPolicy: async (ctx, client) => client.clientAuthMethod !== 'none' },
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resource) => {
          if (!allowedTarget(resource)) {
            throw new errors.InvalidTarget('this test provider serves http://127.0.0.1..., http://localhost... and urn: resources');
          }
          const info = {
            scope: RESOURCE_SCOPE,
            audience: resource,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: algParam(ctx) } },
          };
          const ttl = intParam(ctx, 'ttl', { positive: true });
          if (ttl !== undefined) info.accessTokenTTL = ttl;
          return info;
        },
      },
    },
    extraTokenClaims: async (ctx, token) => {
      const out = {};
      // An authorization-code (or refresh) token carries the login's amr/acr.
      const source = ctx.oidc.entities.AuthorizationCode ?? ctx.oidc.entities.RefreshToken;
      if (source?.amr) out.amr = source.amr;
      if (source?.acr) out.acr = source.acr;
      const amr = bodyParam(ctx, 'amr');
      if (amr !== undefined) out.amr = amr.split(' ').filter(Boolean);
      const acr = bodyParam(ctx, 'acr');
      if (acr !== undefined) out.acr = acr;
      const nbfOffset = intParam(ctx, 'nbf_offset', { positive: false });
      if (nbfOffset !== undefined) out.nbf = (token.iat ?? epoch()) + nbfOffset;
      return Object.keys(out).length ? out : undefined;
    },
    ttl: {
      AccessToken: (ctx, token) => ttlFor(ctx, token),
      ClientCredentials: (ctx, token) => ttlFor(ctx, token),
      AuthorizationCode: () => 60,
      IdToken: () => 3600,
      RefreshToken: () => 24 * 3600,
      Interaction: () => 600,
      Session: () => 3600,
      Grant: () => 3600,
    },
    interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub }),
    }),
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });

  provider.registerGrantType(
    TOKEN_EXCHANGE,
    (ctx) => tokenExchange(ctx, issuer),
    ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope',
      'actor_token', 'actor_token_type'],
    ['audience', 'resource'],
  );
  provider.on('server_error', (_ctx, err) => log(`server_error: ${err?.stack ?? err}`));
  return provider;
}

// ---- RFC 8693 token exchange ----------------------------------------------------------------

async function tokenExchange(ctx, issuer) {
  const p = ctx.oidc.params;
  if (!p.subject_token) throw new errors.InvalidRequest("missing required parameter 'subject_token'");
  if (p.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
  }
  if (p.requested_token_type !== undefined && p.requested_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE}`);
  }
  if (p.actor_token !== undefined) throw new errors.InvalidRequest('actor_token is not supported');
  const targets = [...new Set([p.audience, p.resource].flat().filter(Boolean))];
  if (!targets.length) throw new errors.InvalidTarget('audience or resource is required');
  for (const t of targets) {
    if (!allowedTarget(t)) throw new errors.InvalidTarget(`unsupported audience/resource ${t}`);
  }

  let subject;
  try {
    ({ payload: subject } = await jwtVerify(p.subject_token, state.keys.verifySet, {
      issuer,
      typ: 'at+jwt',
      algorithms: ALGS,
    }));
  } catch (err) {
    throw new errors.InvalidGrant(`subject_token is invalid: ${err.message}`);
  }
  if (typeof subject.sub !== 'string' || !subject.sub) throw new errors.InvalidGrant('subject_token has no sub');

  const subjectScopes = new Set((subject.scope ?? '').split(' ').filter(Boolean));
  let scope = subject.scope;
  if (p.scope) {
    const asked = p.scope.split(' ').filter(Boolean);
    const extra = asked.filter((s) => !subjectScopes.has(s));
    if (extra.length) throw new errors.InvalidScope(`scope exceeds the subject token's: ${extra.join(' ')}`);
    scope = asked.join(' ');
  }

  const alg = algParam(ctx);
  const jwk = state.keys.priv.find((k) => k.alg === alg);
  const ttl = intParam(ctx, 'ttl', { positive: true }) ?? EXCHANGE_TTL;
  const iat = epoch();
  const act = subject.act ? { sub: ctx.oidc.client.clientId, act: subject.act } : { sub: ctx.oidc.client.clientId };
  const payload = {
    iss: issuer,
    sub: subject.sub,
    aud: targets.length === 1 ? targets[0] : targets,
    iat,
    exp: iat + ttl,
    jti: crypto.randomUUID(),
    client_id: ctx.oidc.client.clientId,
    act,
    ...(scope ? { scope } : undefined),
  };
  const accessToken = await new SignJWT(payload)
    .setProtectedHeader({ alg, kid: jwk.kid, typ: 'at+jwt' })
    .sign(await importJWK(jwk, alg));

  ctx.body = {
    access_token: accessToken,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: ttl,
    ...(scope ? { scope } : undefined),
  };
}

// ---- automatic interaction: log in carol, grant what was asked ------------------------------

async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { params, grantId } = details;
  const grant = (grantId && await provider.Grant.find(grantId))
    ?? new provider.Grant({ accountId: TEST_USER, clientId: params.client_id });
  const scopes = String(params.scope ?? '').split(' ').filter(Boolean);
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  const resourceScopes = scopes.filter((s) => RESOURCE_SCOPE.split(' ').includes(s)).join(' ');
  for (const resource of [params.resource ?? []].flat()) {
    grant.addResourceScope(resource, resourceScopes);
  }
  const savedGrantId = await grant.save();
  await provider.interactionFinished(req, res, {
    login: { accountId: TEST_USER, amr: TEST_USER_AMR },
    consent: { grantId: savedGrantId },
  }, { mergeWithLastSubmission: false });
}

// ---- the HTTP server ------------------------------------------------------------------------

const state = { keys: undefined, provider: undefined, handler: undefined };

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function install(issuer, cookieKeys) {
  state.keys = makeKeys();
  state.provider = buildProvider(issuer, state.keys, cookieKeys);
  state.handler = state.provider.callback();
  return state.keys.pub.map((k) => k.kid);
}

const port = Number(process.env.PORT ?? 0);
const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  if (!state.handler) return json(res, 503, { error: 'starting' });
  if (path === '/test/rotate' && req.method === 'POST') {
    return json(res, 200, { kids: install(state.issuer, state.cookieKeys) });
  }
  if (path === '/test/kids' && req.method === 'GET') {
    return json(res, 200, { kids: state.keys.pub.map((k) => k.kid) });
  }
  if (path.startsWith('/interaction/') && req.method === 'GET') {
    const { provider } = state;
    return interaction(provider, req, res).catch((err) => {
      log(`interaction failed: ${err?.stack ?? err}`);
      if (!res.headersSent) json(res, 400, { error: err?.error ?? 'interaction_failed', error_description: err?.error_description ?? String(err?.message ?? err) });
    });
  }
  return state.handler(req, res);
});

server.listen(port, '127.0.0.1', () => {
  const { port: bound } = server.address();
  state.issuer = `http://127.0.0.1:${bound}`;
  state.cookieKeys = [crypto.randomBytes(32).toString('base64url')];
  install(state.issuer, state.cookieKeys);
  log(`listening on ${state.issuer}`);
});

function shutdown(why) {
  log(`stopping (${why})`);
  server.closeAllConnections?.();
  server.close();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.stdin.on('end', () => shutdown('stdin closed'));
process.stdin.on('close', () => shutdown('stdin closed'));
process.stdin.on('error', () => shutdown('stdin error'));
process.stdin.resume();
