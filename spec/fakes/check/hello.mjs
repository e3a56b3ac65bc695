// fake: hello
// npm:
// spec/fakes/check/hello.mjs: the worked example of a check-fakes script (see run.lua). It
// needs no package; real ones name theirs on the npm: line (e.g. `// npm: e2b@2.51.0`) and
// import them as usual: run.lua copies the script beside their node_modules.
const [url, token] = process.argv.slice(2);
const auth = { Authorization: `Bearer ${token}` };

async function call(method, path, body) {
  const res = await fetch(url + path, {
    method,
    headers: body ? { ...auth, "Content-Type": "application/json" } : auth,
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

const hello = await call("GET", "/v1/hello");
if (hello.hello !== "world") throw new Error("unexpected hello: " + JSON.stringify(hello));
const echo = await call("POST", "/v1/echo", { n: 1, s: "x" });
if (echo.n !== 1 || echo.s !== "x") throw new Error("unexpected echo: " + JSON.stringify(echo));
console.log("hello: ok");
