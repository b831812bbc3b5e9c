// Runs the firmware's pure core under a real MicroPython (the WebAssembly
// build published as @micropython/micropython-webassembly-pyscript) in Node:
//
//   npm ci --prefix firmware && node firmware/micropython_check.mjs
//
// The device-side modules and the golden payloads are copied into
// MicroPython's in-memory filesystem, then firmware/selfcheck.py runs there.
// Works offline once installed (the .wasm ships inside the npm package).
// Exit code 0 only if every check passed.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const here = dirname(fileURLToPath(import.meta.url));
// Everything that runs on the board except the hardware glue (esp32.py needs
// machine/network) and the CPython-only modules (transport_paho.py, host.py).
const CORE = [
  "__init__.py",
  "signing.py",
  "timefmt.py",
  "backlog.py",
  "journal.py",
  "decisions.py",
  "meter.py",
  "drivers.py",
  "modbus.py",
  "transport_memory.py",
  "selfcheck.py",
];

const lines = [];
const mp = await loadMicroPython({
  heapsize: 4 * 1024 * 1024,
  stdout: (line) => {
    lines.push(line);
    console.log(line);
  },
  stderr: (line) => console.error(line),
});

mp.FS.mkdir("/firmware");
for (const name of CORE) {
  mp.FS.writeFile(`/firmware/${name}`, readFileSync(join(here, name)));
}
mp.FS.mkdir("/golden");
for (const name of readdirSync(join(here, "golden"))) {
  if (name.endsWith(".json") || name.endsWith(".canonical")) {
    mp.FS.writeFile(`/golden/${name}`, readFileSync(join(here, "golden", name)));
  }
}

try {
  mp.runPython(`
import sys
sys.path.insert(0, "/")
print("micropython", sys.implementation.version, sys.implementation._build)
import firmware.selfcheck
firmware.selfcheck.main("/golden", "/tmp/selfcheck")
`);
} catch (error) {
  console.error(String(error));
  process.exit(1);
}
if (!lines.some((line) => / checks ok, 0 failed$/.test(line))) {
  console.error("no selfcheck summary line");
  process.exit(1);
}
