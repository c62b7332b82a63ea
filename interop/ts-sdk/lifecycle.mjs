// A full session lifecycle with Chipi's official TypeScript SDK (@chipi-stack/backend, used
// unmodified, public API only) against `chipi-session localnet`:
//
//   createSessionKey -> addSessionKeyToContract -> executeTransactionWithSession (token transfer)
//   -> revokeSessionKey -> executeTransactionWithSession again, which must be refused;
//   then a second, short session: createSessionKey (60 s) -> addSessionKeyToContract ->
//   devnet_increaseTime (through the npm starknet-devnet package's DevnetProvider) past its
//   validUntil -> executeTransactionWithSession, which the chain must refuse as expired.
//
// Usage:
//   chipi-session localnet --port 0 --json > localnet.json &   # first line = the banner as JSON
//   node lifecycle.mjs localnet.json
//
// The banner can also come from $CHIPI_LOCALNET_JSON (a file path), or from single variables:
// CHIPI_ALPHA_URL, STARKNET_RPC_URL, CHIPI_API_KEY, CHIPI_WALLET_ADDRESS,
// CHIPI_WALLET_ENCRYPTED_KEY, CHIPI_PIN, CHIPI_TOKEN. Optional: CHIPI_BEARER_TOKEN (default
// "interop-bearer-token"), CHIPI_TRANSFER_AMOUNT (base units, default 1500000 = 1.5 tokens),
// LIFECYCLE_TIMEOUT_MS (default 60000).
//
// Prints one JSON line ({"ok": true, ...} or {"ok": false, "step": ..., "error": ...}) and exits
// 0 on success, 1 if a step failed, 2 on bad configuration, 3 on the overall timeout.
// Every HTTP request the SDK makes is checked to go to a loopback host (anything else is refused
// before it leaves) and recorded in "traffic". The harness's own balance / session-state reads
// are plain JSON-RPC calls to localnet, outside the SDK and not recorded.

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

const SDK_PACKAGE = "@chipi-stack/backend";
// sn_keccak selectors (constants, so the harness needs nothing but the SDK)
const SELECTOR = {
  transfer: "0x83afd3f4caedc6eebf44246fe54e38c95e3179a5ec9ea81740eca5b482d12e",
  balance_of: "0x35a73cd311a05d46deda634c5ee045db92f811b4e74bca4437fcb5302b7af33",
  get_session_data: "0x22ab76a647098ec53b3907885af4dcbe973ac395dd2baba3e0a3cc74a79a175",
};
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);
const REQUEST_TIMEOUT_MS = 30_000;

const started = Date.now();
const result = { ok: false, step: "config" };
let finished = false;

function finish(code) {
  if (finished) return;
  finished = true;
  result.elapsedMs = Date.now() - started;
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exitCode = code;
}

function describeError(err) {
  if (err === null || typeof err !== "object") return { message: String(err) };
  return {
    errorClass: err.constructor?.name ?? "Error",
    code: err.code ?? null,
    status: err.status ?? null,
    message: String(err.message ?? err).slice(0, 500),
  };
}

const watchdogMs = Number(process.env.LIFECYCLE_TIMEOUT_MS ?? 60_000);
const watchdog = setTimeout(() => {
  result.error = { message: `lifecycle did not finish within ${watchdogMs} ms` };
  finish(3);
  process.exit(3);
}, watchdogMs);
watchdog.unref();

// -- configuration -------------------------------------------------------------------------

function loadConfig() {
  const path = process.argv[2] ?? process.env.CHIPI_LOCALNET_JSON;
  let banner = null;
  if (path) {
    // `chipi-session localnet --json` prints the banner as its first line
    const first = readFileSync(path, "utf8").split("\n").find((line) => line.trim());
    if (!first) throw new Error(`${path}: no banner line`);
    banner = JSON.parse(first);
  }
  const w = banner?.demoWallet ?? {};
  const env = process.env;
  const bannerToken = banner?.bearerToken;
  const cfg = {
    alphaUrl: banner?.restUrl ?? env.CHIPI_ALPHA_URL,
    rpcUrl: banner?.rpcUrl ?? env.STARKNET_RPC_URL,
    apiKey: banner?.apiKey ?? env.CHIPI_API_KEY,
    walletAddress: w.publicKey ?? env.CHIPI_WALLET_ADDRESS,
    encryptedPrivateKey: w.encryptedPrivateKey ?? env.CHIPI_WALLET_ENCRYPTED_KEY,
    pin: w.pin ?? env.CHIPI_PIN,
    token: w.token ?? env.CHIPI_TOKEN,
    // localnet prints "any non-empty token" unless started with --bearer-token
    bearerToken:
      env.CHIPI_BEARER_TOKEN ??
      (bannerToken && bannerToken !== "any non-empty token" ? bannerToken : "interop-bearer-token"),
    amount: BigInt(env.CHIPI_TRANSFER_AMOUNT ?? "1500000"),
  };
  const missing = Object.entries(cfg)
    .filter(([, v]) => v === undefined || v === null || v === "")
    .map(([k]) => k);
  if (missing.length) throw new Error(`missing configuration: ${missing.join(", ")}`);
  for (const url of [cfg.alphaUrl, cfg.rpcUrl]) {
    if (!LOOPBACK.has(new URL(url).hostname)) throw new Error(`not a loopback URL: ${url}`);
  }
  return cfg;
}

let cfg;
try {
  cfg = loadConfig();
} catch (err) {
  result.error = describeError(err);
  finish(2);
  process.exit(2);
}

// -- loopback-only fetch, installed before the SDK (and starknet.js) is imported -------------

const realFetch = globalThis.fetch.bind(globalThis);
const traffic = [];
globalThis.fetch = async (input, init = {}) => {
  const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  const entry = { method: (init.method ?? input.method ?? "GET").toUpperCase(), path: url.pathname };
  if (url.pathname.endsWith("/rpc") && typeof init.body === "string") {
    try {
      entry.rpc = JSON.parse(init.body).method;
    } catch {
      /* not JSON: leave it out */
    }
  }
  traffic.push(entry);
  if (!LOOPBACK.has(url.hostname)) {
    entry.blocked = url.host;
    throw new Error(`blocked non-loopback request to ${url.host}`);
  }
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
  const response = await realFetch(input, { ...init, signal });
  entry.status = response.status;
  return response;
};

// The SDK logs progress with console.log/info/debug; send that to stderr so stdout carries only
// the result line.
for (const level of ["log", "info", "debug"]) console[level] = console.error.bind(console);

// STARKNET_RPC_URL is read when @chipi-stack/shared is first imported (docs/protocols.md)
process.env.STARKNET_RPC_URL = cfg.rpcUrl;
delete process.env.STARKSCAN_API_KEY;
let ChipiSDK, sdkVersion;
try {
  result.step = "import";
  ({ ChipiSDK } = await import(SDK_PACKAGE));
  sdkVersion = JSON.parse(
    readFileSync(new URL(`./node_modules/${SDK_PACKAGE}/package.json`, import.meta.url), "utf8"),
  ).version;
} catch (err) {
  result.error = describeError(err); // e.g. node_modules missing: run `npm ci` here first
  finish(1);
  process.exit(1);
}

// -- harness reads (plain JSON-RPC, not the SDK) ---------------------------------------------

let rpcId = 0;
async function starknetCall(contract, entrySelector, calldata) {
  const response = await realFetch(cfg.rpcUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: ++rpcId,
      method: "starknet_call",
      params: {
        request: { contract_address: contract, entry_point_selector: entrySelector, calldata },
        block_id: "latest",
      },
    }),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const body = await response.json();
  if (body.error) throw new Error(`starknet_call: ${JSON.stringify(body.error)}`);
  return body.result;
}

async function balanceOf(owner) {
  const [low, high] = await starknetCall(cfg.token, SELECTOR.balance_of, [owner]);
  return ((BigInt(high) << 128n) + BigInt(low)).toString();
}

async function balances(recipient) {
  return { wallet: await balanceOf(cfg.walletAddress), recipient: await balanceOf(recipient) };
}

async function rawSessionData(sessionPublicKey) {
  return starknetCall(cfg.walletAddress, SELECTOR.get_session_data, [sessionPublicKey]);
}

// sdk.sessions.getSessionData is recorded, never relied on: 14.4.0 misreads the chain's real
// layout [valid_until, max_calls, calls_used, allowed_len] (localnet --legacy-session-layout
// answers in the layout it expects). "matchesChain" compares it with what we know is stored.
async function sdkSessionData(sdk, sessionPublicKey, expected) {
  const raw = await rawSessionData(sessionPublicKey);
  try {
    const got = await sdk.sessions.getSessionData({
      walletAddress: cfg.walletAddress,
      sessionPublicKey,
    });
    const matchesChain =
      got.isActive === expected.isActive &&
      got.validUntil === expected.validUntil &&
      got.remainingCalls === expected.remainingCalls;
    return { raw, sdk: got, expected, matchesChain };
  } catch (err) {
    return { raw, expected, error: describeError(err), matchesChain: false };
  }
}

// -- the lifecycle ---------------------------------------------------------------------------

try {
  result.step = "construct";
  result.sdk = { name: SDK_PACKAGE, version: sdkVersion };
  result.node = process.version;
  const sdk = new ChipiSDK({ apiPublicKey: cfg.apiKey, alphaUrl: cfg.alphaUrl });
  const wallet = {
    publicKey: cfg.walletAddress,
    encryptedPrivateKey: cfg.encryptedPrivateKey,
    walletType: "CHIPI",
  };
  const recipient = "0x" + randomBytes(30).toString("hex");
  const transfer = {
    contractAddress: cfg.token,
    entrypoint: "transfer",
    calldata: [recipient, cfg.amount.toString(), "0"],
  };
  Object.assign(result, {
    wallet: cfg.walletAddress,
    token: cfg.token,
    recipient,
    amount: cfg.amount.toString(),
  });
  const balancesSeen = { before: await balances(recipient) };
  const sessionState = {};
  const sdkGetSessionData = {};
  result.balances = balancesSeen;
  result.sessionData = sessionState;
  result.sdkGetSessionData = sdkGetSessionData;
  result.txHashes = {};

  result.step = "createSessionKey";
  const session = sdk.sessions.createSessionKey({ encryptKey: cfg.pin, durationSeconds: 3600 });
  result.session = {
    publicKey: session.publicKey,
    validUntil: session.validUntil,
    encryptedPrivateKeyIsCryptoJs: session.encryptedPrivateKey.startsWith("U2FsdGVkX1"),
  };
  sessionState.beforeRegister = await rawSessionData(session.publicKey);

  result.step = "addSessionKeyToContract";
  result.txHashes.register = await sdk.sessions.addSessionKeyToContract(
    {
      encryptKey: cfg.pin,
      wallet,
      sessionConfig: {
        sessionPublicKey: session.publicKey,
        validUntil: session.validUntil,
        maxCalls: 5,
        // a selector, not the name: 14.4.0 sends names as short strings (docs/wire-protocol.md)
        allowedEntrypoints: [SELECTOR.transfer],
      },
    },
    cfg.bearerToken,
  );
  sdkGetSessionData.afterRegister = await sdkSessionData(sdk, session.publicKey, {
    isActive: true,
    validUntil: session.validUntil,
    remainingCalls: 5,
  });
  sessionState.afterRegister = sdkGetSessionData.afterRegister.raw;

  result.step = "executeTransactionWithSession";
  result.txHashes.execute = await sdk.executeTransactionWithSession({
    params: { encryptKey: cfg.pin, wallet, session, calls: [transfer] },
    bearerToken: cfg.bearerToken,
  });
  balancesSeen.afterExecute = await balances(recipient);
  sessionState.afterExecute = await rawSessionData(session.publicKey);

  result.step = "revokeSessionKey";
  result.txHashes.revoke = await sdk.sessions.revokeSessionKey(
    { encryptKey: cfg.pin, wallet, sessionPublicKey: session.publicKey },
    cfg.bearerToken,
  );
  sdkGetSessionData.afterRevoke = await sdkSessionData(sdk, session.publicKey, {
    isActive: false,
    validUntil: 0,
    remainingCalls: 0,
  });
  sessionState.afterRevoke = sdkGetSessionData.afterRevoke.raw;

  result.step = "executeAfterRevoke";
  try {
    const hash = await sdk.executeTransactionWithSession({
      params: { encryptKey: cfg.pin, wallet, session, calls: [transfer] },
      bearerToken: cfg.bearerToken,
    });
    result.revokedExecute = { refused: false, transactionHash: hash };
  } catch (err) {
    result.revokedExecute = { refused: true, ...describeError(err) };
  }
  balancesSeen.afterRevokedExecute = await balances(recipient);

  result.step = "expiry";
  const { DevnetProvider } = await import("starknet-devnet");
  const devnet = new DevnetProvider({ url: cfg.rpcUrl, timeout: REQUEST_TIMEOUT_MS });
  const short = sdk.sessions.createSessionKey({ encryptKey: cfg.pin, durationSeconds: 60 });
  result.txHashes.registerShort = await sdk.sessions.addSessionKeyToContract(
    {
      encryptKey: cfg.pin,
      wallet,
      sessionConfig: {
        sessionPublicKey: short.publicKey,
        validUntil: short.validUntil,
        maxCalls: 5,
        allowedEntrypoints: [SELECTOR.transfer],
      },
    },
    cfg.bearerToken,
  );
  const moved = await devnet.increaseTime(120);
  result.expiry = { validUntil: short.validUntil, chainTimeAfter: moved.time };
  try {
    const hash = await sdk.executeTransactionWithSession({
      params: { encryptKey: cfg.pin, wallet, session: short, calls: [transfer] },
      bearerToken: cfg.bearerToken,
    });
    result.expiredExecute = { refused: false, transactionHash: hash };
  } catch (err) {
    result.expiredExecute = { refused: true, ...describeError(err) };
  }
  balancesSeen.afterExpiredExecute = await balances(recipient);

  result.step = "check";
  const problems = [];
  const hex = /^0x[0-9a-f]+$/i;
  for (const [name, hash] of Object.entries(result.txHashes)) {
    if (typeof hash !== "string" || !hex.test(hash)) problems.push(`${name} hash ${hash}`);
  }
  const amount = cfg.amount;
  const before = balancesSeen.before;
  const mid = balancesSeen.afterExecute;
  const after = balancesSeen.afterRevokedExecute;
  if (BigInt(before.wallet) - BigInt(mid.wallet) !== amount) problems.push("wallet not debited");
  if (BigInt(mid.recipient) - BigInt(before.recipient) !== amount) problems.push("recipient not credited");
  if (after.wallet !== mid.wallet || after.recipient !== mid.recipient) {
    problems.push("balances moved after revoke");
  }
  const revoked = result.revokedExecute;
  if (
    !revoked.refused ||
    revoked.errorClass !== "ChipiApiError" ||
    !["SESSION_NOT_REGISTERED", "SESSION_REVOKED"].includes(revoked.code)
  ) {
    problems.push(`execute after revoke: ${JSON.stringify(revoked)}`);
  }
  const expired = result.expiredExecute;
  if (!expired.refused || expired.code !== "SESSION_EXPIRED") {
    problems.push(`execute after devnet_increaseTime: ${JSON.stringify(expired)}`);
  }
  if (result.expiry.chainTimeAfter <= short.validUntil) problems.push("time did not move");
  if (balancesSeen.afterExpiredExecute.recipient !== mid.recipient) {
    problems.push("balances moved after expiry");
  }
  if (traffic.some((t) => t.blocked)) problems.push("the SDK tried to leave loopback");
  result.traffic = traffic;
  if (problems.length) {
    result.error = { message: problems.join("; ") };
    finish(1);
  } else {
    result.ok = true;
    result.step = "done";
    finish(0);
  }
} catch (err) {
  result.error = describeError(err);
  result.traffic = traffic;
  finish(1);
} finally {
  clearTimeout(watchdog);
}
