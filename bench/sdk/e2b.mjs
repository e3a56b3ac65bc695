// npm: e2b@2.51.0
// bench/sdk/e2b.mjs FAKE MODE [N [C]]: the official E2B SDK's side of figure 7 (the version
// spec/fakes/check/e2b.mjs checks the fake against): Sandbox.create -> commands.run("echo
// hello") -> kill against bench/peer_fake.lua (FAKE: its JSON line), in the modes of
// bench/sdk/_modes.mjs. bench/fig7.lua copies both beside a node_modules holding the SDK.
import { Sandbox } from "e2b";
import { run } from "./_modes.mjs";

const [fakeJson, mode, nArg, cArg] = process.argv.slice(2);
const fake = JSON.parse(fakeJson);
const opts = { apiKey: fake.token, apiUrl: fake.url, sandboxUrl: fake.sandbox_url,
               requestTimeoutMs: 60000 };

async function cycle() {
  const sbx = await Sandbox.create(opts);
  const r = await sbx.commands.run("echo hello");
  if (r.exitCode !== 0 || r.stdout !== "hello\n") {
    throw new Error(`exec: exit ${r.exitCode}, stdout ${JSON.stringify(r.stdout)}`);
  }
  await sbx.kill();
}

await run("e2b", mode, nArg, cArg, {
  cycle, make: () => Sandbox.create(opts), remove: (s) => s.kill() });
