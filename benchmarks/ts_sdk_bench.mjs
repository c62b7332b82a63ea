// The TypeScript side of benchmarks/bench_vs_ts_sdk.py: Chipi's official SDK
// (@chipi-stack/backend, unmodified, public API only) against a `chipi-session localnet`.
//
//   node ts_sdk_bench.mjs <sdk dir> <config json>
//
// config.mode:
//   "import": import the SDK; print {importMs, cpuMs (the process's so far), rssMb}
//   "cold":   import, construct, one executeTransactionWithSession with config.session; print
//             {ok, txHash, cpuMs} as soon as it returns (the parent times spawn -> this line)
//   "seq":    create + register a session, warm up, then for every "run N" line on stdin run N
//             sequential executes and print {n, wallMs, cpuMs}; "quit" ends
//
// Every request goes to loopback only (anything else is refused before it leaves).

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const started = performance.now();
const [sdkDir, configText] = process.argv.slice(2);
const cfg = JSON.parse(configText);
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

const realFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = async (input, init = {}) => {
  const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  if (!LOOPBACK.has(url.hostname)) throw new Error(`blocked non-loopback request to ${url.host}`);
  return realFetch(input, init);
};
for (const level of ["log", "info", "debug"]) console[level] = console.error.bind(console);
process.env.STARKNET_RPC_URL = cfg.rpcUrl; // read when the SDK is imported
delete process.env.STARKSCAN_API_KEY;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const pkgDir = join(sdkDir, "node_modules", "@chipi-stack", "backend");
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const entry = join(pkgDir, pkg.exports["."].import.default);
const { ChipiSDK } = await import(pathToFileURL(entry).href);
const importMs = performance.now() - started;

if (cfg.mode === "import") {
  const cpu = process.cpuUsage();
  out({ importMs, cpuMs: (cpu.user + cpu.system) / 1000, rssMb: process.memoryUsage().rss / 2 ** 20,
        sdkVersion: pkg.version });
  process.exit(0);
}

const sdk = new ChipiSDK({ apiPublicKey: cfg.apiKey, alphaUrl: cfg.restUrl });
const wallet = {
  publicKey: cfg.wallet.publicKey,
  encryptedPrivateKey: cfg.wallet.encryptedPrivateKey,
  walletType: "CHIPI",
};
const calls = [{ contractAddress: cfg.token, entrypoint: "transfer", calldata: [cfg.recipient, "1", "0"] }];

async function execute(session) {
  return sdk.executeTransactionWithSession({
    params: { encryptKey: cfg.pin, wallet, session, calls },
    bearerToken: cfg.bearer,
  });
}

if (cfg.mode === "cold") {
  const txHash = await execute(cfg.session);
  const cpu = process.cpuUsage(); // the whole process, startup included
  out({ ok: true, txHash, inProcessMs: performance.now() - started,
        cpuMs: (cpu.user + cpu.system) / 1000 });
  process.exit(0);
}

// "seq"
const session = sdk.sessions.createSessionKey({ encryptKey: cfg.pin, durationSeconds: 6 * 3600 });
await sdk.sessions.addSessionKeyToContract(
  {
    encryptKey: cfg.pin,
    wallet,
    sessionConfig: {
      sessionPublicKey: session.publicKey,
      validUntil: session.validUntil,
      maxCalls: 1_000_000,
      allowedEntrypoints: [],
    },
  },
  cfg.bearer,
);
for (let i = 0; i < 5; i++) await execute(session); // warm-up: connections, JIT
out({ ready: true });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === "quit") break;
  if (cmd !== "run") continue;
  const n = Number(arg);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await execute(session);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  out({ n, wallMs, cpuMs: (cpu.user + cpu.system) / 1000 });
}
process.exit(0);
