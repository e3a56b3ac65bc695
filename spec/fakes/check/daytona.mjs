// fake: daytona
// npm: @daytonaio/sdk@0.218.0
// spec/fakes/check/daytona.mjs: drives the official @daytonaio/sdk (0.218.0, as checked in
// ../shared/provider-apis/daytona.md) against the Daytona fake (spec/fakes/daytona.lua):
// create -> exec -> session exec -> files -> list -> stop/start -> snapshot (get, list,
// create from it, delete) -> destroy. Exits non-zero on
// any failure, and when the fake rejected any request during the run (GET /_fake/rejected;
// run.lua checks the same list itself).
// `make check-fakes` (spec/fakes/check/run.lua) runs it as `node daytona.mjs URL TOKEN`
// beside a node_modules holding the SDK. By hand, from the repository root, it can also start
// the fake itself (no arguments; NODE_PATH names the SDK's node_modules):
//   npm install --prefix /tmp/dsdk @daytonaio/sdk@0.218.0
//   NODE_PATH=/tmp/dsdk/node_modules node spec/fakes/check/daytona.mjs
import { createRequire } from 'node:module'
import path from 'node:path'

const require = createRequire(process.env.NODE_PATH ? path.join(process.env.NODE_PATH, 'x.js')
                                                   : import.meta.url)
const { Daytona } = require('@daytonaio/sdk')

// Without arguments or DAYTONA_API_URL the script starts the fake itself (from the repository
// root: $SANDLOT_BIN or build/sandlot spec/fakes/daytona_server.lua) and stops it at the end.
const [argUrl, argToken] = process.argv.slice(2)
let apiUrl = argUrl ? argUrl.replace(/\/+$/, '') + '/api' : process.env.DAYTONA_API_URL
let apiKey = argUrl ? argToken : process.env.DAYTONA_API_KEY
let server = null
let stateDir = null
if (!apiUrl) {
  const { spawn } = await import('node:child_process')
  const { mkdtempSync } = await import('node:fs')
  const os = await import('node:os')
  stateDir = mkdtempSync(path.join(os.tmpdir(), 'daytona-fake-'))   // its local sandboxes
  server = spawn(process.env.SANDLOT_BIN || 'build/sandlot', ['spec/fakes/daytona_server.lua'],
                 { stdio: ['ignore', 'pipe', 'inherit'],
                   env: { ...process.env, XDG_STATE_HOME: stateDir } })
  const line = await new Promise((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => reject(new Error('the fake did not start in 30 s')), 30000)
    server.stdout.on('data', (d) => {
      buf += d
      const m = buf.match(/port (\d+) token (\S+)\n/)
      if (m) { clearTimeout(timer); resolve(m) }
    })
    server.on('exit', (code) => reject(new Error('the fake exited with ' + code)))
  })
  apiUrl = `http://127.0.0.1:${line[1]}/api`
  apiKey = line[2]
}
if (!apiKey) {
  console.error('daytona.mjs: DAYTONA_API_KEY is required with DAYTONA_API_URL')
  process.exit(2)
}
const fakeBase = apiUrl.replace(/\/api\/?$/, '')

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what)
  console.log('ok  ' + what)
}

async function main() {
  const daytona = new Daytona({ apiKey, apiUrl })
  const sb = await daytona.create({ labels: { sdkcheck: '1' }, envVars: { SDK_A: 'from create' } },
                                  { timeout: 60 })
  check(sb.id && sb.state === 'started', 'create waits until started')

  const r = await sb.process.executeCommand('echo hello; echo "$SDK_A"')
  check(r.exitCode === 0 && r.result === 'hello\nfrom create\n', 'executeCommand: ' +
        JSON.stringify(r.result))
  const bad = await sb.process.executeCommand('exit 7')
  check(bad.exitCode === 7, 'executeCommand exit code')
  const cwd = await sb.process.executeCommand('pwd', '/tmp', { SDK_B: 'b' })
  check(cwd.result === '/tmp\n', 'executeCommand cwd')

  await sb.process.createSession('sdk-s1')
  const sr = await sb.process.executeSessionCommand('sdk-s1', { command: 'echo out; echo err >&2' })
  check(sr.exitCode === 0 && sr.stdout === 'out\n' && sr.stderr === 'err\n',
        'session exec keeps stdout and stderr apart')
  const as = await sb.process.executeSessionCommand('sdk-s1', { command: 'sleep 0.2; echo late',
                                                               runAsync: true })
  check(typeof as.cmdId === 'string', 'async session exec gives a command id')
  let cmd
  for (let i = 0; i < 100; i++) {
    cmd = await sb.process.getSessionCommand('sdk-s1', as.cmdId)
    if (cmd.exitCode !== undefined && cmd.exitCode !== null) break
    await new Promise((res) => setTimeout(res, 100))
  }
  check(cmd.exitCode === 0, 'async command finishes')
  const logs = await sb.process.getSessionCommandLogs('sdk-s1', as.cmdId)
  check(logs.stdout === 'late\n', 'session command logs')
  await sb.process.deleteSession('sdk-s1')

  const data = Buffer.alloc(70000)
  for (let i = 0; i < data.length; i++) data[i] = i % 256
  await sb.fs.uploadFile(data, 'sdk/dir/bytes.bin')
  await sb.fs.uploadFiles([{ source: Buffer.from('one'), destination: 'sdk/one.txt' },
                           { source: Buffer.from('two'), destination: '/tmp/two.txt' }])
  const back = await sb.fs.downloadFile('sdk/dir/bytes.bin')
  check(Buffer.compare(back, data) === 0, 'upload and download keep every byte')
  const files = await sb.fs.listFiles('sdk')
  check(files.map((f) => f.name).sort().join(',') === 'dir,one.txt', 'listFiles')
  const info = await sb.fs.getFileDetails('sdk/one.txt')
  check(info.size === 3 && !info.isDir, 'getFileDetails')
  await sb.fs.createFolder('sdk/made', '755')
  await sb.fs.deleteFile('sdk/one.txt')
  const after = await sb.fs.listFiles('sdk')
  check(after.map((f) => f.name).sort().join(',') === 'dir,made', 'createFolder and deleteFile')

  const ids = []
  for await (const s of daytona.list({ labels: { sdkcheck: '1' } })) ids.push(s.id)
  check(ids.includes(sb.id), 'list by labels')
  const link = await sb.getPreviewLink(3000)
  check(link.url.includes(sb.id), 'preview link')

  await sb.stop()
  check(sb.state === 'stopped', 'stop waits until stopped')
  await sb.start()
  check(sb.state === 'started', 'start waits until started')

  const snapName = 'sdkcheck-' + sb.id
  await sb._experimental_createSnapshot(snapName)
  let snap
  for (let i = 0; i < 100; i++) {
    snap = await daytona.snapshot.get(snapName)
    if (snap.state === 'active') break
    await new Promise((res) => setTimeout(res, 100))
  }
  check(snap.state === 'active' && snap.name === snapName, 'the snapshot becomes active')
  const snaps = await daytona.snapshot.list()
  check(snaps.items.some((x) => x.id === snap.id), 'snapshot list')
  const copy = await daytona.create({ snapshot: snap.id }, { timeout: 60 })
  const got = await copy.fs.downloadFile('sdk/dir/bytes.bin')
  check(Buffer.compare(got, data) === 0, 'a sandbox from the snapshot has its files')
  await copy.delete()
  await daytona.snapshot.delete(snap)
  check(true, 'snapshot delete')
  await sb.delete()
  check(true, 'delete')
}

let failed = false
try {
  await main()
} catch (e) {
  failed = true
  console.error('FAILED: ' + (e && e.stack || e))
}
try {
  const res = await fetch(fakeBase + '/_fake/rejected')
  const rejected = await res.json()
  for (const r of rejected) {
    failed = true
    console.error(`REJECTED ${r.method} ${r.path}: ${r.status} ${r.message}`)
  }
} catch (e) {
  failed = true
  console.error('cannot ask the fake what it rejected: ' + e)
}
if (server) {
  server.kill('SIGKILL')
  const { rmSync } = await import('node:fs')
  await new Promise((res) => setTimeout(res, 200))
  rmSync(stateDir, { recursive: true, force: true })
}
console.log(failed ? 'daytona SDK check: FAILED' : 'daytona SDK check: passed')
process.exit(failed ? 1 : 0)
