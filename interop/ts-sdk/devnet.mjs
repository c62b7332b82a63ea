// The npm `starknet-devnet` package's DevnetProvider (0.7.x, what JS projects use to drive
// starknet-devnet) against `chipi-session localnet`: time, mint, dump / load and restart.
//
// Usage: node devnet.mjs <rpc url> <dump path>
// Prints one JSON line ({"ok": true, ...} or {"ok": false, "step": ..., "error": ...}); exit 0 / 1.

import { DevnetProvider } from "starknet-devnet";

const [rpcUrl, dumpPath] = process.argv.slice(2);
const STRK = "0x4718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d";
const BALANCE_OF = "0x35a73cd311a05d46deda634c5ee045db92f811b4e74bca4437fcb5302b7af33";
const ACCOUNT = "0xc0ffee";
const result = { ok: false, step: "config" };

async function rpc(method, params) {
  const response = await fetch(rpcUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    signal: AbortSignal.timeout(30_000),
  });
  const body = await response.json();
  if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

async function strkBalance() {
  const request = { contract_address: STRK, entry_point_selector: BALANCE_OF, calldata: [ACCOUNT] };
  const [low, high] = await rpc("starknet_call", { request, block_id: "latest" });
  return ((BigInt(high) << 128n) + BigInt(low)).toString();
}

async function chainTime() {
  return (await rpc("starknet_getBlockWithTxHashes", { block_id: "latest" })).timestamp;
}

try {
  if (!rpcUrl || !dumpPath) throw new Error("usage: node devnet.mjs <rpc url> <dump path>");
  const devnet = new DevnetProvider({ url: rpcUrl, timeout: 30_000 });

  result.step = "time";
  const before = await chainTime();
  const increased = await devnet.increaseTime(3600);
  const afterIncrease = await chainTime();
  const set = await devnet.setTime(2_000_000_000, { generateBlock: true });
  const afterSet = await chainTime();
  result.time = { before, increased, afterIncrease, set, afterSet };

  result.step = "mint";
  const minted = await devnet.mint(ACCOUNT, 10n ** 21n, "FRI");
  result.mint = {
    newBalance: minted.new_balance.toString(),
    unit: minted.unit,
    txHash: minted.tx_hash,
    read: await strkBalance(),
  };

  result.step = "dump";
  await devnet.dump(dumpPath);
  await devnet.mint(ACCOUNT, 5n, "FRI");
  result.dump = { afterMoreMint: await strkBalance() };

  result.step = "load";
  await devnet.load(dumpPath);
  result.load = { balance: await strkBalance(), time: await chainTime() };

  result.step = "restart";
  await devnet.restart();
  result.restart = { balance: await strkBalance().catch((e) => `error: ${e.message}`) };

  result.ok = true;
  result.step = "done";
} catch (err) {
  result.error = { message: String(err?.message ?? JSON.stringify(err)).slice(0, 500) };
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exitCode = result.ok ? 0 : 1;
