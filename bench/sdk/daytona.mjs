// npm: @daytonaio/sdk@0.218.0
// bench/sdk/daytona.mjs FAKE MODE [N [C]]: the official Daytona SDK's side of figure 7 (the
// version spec/fakes/check/daytona.mjs checks the fake against): daytona.create ->
// process.executeCommand("echo hello") -> delete against bench/peer_fake.lua (FAKE: its JSON
// line). The same modes and output as bench/peers.lua; CPU is process.cpuUsage() (getrusage:
// every thread) over the timed part. bench/run.lua copies it beside a node_modules holding
// the SDK and runs it with node.
import { Daytona } from "@daytonaio/sdk";

const [fakeJson, mode, nArg, cArg] = process.argv.slice(2);
const fake = JSON.parse(fakeJson);
const daytona = new Daytona({ apiKey: fake.token, apiUrl: fake.url + "/api" });

async function cycle() {
  const sb = await daytona.create({}, { timeout: 60 });
  const r = await sb.process.executeCommand("echo hello");
  if (r.exitCode !== 0 || r.result !== "hello\n") {
    throw new Error(`exec: exit ${r.exitCode}, result ${JSON.stringify(r.result)}`);
  }
  await sb.delete();
}

const seconds = () => Number(process.hrtime.bigint()) / 1e9;
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const n = Number(nArg);

if (mode === "oneshot") {
  await cycle();
} else if (mode === "seq" || mode === "conc") {
  const c = mode === "conc" ? Number(cArg) : 1;
  const t0 = seconds(), c0 = cpu();
  let next = 0;
  async function worker() { while (next < n) { next++; await cycle(); } }
  await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
  console.log(`${seconds() - t0} ${cpu() - c0}`);
} else if (mode === "handles") {
  const sbs = [];
  for (let i = 0; i < n; i++) sbs.push(await daytona.create({}, { timeout: 60 }));
  console.log(`${process.resourceUsage().maxRSS} ${Math.round(process.memoryUsage().rss / 1024)}`);
  for (const s of sbs) await s.delete();
} else {
  throw new Error("usage: node daytona.mjs FAKE_JSON seq|conc|handles|oneshot [N [C]]");
}
// ended here: something in the SDK keeps Node's event loop alive for tens of seconds after
// the last call (figure 7's one-shot time is the cycle's, not that wait's)
process.exit(0);
