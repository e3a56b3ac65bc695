// npm: @daytonaio/sdk@0.218.0
// bench/sdk/daytona.mjs FAKE MODE [N [C]]: the official Daytona SDK's side of figure 7 (the
// version spec/fakes/check/daytona.mjs checks the fake against): daytona.create ->
// process.executeCommand("echo hello") -> delete against bench/peer_fake.lua (FAKE: its JSON
// line), in the modes of bench/sdk/_modes.mjs. bench/fig7.lua copies both beside a
// node_modules holding the SDK.
import { Daytona } from "@daytonaio/sdk";
import { run } from "./_modes.mjs";

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

await run("daytona", mode, nArg, cArg, {
  cycle, make: () => daytona.create({}, { timeout: 60 }), remove: (s) => s.delete() });
